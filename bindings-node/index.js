'use strict';

// drover: run, manage and scale a multi-process application — backed by the Rust core.
const { Master, MasterFactory } = require('./lib/master');
const { MessageBus } = require('./lib/message-bus');
const { ClusterClient } = require('./lib/cluster-client');
const exitReasons = require('./lib/exit-reasons');
const { WorkerStatuses, MasterStatuses } = require('./lib/statuses');
const {
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
    ReconfigureError,
    PreStartError,
    ProtocolError,
    WorkerFailedError,
    NotAWorkerError,
    MessageBusError,
    ListenError,
    RequestError,
} = require('./lib/errors');

const ExitReasons = {
    ExitReason: exitReasons.ExitReason,
    ExternalSignal: exitReasons.ExternalSignal,
    NormalExit: exitReasons.NormalExit,
    AbnormalExit: exitReasons.AbnormalExit,
};

// drain and listenFds load their modules on first use: those need node:net, and a worker that never
// listens should not pay for it (1.6-1.8 MiB of resident memory per process with Node 20).

/** Stops `server` without losing a request (lib/drain.js). */
function drain(server, options) {
    return require('./lib/drain').drain(server, options);
}

/** The sockets this process was started with, systemd style (lib/listen.js). */
function listenFds() {
    return require('./lib/listen').listenFds();
}

// Every entry a bare name: `import { ... } from 'drover'` finds a CommonJS module's named exports by
// reading this object literal (Node's cjs-module-lexer), and stops at the first entry that is not.
module.exports = {
    MasterFactory,
    Master,
    MessageBus,
    ClusterClient,
    drain,
    listenFds,
    ExitReasons,
    WorkerStatuses,
    MasterStatuses,
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
    ReconfigureError,
    PreStartError,
    ProtocolError,
    WorkerFailedError,
    NotAWorkerError,
    MessageBusError,
    ListenError,
    RequestError,
};
