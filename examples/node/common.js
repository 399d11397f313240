'use strict';

// Helpers shared by the examples.
const http = require('node:http');
const { statusNames } = require('../../bindings-node/lib/statuses');

/** GET http://127.0.0.1:port/ → body (over `agent`, keep-alive or not). */
function get(port, agent = false) {
    return new Promise((resolve, reject) => {
        http.get({ host: '127.0.0.1', port, agent }, (res) => {
            let body = '';
            res.on('data', (d) => { body += d; });
            res.on('end', () => resolve(body.trim()));
        }).on('error', reject);
    });
}

/** Prints every worker's status, as the README's health check does. */
function printStatuses(master, label = master.name) {
    master.getWorkersStatuses().forEach((v, i) => console.log(`[${label}-${i}]: ${statusNames[v]}`));
    console.log('---');
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

module.exports = { get, printStatuses, sleep, statusNames };
