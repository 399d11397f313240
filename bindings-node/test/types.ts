// Compiled by `npm run typecheck` (tsc --noEmit): the definitions describe real usage.
import {
    ExitReasons,
    InappropriateConditionError,
    InvalidConfigurationError,
    ListenError,
    RequestError,
    Master,
    MasterFactory,
    MessageBus,
    WorkerStatuses,
    drain,
    listenFds,
    type DrainResult,
    type HeldListener,
    type AnyExitReason,
    type MasterStatus,
    type WorkerStatus,
    type GatheredResult,
    type RequestTarget,
    type GatheredStatuses,
    type RecycleStats,
    type NodeHeartbeatStats,
    type WorkerDetails,
    PreStartError,
    ReconfigureError,
    type ReconfigureAck,
} from '..';
import * as net from 'node:net';
import * as http from 'node:http';

const master: Master = MasterFactory.create({
    script: 'app.js',
    count: 4,
    env: { PORT: 1934, DEBUG: true },
    restart: 'on-failure',
    signals: { reload: 'SIGUSR2', shutdown: 'SIGTERM' },
    schedulingPolicy: 1,
    statusTimeout: 2000,
    restartTimeout: 2000,
    reloadStrategy: 'rolling',
    heartbeatInterval: 1000,
    stopTimeout: 5000,
    killTimeout: '2s',
    maxMemoryBytes: '150MiB',
    listen: ['127.0.0.1:8080', 'admin=unix:/run/app.sock'],
    ready: 'message',
});
const held: HeldListener[] = master.getListeningSockets();
console.log(held[0].address, held[0].local);
const rust = MasterFactory.create({ program: './worker', args: ['--fast'], count: 2 });

master.on('worker-exit', async (reason: AnyExitReason, workerId: number, info) => {
    if (reason instanceof ExitReasons.ExternalSignal) {
        const signal: string = reason.payload.signal;
        console.log(signal, info.requested);
        await master.restartWorkerById(workerId);
    } else if (reason instanceof ExitReasons.AbnormalExit) {
        const code: number = reason.payload.code;
        console.log(code);
    }
});
master.on('status', (to: MasterStatus, from: MasterStatus) => console.log(from, '->', to));
master.on('worker-status', (id: number, to: WorkerStatus) => console.log(id, to === WorkerStatuses.STARTED));
master.on('message', (msg, id) => console.log(msg, id));
master.on('error', (err, id) => console.log(err.message, id));

async function run(): Promise<void> {
    try {
        await master.start();
    } catch (e) {
        if (e instanceof InvalidConfigurationError || e instanceof InappropriateConditionError) console.error(e.message);
    }
    const statuses: WorkerStatus[] = master.getWorkersStatuses();
    const first = master.getWorkers()[0];
    const started: Date | null = first.startedAt;
    const place: number = first.instance;
    const status: number = master.getStatus();
    console.log(statuses, started, place, first.pid, status === Master.STATUS_STARTED, master.getStatusName());
    const delta: number = await master.rescale(8);
    master.markDown();
    master.markUp();
    const rotation: boolean = master.getRotation().inRotation;
    master.on('rotation', (info) => {
        const why: string | null = info.message;
        const monitor: string | null = info.monitor;
        void [why, monitor, info.manual];
    });
    void rotation;
    const ecv = master.monitorEcv({ url: 'http://127.0.0.1:8080/health', validator: 200, interval: '5s' });
    ecv.stop();
    const restarted: boolean = await master.restartWorkerById(first.id);
    console.log(delta, restarted, master.getConfig().count);
    await master.gracefulReload();
    await master.send(first.id, { cmd: 'x' });
    const n: number = await master.broadcast('hi');
    console.log(n);
    await master.gracefulShutdown();
    await master.hardShutdown();
    await rust.hardShutdown();
}
run().catch(console.error);

// The worker side.
function worker(): void {
    const mb = new MessageBus();
    const server = net.createServer();
    mb.on('stop', () => server.close(mb.sendStopped));
    mb.on('quit', () => {
        mb.sendShuttedDown();
        void mb.close();
    });
    mb.on('message', (m) => mb.sendMessage({ echo: m }));
    server.listen(0, mb.sendStarted);
}
worker();

// An HTTP worker on the master's shared port, drained on stop.
function httpWorker(): void {
    const mb = new MessageBus({ sharedListen: true });
    const server = http.createServer((req, res) => res.end('hi'));
    mb.on('stop', async () => {
        const result: DrainResult = await drain(server, { timeout: 10000, idleGrace: 500 });
        console.log(result.timedOut, result.closedIdle);
        mb.sendStopped();
    });
    server.on('error', (e) => {
        if (e instanceof ListenError && e.code === 'EADDRINUSE') console.error(e.address, e.errno);
    });
    server.listen(8080, mb.sendStarted);
    mb.listen('127.0.0.1:9090').then(({ fd, local }) => net.createServer().listen({ fd }, () => console.log(local)));
    for (const { fd, name } of listenFds()) console.log(fd, name);
    // A balanced socket asked for directly: its connections come as the bus's events.
    mb.listen('127.0.0.1:9091').then(({ balance }) => console.log(balance));
    mb.on('connection', (fd, { listener, remote }) => {
        const socket = new net.Socket({ fd, readable: true, writable: true });
        socket.end(`${listener} ${remote ?? ''}`);
    });
}
httpWorker();

MasterFactory.create({ script: 'a.js', balance: 'round-robin', listen: ['127.0.0.1:80,balance=sticky'] });
// @ts-expect-error: balance is one of three modes
MasterFactory.create({ script: 'a.js', balance: 'fastest' });

// @ts-expect-error: ready is one of four sources
MasterFactory.create({ script: 'a.js', ready: 'whenever' });

// @ts-expect-error: count is a number
MasterFactory.create({ script: 'a.js', count: '4' });
// @ts-expect-error: unknown event payloads are typed
master.on('worker-exit', (reason: string) => reason);

// Requests and worker-to-worker messages.
async function requests(master: Master, mb: MessageBus): Promise<void> {
    master.handle('sum', (args: number[], from: number) => args.reduce((a, b) => a + b, from)).handle('ping', async () => 'pong');
    const sum: number = await master.request<number>('worker:1', 'sum', [1, 2], { timeout: 1000 });
    const all: GatheredResult[] = await master.request<GatheredResult[]>('all', 'status');
    for (const r of all) console.log(r.worker, 'result' in r ? r.result : r.error.code);
    const target: RequestTarget = { name: 'web-2' };
    await master.request(target, 'x').catch((e) => {
        if (e instanceof RequestError && e.code === 'timeout') console.log(sum, e.message);
    });
    mb.handle('resize', async (args: { width: number }) => args.width * 2);
    const count: number = await mb.sendTo('all', { hello: 1 });
    mb.on('worker-message', (data, from: number) => console.log(data, from, count));
    await mb.request(3, 'resize', { width: 10 });
    // @ts-expect-error: a target is a string, a number or { worker } / { name }
    await mb.request(true, 'resize');
    // @ts-expect-error: the timeout is a number
    await master.request('any', 'x', null, { timeout: '1s' });
}
void requests;

// Shared store, cache, application status, status registry, recycle predicate.
async function sharedState(master: Master, mb: MessageBus): Promise<void> {
    await mb.store.set('users.42', { name: 'ada' }, { ttl: 60000 });
    const name: string | null = await mb.store.get<string>('users.42.name');
    const swapped: boolean = await mb.store.cas('users.42.name', 'ada', 'grace');
    const keys: string[] = await master.store.keys();
    const watch: number = await mb.store.watch('users', (value, path: string) => console.log(value, path));
    await mb.store.unwatch(watch);
    await master.store.set('config.mode', 'fast');
    const removed: boolean = await master.store.delete('config');
    const value: number = await mb.cache.getOrLoad('answer', async () => 42, { ttl: 1000 });
    mb.registerStatus('queue', () => ({ length: 3 }));
    await mb.setAppStatus('PROCESSING', { jobs: 3 });
    await mb.setAppStatus(null);
    const statuses: GatheredStatuses = await master.gatherStatuses({ timeout: 5000 });
    master.recycleWhen((stats: RecycleStats, worker: WorkerDetails) =>
        (stats.event_loop_lag_max_ms ?? 0) > 500 ? `lag in ${worker.name}` : worker.stats.gc_ms > 1e4);
    const lag: NodeHeartbeatStats['event_loop_lag_ms'] = 0;
    console.log(name, swapped, keys, removed, value, statuses, lag);
    // @ts-expect-error: a ttl is milliseconds
    await mb.store.set('a', 1, { ttl: '1s' });
    // @ts-expect-error: the loader is a function
    await mb.cache.getOrLoad('k', 42);
    // @ts-expect-error: counters are numbers
    await mb.setAppStatus('IDLE', { jobs: 'three' });
}
void sharedState;
async function reconfigure(master: Master, mb: MessageBus) {
    const acks: ReconfigureAck[] = await master.reconfigure({ level: 2 }, { timeout: 5000 });
    for (const a of acks) if (a.outcome === 'refused') console.log(a.id, a.error);
    master.preStart(async () => undefined).preStart(() => 1);
    await master.start().catch((e) => {
        if (e instanceof PreStartError) console.log(e.reason);
        if (e instanceof ReconfigureError) console.log(e.message);
    });
    mb.on('reconfigure', (config: { level: number }, ack) => (config.level > 0 ? ack() : ack(new Error('no'))));
    MasterFactory.create({ script: 'a.js', processTitle: true });
    // @ts-expect-error: an outcome is one of four words
    const bad: ReconfigureAck['outcome'] = 'maybe';
    void bad;
}
void reconfigure;
