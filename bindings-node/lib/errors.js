'use strict';

// drover's error classes. The addon raises errors whose message is TAG + a JSON description
// ({ name, message, ...details }); `fromNative` turns them into these classes.

const TAG = '\u0001drover:';

class DroverError extends Error {
    constructor(message, options) {
        super(message, options);
        this.name = new.target.name;
    }
}

/** The options given to MasterFactory.create / gracefulReload are invalid. */
class InvalidConfigurationError extends DroverError {}
/** An argument of a call is invalid (drover 1.0's class: `rescale(0)`); the data is on the error. */
class InvalidArgumentError extends DroverError {}
/** The operation is not possible in the master's current status (e.g. rescale before start). */
class InappropriateConditionError extends DroverError {}
/** start() on a master that is started or starting (drover 1.0's class). */
class AlreadyInitializedError extends InappropriateConditionError {
    /** The same error, as this class (message, cause and data kept). */
    static from(err) {
        return Object.assign(new AlreadyInitializedError(err.message, { cause: err.cause }), err, { name: 'AlreadyInitializedError' });
    }
}
/** drover used in the wrong kind of process (drover 1.0's class); see NotAWorkerError. */
class InvalidClusterContextError extends DroverError {}
/** A worker did not reach STARTED: it exited, failed, broke the protocol or timed out. */
class WorkerStatusError extends DroverError {}
/** No worker has the given id. */
class WorkerNotFoundError extends DroverError {}
/** A message could not be delivered to a worker. */
class MessageDeliveryError extends DroverError {}
/** A shutdown cancelled the operation. */
class OperationCancelledError extends DroverError {}
/** A graceful reload failed and was rolled back; `cause` says why. */
class ReloadRolledBackError extends DroverError {}
/** A worker broke the MessageBus protocol (master side event). */
class ProtocolError extends DroverError {}
/** The master gave up on a worker: start timeout, protocol error, reported FAILED, hung, spawn error. */
class WorkerFailedError extends DroverError {}
/** `new MessageBus()` outside a process started by a drover master. */
class NotAWorkerError extends InvalidClusterContextError {}
/** The worker's MessageBus failed (handshake, channel, send after close). */
class MessageBusError extends DroverError {}
/**
 * The master could not provide a listening socket (a worker's `listen`), or could not bind a
 * declared one (`start()`). Carries Node's fields of a failed listen: `code` (e.g. 'EADDRINUSE'),
 * `errno` (negative), `syscall` ('listen'), `address` (as the master bound it: 'host:port').
 */
class ListenError extends DroverError {}
/**
 * A request (`request()`, `sendTo()`) failed. `code` is core's code: 'no_such_handler',
 * 'no_such_target', 'timeout', 'target_gone', 'handler_failed' (the message is the handler's),
 * 'overloaded', 'bad_request', 'master_gone' (or a newer one: compare codes, not messages).
 */
class RequestError extends DroverError {}

/** `reconfigure()` sent nothing: the config is too large for a frame, or cannot be encoded. */
class ReconfigureError extends DroverError {}

/** The pre-start hook threw (or rejected): no worker was spawned. `reason` is its message. */
class PreStartError extends DroverError {}

const classes = {
    DroverError,
    InvalidConfigurationError,
    InvalidArgumentError,
    InappropriateConditionError,
    AlreadyInitializedError,
    InvalidClusterContextError,
    WorkerStatusError,
    WorkerNotFoundError,
    MessageDeliveryError,
    OperationCancelledError,
    ReloadRolledBackError,
    ProtocolError,
    WorkerFailedError,
    NotAWorkerError,
    MessageBusError,
    ListenError,
    RequestError,
    ReconfigureError,
    PreStartError,
};

// napi's own argument-conversion failures: a wrong JS type.
const NAPI_TYPE_CODES = new Set([
    'InvalidArg', 'ObjectExpected', 'StringExpected', 'NameExpected', 'FunctionExpected',
    'NumberExpected', 'BooleanExpected', 'ArrayExpected', 'BigintExpected', 'DateExpected',
]);

/** Builds an error from the addon's JSON description. */
function fromDescription(d, cause) {
    const { name, message, ...details } = d;
    if (name === 'TypeError') {
        return new TypeError(message, cause ? { cause } : undefined);
    }
    const Class = classes[name] || DroverError;
    let innerCause = cause;
    if (details.cause && typeof details.cause === 'object' && details.cause.name) {
        innerCause = fromDescription(details.cause);
        delete details.cause;
    }
    const err = new Class(message, innerCause ? { cause: innerCause } : undefined);
    Object.assign(err, details);
    return err;
}

/** Converts anything the addon threw or rejected with into drover's classes. */
function fromNative(e) {
    if (e instanceof Error && typeof e.message === 'string') {
        if (e.message.startsWith(TAG)) {
            let d;
            try {
                d = JSON.parse(e.message.slice(TAG.length));
            } catch {
                return new DroverError(e.message.slice(TAG.length), { cause: e });
            }
            return fromDescription(d, e);
        }
        if (NAPI_TYPE_CODES.has(e.code)) {
            return new TypeError(e.message, { cause: e });
        }
    }
    return e;
}

/** Runs `fn`, converting what it throws. */
function call(fn) {
    try {
        return fn();
    } catch (e) {
        throw fromNative(e);
    }
}

module.exports = { ...classes, fromNative, fromDescription, call, TAG };
