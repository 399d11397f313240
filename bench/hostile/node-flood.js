// node node-flood.js MODE [PAD]: a Node master with one hostile worker; RSS and CPU every second.
const { MasterFactory } = require(require('node:path').join(__dirname, '..', '..', 'bindings-node'));
const args = [require('node:path').join(__dirname, 'hostile.py'), ...process.argv.slice(2)];
const master = MasterFactory.create({ program: 'python3', args, count: 1, name: 'atk' });
let events = 0;
master.on('heartbeat', () => events++);
master.on('message', () => events++);
(async () => {
    await master.start();
    const cpu0 = process.cpuUsage();
    let peak = 0;
    for (let i = 1; i <= 10; i++) {
        await new Promise((r) => setTimeout(r, 1000));
        const rss = process.memoryUsage().rss;
        peak = Math.max(peak, rss);
        console.log(`${i}s: rss ${(rss / 1048576).toFixed(1)} MiB, events so far ${events}`);
    }
    const cpu = process.cpuUsage(cpu0);
    console.log(`peak rss ${(peak / 1048576).toFixed(1)} MiB; CPU ${((cpu.user + cpu.system) / 1e6).toFixed(1)} s in 10 s`);
    await master.hardShutdown();
})().catch((e) => { console.error(e); process.exit(1); });
