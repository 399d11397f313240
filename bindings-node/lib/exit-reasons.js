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

/** Killed by a signal (anyone's): `payload.signal` is its name, e.g. 'SIGKILL'. */
class ExternalSignal extends ExitReason {}
/** Exited with code 0: `payload.code`. */
class NormalExit extends ExitReason {}
/** Exited with a non-zero code: `payload.code`. */
class AbnormalExit extends ExitReason {}

/** Builds a reason from the addon's `{ kind, code }` / `{ kind, signal, signalNumber, coreDumped }`. */
function fromNative(r) {
    switch (r.kind) {
        case 'ExternalSignal': {
            const reason = new ExternalSignal({ signal: r.signal });
            Object.defineProperties(reason, {
                signalNumber: { value: r.signalNumber, enumerable: false },
                coreDumped: { value: r.coreDumped, enumerable: false },
            });
            return reason;
        }
        case 'NormalExit':
            return new NormalExit({ code: r.code });
        default:
            return new AbnormalExit({ code: r.code });
    }
}

module.exports = { ExitReason, ExternalSignal, NormalExit, AbnormalExit, fromNative };
