'use strict';

/** Worker statuses: the MessageBus protocol numbers (drover's). */
const WorkerStatuses = Object.freeze({
    INITIALIZED: 1,
    STARTING: 2,
    STARTED: 3,
    STOPPING: 4,
    STOPPED: 5,
    SHUTTING_DOWN: 6,
    SHUTTED_DOWN: 7,
    FAILED: 8,
});

/** Master statuses, as `master.getStatus()` returns them. */
const MasterStatuses = Object.freeze({
    INITIALIZED: 'INITIALIZED',
    STARTING: 'STARTING',
    STARTED: 'STARTED',
    RELOADING: 'RELOADING',
    STOPPING: 'STOPPING',
    STOPPED: 'STOPPED',
    SHUT_DOWN: 'SHUT_DOWN',
    FAILED: 'FAILED',
});

const statusNames = Object.freeze(Object.fromEntries(Object.entries(WorkerStatuses).map(([k, v]) => [v, k])));

module.exports = { WorkerStatuses, MasterStatuses, statusNames };
