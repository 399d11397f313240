'use strict';

// drover's preload for Node apps that know nothing of drover: the `drover` command adds
// `--require <this file>` to a Node worker's NODE_OPTIONS (after the app's own options). It makes
// an unmodified app behave as a drover worker:
//
// - Shared ports: at the app's first `listen`, it creates the worker's MessageBus, whose listen
//   take-over (lib/listen.js) gets every TCP `server.listen(PORT)` the master's shared socket:
//   `app.listen(8080)` in 4 workers is one port, kept open by the master through restarts and
//   reloads.
// - Readiness: the worker reports STARTED when its first server is listening
//   (DROVER_PRELOAD_READY=listen, `--ready message`, the default); with `--ready node-ipc` (a PM2
//   app's `process.send('ready')`), `notify` or `spawn`, the app's own signal counts
//   (DROVER_PRELOAD_READY=app).
// - Stop: when the master stops the worker, every server it listened on is drained (lib/drain.js:
//   keep-alive connections are closed without racing a request on the wire), the worker reports
//   STOPPED, and at the master's quit it reports SHUTTED_DOWN and exits 0. An app's own
//   `process.on('exit')` handlers run then.
//
// It does nothing in a process that is not a drover worker (no DROVER_IPC_FD), and leaves alone
// an app that creates its own MessageBus before it listens (a drover-aware app). Processes the app
// starts do not get it: it takes itself out of NODE_OPTIONS at once.

(function preload() {
    const env = process.env;
    removeFromNodeOptions(env);
    if (!env.DROVER_IPC_FD) return;
    const readyOnListen = env.DROVER_PRELOAD_READY !== 'app';
    delete env.DROVER_PRELOAD_READY;

    const net = require('node:net');
    const original = net.Server.prototype.listen;
    let bus = null;

    // Until the first listen: then the bus is created, and its take-over (lib/listen.js) replaces
    // this. Put back first, so that the take-over wraps Node's own listen and not this one.
    net.Server.prototype.listen = function preloadListen(...args) {
        if (net.Server.prototype.listen === preloadListen) net.Server.prototype.listen = original;
        const { busCreated } = require('./lib/message-bus');
        // An app that made its own bus already took listen over (wrapping this function): go
        // straight to Node's.
        if (bus !== null || busCreated()) return original.apply(this, args);
        bus = connect(this);
        return net.Server.prototype.listen.apply(this, args);
    };

    function connect(firstServer) {
        const { MessageBus } = require('./lib/message-bus');
        const mb = new MessageBus();
        if (readyOnListen) {
            firstServer.once('listening', () => mb.sendStarted());
        }
        mb.on('stop', () => {
            const { listenedServers } = require('./lib/listen');
            const { drain } = require('./lib/drain');
            Promise.all(listenedServers().map((server) => drain(server)))
                .catch(() => {})
                .then(() => mb.sendStopped())
                .catch(() => {});
        });
        mb.on('quit', () => {
            mb.sendShuttedDown()
                .catch(() => {})
                .then(() => mb.close())
                .finally(() => process.exit(0));
        });
        // The master is gone (its channel closed): nothing supervises this process any more.
        mb.on('disconnect', () => process.exit(0));
        // A failed connect or a protocol error is the master's to report; the app keeps running.
        mb.on('error', () => {});
        return mb;
    }

    function removeFromNodeOptions(vars) {
        const options = vars.NODE_OPTIONS;
        if (!options) return;
        const escaped = __filename.replace(/\\/g, '\\\\').replace(/"/g, '\\"');
        const rest = options
            .replace(`--require "${escaped}"`, '')
            .replace(`--require ${__filename}`, '')
            .trim();
        if (rest) vars.NODE_OPTIONS = rest;
        else delete vars.NODE_OPTIONS;
    }
})();
