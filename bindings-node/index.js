'use strict';

// drover: run, manage and scale a multi-process application — backed by the Rust core.
const { Master, MasterFactory } = require('./lib/master');
const { MessageBus } = require('./lib/message-bus');
const ExitReasons = require('./lib/exit-reasons');
const { WorkerStatuses, MasterStatuses } = require('./lib/statuses');
const errors = require('./lib/errors');

module.exports = {
    MasterFactory,
    Master,
    MessageBus,
    // Loaded on first use: they need node:net, and a worker that never listens should not pay for
    // it (about 1.6 MiB of resident memory per process, measured with Node 20).
    get drain() {
        return require('./lib/drain').drain;
    },
    get listenFds() {
        return require('./lib/listen').listenFds;
    },
    ExitReasons: {
        ExitReason: ExitReasons.ExitReason,
        ExternalSignal: ExitReasons.ExternalSignal,
        NormalExit: ExitReasons.NormalExit,
        AbnormalExit: ExitReasons.AbnormalExit,
    },
    WorkerStatuses,
    MasterStatuses,
    DroverError: errors.DroverError,
    InvalidConfigurationError: errors.InvalidConfigurationError,
    InappropriateConditionError: errors.InappropriateConditionError,
    WorkerStatusError: errors.WorkerStatusError,
    WorkerNotFoundError: errors.WorkerNotFoundError,
    MessageDeliveryError: errors.MessageDeliveryError,
    OperationCancelledError: errors.OperationCancelledError,
    ReloadRolledBackError: errors.ReloadRolledBackError,
    ProtocolError: errors.ProtocolError,
    WorkerFailedError: errors.WorkerFailedError,
    NotAWorkerError: errors.NotAWorkerError,
    MessageBusError: errors.MessageBusError,
    ListenError: errors.ListenError,
};
