'use strict';

// A drover Node master with 4 workers calling server.listen(PORT): BALANCE is shared (every
// worker accepts on the master's socket), round-robin or sticky (the master accepts and hands
// each connection over) or reuseport (each worker accepts on its own SO_REUSEPORT socket).
const path = require('node:path');
const { MasterFactory } = require(process.env.DROVER_PACKAGE);

const master = MasterFactory.create({
    script: path.join(__dirname, 'app.js'),
    count: 4,
    balance: process.env.BALANCE,
    name: 'bench',
});
master.start().then(() => process.stdout.write('ready\n'), (err) => {
    console.error(err);
    process.exit(1);
});
process.on('SIGTERM', () => master.gracefulShutdown().then(() => process.exit(0)));
