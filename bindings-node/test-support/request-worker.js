'use strict';

// A Node worker answering and making requests (PROTOCOL.md §5.5), for test/requests.test.js.
// Handlers: whoami ({ id, lang: 'node' }), echo (the arguments), fail (throws "failed in node"),
// reject (rejects with "rejected in node"), slow (answers after args.ms, asynchronously).
// Messages ({ cmd }): request ({ to, name, args, timeout }: replies { response } or
// { request_error: { name, code, message } }), send-to ({ to, data }: replies { sent } or
// { send_error }). A message from another worker is reported as { from, got }.
const { MessageBus, RequestError } = require('..');

const mb = new MessageBus();
const id = Number(process.env.DROVER_WORKER_ID);

mb.handle('whoami', (_args, from) => ({ id, lang: 'node', asker: from }))
    .handle('echo', (args) => args)
    .handle('fail', () => {
        throw new Error('failed in node');
    })
    .handle('reject', async () => {
        throw new Error('rejected in node');
    })
    .handle('slow', (args) => new Promise((resolve) => setTimeout(() => resolve({ slept: args.ms }), args.ms)));

const describe = (e) => ({ name: e.name, code: e.code, message: e.message, isRequestError: e instanceof RequestError });

mb.on('message', (msg) => {
    switch (msg && msg.cmd) {
        case 'request':
            mb.request(msg.to, msg.name, msg.args, msg.timeout === undefined ? undefined : { timeout: msg.timeout }).then(
                (response) => mb.sendMessage({ response }),
                (e) => mb.sendMessage({ request_error: describe(e) }),
            );
            break;
        case 'send-to':
            mb.sendTo(msg.to, msg.data).then(
                (sent) => mb.sendMessage({ sent }),
                (e) => mb.sendMessage({ send_error: describe(e) }),
            );
            break;
        default:
            break;
    }
});

mb.on('worker-message', (data, from) => mb.sendMessage({ from, got: data }));
mb.on('stop', () => mb.sendStopped());
mb.on('quit', () => {
    mb.sendShuttedDown();
    mb.close();
});
mb.sendStarted();
