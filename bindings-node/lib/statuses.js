'use strict';

// Status names and numbers come from core through the addon (`statusTablesJson`), the one table the
// C ABI, the `drover` command and the protocol use: the JS package keeps no copy to drift.
const { statusTablesJson } = require('./native');

const tables = JSON.parse(statusTablesJson());

/** Worker statuses: the MessageBus protocol numbers (drover's), e.g. `STARTED: 3`. */
const WorkerStatuses = Object.freeze(Object.fromEntries(tables.workers.map((s) => [s.name, s.code])));

/** Master statuses, as `master.getStatusName()` returns them (`STARTED: 'STARTED'`). */
const MasterStatuses = Object.freeze(Object.fromEntries(tables.masters.map((s) => [s.name, s.name])));

const statusNames = Object.freeze(Object.fromEntries(tables.workers.map((s) => [s.code, s.name])));

module.exports = { WorkerStatuses, MasterStatuses, statusNames };
