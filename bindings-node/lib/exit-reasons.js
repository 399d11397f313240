'use strict';

// drover's exit reasons: `reason instanceof ExitReasons.ExternalSignal`, `reason.payload`.

class ExitReason {
    constructor(payload) {
        this.payload = payload;
    }

    get name() {
        return this.constructor.name;
    }
}

/** Killed by a signal (anyone's, the master's too): `payload.signal` is its name, e.g. 'SIGKILL'. */
class ExternalSignal extends ExitReason {}
/** The worker's own exit(0), nobody asked: `payload.code`. */
class NormalExit extends ExitReason {}
/** A non-zero exit code, or any exit code of an exit the master asked for: `payload.code`. */
class AbnormalExit extends ExitReason {}

/**
 * Builds a reason from core's JSON form of it (`{ name, code }` / `{ name, signal, signal_name,
 * core_dumped }`, `name` being 'NormalExit', 'AbnormalExit' or 'ExternalSignal') and whether the
 * master asked for the exit.
 *
 * An exit the master asked for (reload, rescale, restart, shutdown) is never a NormalExit, which
 * means "the worker quit by itself": drover 1.0 reported those as AbnormalExit (or ExternalSignal
 * for a kill), and its documented handler restarts on those and hard-quits the whole app on a
 * NormalExit. `reason.requested` says which it was.
 */
function fromNative(r, requested = false) {
    let reason;
    switch (r.name) {
        case 'ExternalSignal':
            reason = new ExternalSignal({ signal: r.signal_name });
            Object.defineProperties(reason, {
                signalNumber: { value: r.signal, enumerable: false },
                coreDumped: { value: r.core_dumped, enumerable: false },
            });
            break;
        case 'NormalExit':
            reason = requested ? new AbnormalExit({ code: r.code }) : new NormalExit({ code: r.code });
            break;
        default:
            reason = new AbnormalExit({ code: r.code });
    }
    // Not enumerable: the reason prints and compares as drover 1.0's did. `kind` is how the process
    // ended as core (and so C, Rust and the CLI) reports it; the class differs for a requested exit(0).
    return Object.defineProperties(reason, {
        requested: { value: Boolean(requested), enumerable: false },
        kind: { value: r.name, enumerable: false },
    });
}

module.exports = { ExitReason, ExternalSignal, NormalExit, AbnormalExit, fromNative };
