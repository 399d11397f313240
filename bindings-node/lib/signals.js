'use strict';

// drover 1.0's `signals` option: the process signals a master acts on (default SIGHUP: graceful
// reload, SIGTERM: graceful shutdown). One process listener per signal, whatever the number of
// masters: a signal reaches each master that asked for it exactly once. Listeners the app added
// itself are never touched. A master's listeners go when it is shut down.

const errors = require('./errors');

/** signal name -> { listener, masters: Map<Master, 'reload' | 'shutdown'> } */
const registry = new Map();

function add(signal, master, action) {
    let entry = registry.get(signal);
    if (!entry) {
        entry = { masters: new Map(), listener: () => dispatch(signal) };
        registry.set(signal, entry);
        process.on(signal, entry.listener);
    }
    entry.masters.set(master, action);
}

/** Makes `master` act on `signals` ({ reload, shutdown }: signal names or null). */
function install(master, signals) {
    if (signals.reload) add(signals.reload, master, 'reload');
    if (signals.shutdown) add(signals.shutdown, master, 'shutdown');
}

/** `master` no longer acts on any signal; a signal no master wants gets its default action back. */
function uninstall(master) {
    for (const [signal, entry] of registry) {
        if (entry.masters.delete(master) && entry.masters.size === 0) {
            process.off(signal, entry.listener);
            registry.delete(signal);
        }
    }
}

async function act(master, action, signal) {
    try {
        if (action === 'reload') {
            await master.gracefulReload();
        } else {
            await master.gracefulShutdown();
        }
    } catch (err) {
        // A shutdown already under way (or done) needs nothing more. Anything else is said, not
        // thrown: a signal handler has nobody to reject to, and 1.0's unhandled rejection crashed
        // the process.
        if (action === 'shutdown' && err instanceof errors.InappropriateConditionError) return;
        process.emitWarning(`${signal}: ${action} of master ${master.name} failed: ${err.message}`, {
            type: 'DroverWarning',
            code: err.name,
        });
    }
}

function dispatch(signal) {
    const entry = registry.get(signal);
    if (!entry) return;
    const acts = [...entry.masters].map(([master, action]) => act(master, action, signal));
    const shutdown = [...entry.masters.values()].includes('shutdown');
    if (shutdown) {
        Promise.all(acts).then(() => {
            // Every master is shut down and gone from the registry. If nothing else listens for the
            // signal, it now does what it would have done without drover: end the process (1.0 left
            // it running, so a service manager had to wait for its kill timeout).
            if (process.listenerCount(signal) === 0) {
                process.kill(process.pid, signal);
            }
        });
    }
}

module.exports = { install, uninstall };
