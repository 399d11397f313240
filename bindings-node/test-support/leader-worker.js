'use strict';

// A Node worker using a ClusterClient (lib/cluster-client.js) over a real TCP upstream
// (test/cluster-client.test.js's server at DROVER_TEST_UPSTREAM_PORT): only the leader connects.
// Reports to the master, in order: { leader: { leader, term, you } }, { events: [n...] } (the
// EVENT numbers received, batched), { gap: { reason, lastData } }, { resubscribed: term }.
// Messages ({ cmd }): get ({ key }: replies { got: key, value } or { get_error }); overload (3 calls
// on a client allowing 2 waiting: replies { overloaded: error of the third }).
const net = require('node:net');
const { MessageBus } = require('..');

/** The real client: one TCP connection; `GET key` answered by `VALUE key value`; `SUB` for events. */
class UpstreamClient {
    constructor(port) {
        this._port = port;
        this._waiting = [];
        this._listeners = [];
    }

    ready() {
        return new Promise((resolve, reject) => {
            this._socket = net.connect(this._port, '127.0.0.1', resolve);
            this._socket.once('error', reject);
            this._socket.setEncoding('utf8');
            let buffered = '';
            this._socket.on('data', (chunk) => {
                buffered += chunk;
                let at;
                while ((at = buffered.indexOf('\n')) >= 0) {
                    const line = buffered.slice(0, at);
                    buffered = buffered.slice(at + 1);
                    const [kind, a, b] = line.split(' ');
                    if (kind === 'VALUE') this._waiting.shift()?.resolve(b);
                    else if (kind === 'EVENT') for (const l of this._listeners) l(Number(a));
                }
            });
        });
    }

    get(key) {
        return new Promise((resolve, reject) => {
            this._waiting.push({ resolve, reject });
            this._socket.write(`GET ${key}\n`);
        });
    }

    subscribe(_topic, listener) {
        if (this._listeners.length === 0) this._socket.write('SUB\n');
        this._listeners.push(listener);
    }

    publish(_topic, data) {
        this._socket.write(`PUB ${data}\n`);
    }

    close() {
        this._socket.destroy();
    }
}

const mb = new MessageBus();
const client = mb.cluster(UpstreamClient, {
    name: 'upstream',
    args: [Number(process.env.DROVER_TEST_UPSTREAM_PORT)],
    delegates: ['get'],
});

let batch = [];
function flush() {
    if (batch.length > 0) {
        mb.sendMessage({ events: batch });
        batch = [];
    }
}
setInterval(flush, 50).unref();
client.on('leader', (l) => mb.sendMessage({ leader: l }));
client.on('gap', (g) => {
    flush();
    mb.sendMessage({ gap: { reason: g.reason, lastData: g.lastData ?? null } });
});
client.on('resubscribed', (r) => {
    flush();
    mb.sendMessage({ resubscribed: r.term });
});
client.on('error', (e) => mb.sendMessage({ client_error: String(e && e.message) }));
client.subscribe('events', (n) => batch.push(n));

/** A client whose `hang()` never answers, for the bound on waiting calls. */
class Hanging {
    hang() {
        return new Promise(() => {});
    }
}

mb.on('message', async (m) => {
    if (m && m.cmd === 'overload') {
        // Its own leadership (it leads it), at most 2 calls waiting: the third is refused.
        const c = mb.cluster(Hanging, { name: `hang-${process.env.DROVER_WORKER_ID}`, maxPendingInvokes: 2, delegates: ['hang'] });
        await c.ready();
        c.hang();
        c.hang();
        c.hang().catch((e) => mb.sendMessage({ overloaded: { code: e.code, name: e.name, message: e.message } }));
    }
    if (m && m.cmd === 'get') {
        try {
            mb.sendMessage({ got: m.key, value: await client.get(m.key) });
        } catch (e) {
            mb.sendMessage({ get_error: e.message });
        }
    }
});
mb.on('stop', () => mb.sendStopped());
mb.on('quit', () => {
    mb.sendShuttedDown().then(() => process.exit(0));
});
mb.sendStarted();
