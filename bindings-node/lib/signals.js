'use strict';

// drover 1.0's `signals` option: the process signals a master acts on (default SIGHUP: graceful
// reload, SIGTERM: graceful shutdown). One process listener per signal, whatever the number of
// masters: a signal reaches each master that asked for it exactly once. Listeners the app added
// itself are never touched. A master's listeners go when it is shut down.

const errors = require('./errors');

/** signal name -> { listener, masters: Map<WeakRef<Master>, 'reload' | 'shutdown'> } */
const registry = new Map();
// Held weakly, as everywhere else: an idle master the app dropped is collected, and its entries go.
const collected = new FinalizationRegistry((ref) => remove((r) => r === ref));

function add(signal, master, action) {
    let entry = registry.get(signal);
    if (!entry) {
        entry = { masters: new Map(), listener: () => dispatch(signal) };
        registry.set(signal, entry);
        process.on(signal, entry.listener);
    }
    const ref = master._signalRef || (master._signalRef = new WeakRef(master));
    collected.register(master, ref, ref);
    entry.masters.set(ref, action);
}

/** Makes `master` act on `signals` ({ reload, shutdown }: signal names or null). */
function install(master, signals) {
    if (signals.reload) add(signals.reload, master, 'reload');
    if (signals.shutdown) add(signals.shutdown, master, 'shutdown');
}

/** Removes the masters `which` selects; a signal no master wants gets its default action back. */
function remove(which) {
    for (const [signal, entry] of registry) {
        for (const ref of [...entry.masters.keys()]) {
            if (which(ref)) entry.masters.delete(ref);
        }
        if (entry.masters.size === 0) {
            process.off(signal, entry.listener);
            registry.delete(signal);
        }
    }
}

/** `master` no longer acts on any signal. */
function uninstall(master) {
    if (master._signalRef) {
        collected.unregister(master._signalRef);
        remove((ref) => ref === master._signalRef);
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
    const live = [...entry.masters].map(([ref, action]) => [ref.deref(), action]).filter(([master]) => master);
    const acts = live.map(([master, action]) => act(master, action, signal));
    const shutdown = live.some(([, action]) => action === 'shutdown');
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
