'use strict';

// Requests and worker-to-worker messages (PROTOCOL.md §5.5), shared by Master and MessageBus:
// targets and options checked and put in core's form, and JS handlers run and answered.

const errors = require('./errors');
const { toJson } = require('./json');

function typeName(value) {
    return value === null ? 'null' : Array.isArray(value) ? 'array' : typeof value;
}

/**
 * Core's target text of `target`: 'master', 'worker:ID', 'name:NAME', 'any', 'all' as they are;
 * a number is a worker id; `{ worker: ID }` and `{ name: NAME }` likewise. A wrong type is a
 * TypeError naming `what`'s target argument.
 */
function targetText(target, what) {
    if (typeof target === 'string') return target;
    if (typeof target === 'number') return `worker:${target}`;
    if (target !== null && typeof target === 'object' && !Array.isArray(target)) {
        if (typeof target.worker === 'number') return `worker:${target.worker}`;
        if (typeof target.name === 'string') return `name:${target.name}`;
    }
    throw new TypeError(
        `${what}: target must be 'master', 'worker:ID', 'name:NAME', 'any', 'all', a worker id or { worker } / { name }, got ${typeName(target)}`,
    );
}

/** The timeout of `options` ({ timeout } in ms), or undefined for core's default (30 s). */
function timeoutOf(options, what) {
    if (options === undefined) return undefined;
    if (options === null || typeof options !== 'object') {
        throw new TypeError(`${what}: options must be an object, got ${typeName(options)}`);
    }
    const { timeout } = options;
    if (timeout === undefined) return undefined;
    if (typeof timeout !== 'number' || !(timeout >= 0) || !Number.isFinite(timeout)) {
        throw new TypeError(`${what}: options.timeout must be a number of milliseconds >= 0, got ${typeName(timeout)} ${String(timeout)}`);
    }
    return timeout;
}

function checkName(name, what) {
    if (typeof name !== 'string') {
        throw new TypeError(`${what}: name must be a string, got ${typeName(name)}`);
    }
}

function checkHandler(name, handler, what) {
    checkName(name, what);
    if (typeof handler !== 'function') {
        throw new TypeError(`${what}: handler must be a function, got ${typeName(handler)}`);
    }
}

/** The JSON text of argument `arg` of `what`; a TypeError if it is not JSON-serializable. */
function jsonArg(value, what, arg) {
    try {
        return toJson(value);
    } catch (e) {
        throw new TypeError(`${what}: ${arg} must be JSON-serializable: ${e.message}`, { cause: e });
    }
}

/** Awaits the addon's promise `call()` makes, its errors as drover's classes. */
async function settle(call) {
    try {
        return await errors.call(call);
    } catch (e) {
        throw errors.fromNative(e);
    }
}

/**
 * Makes a request through `native.request(target, name, argsJson, timeout)` (master's or bus's)
 * and resolves with the parsed result. Argument errors reject the promise (never throw).
 */
async function request(native, what, target, name, args, options) {
    const text = targetText(target, what);
    checkName(name, what);
    const timeout = timeoutOf(options, what);
    const json = jsonArg(args, what, 'args');
    return JSON.parse(await settle(() => native.request(text, name, json, timeout)));
}

/**
 * A request's arguments checked and in core's form: { target, json, timeout }. Throws TypeError
 * naming `what`'s argument.
 */
function checkCall(what, target, name, args, options) {
    const text = targetText(target, what);
    checkName(name, what);
    const timeout = timeoutOf(options, what);
    return { target: text, json: jsonArg(args, what, 'args'), timeout };
}

/** The message a failed handler's asker gets. */
function failureMessage(e) {
    if (e instanceof Error) return e.message;
    if (typeof e === 'string') return e;
    try {
        return JSON.stringify(e) ?? String(e);
    } catch {
        return String(e);
    }
}

/**
 * Runs the handler `handlers` has for request event `e` ({ id, name, from, args }) and answers
 * through `respond(id, ok, text)`: the result's JSON, or the failure's message (thrown, rejected,
 * not JSON-serializable, or no handler of that name).
 */
function answer(handlers, e, respond) {
    const handler = handlers.get(e.name);
    const reply = (ok, text) => {
        try {
            respond(e.id, ok, text);
        } catch {
            // The master or bus is gone: the asker learns it from core (target gone, timeout).
        }
    };
    if (!handler) {
        reply(false, `no handler ${JSON.stringify(e.name)} in this process`);
        return;
    }
    new Promise((resolve) => resolve(handler(e.args, e.from)))
        .then((result) => toJson(result))
        .then((text) => reply(true, text), (err) => reply(false, failureMessage(err)));
}

/** Sends `data` to other workers through `native.sendTo(target, dataJson)`; resolves with the count. */
async function sendTo(native, what, target, data) {
    const text = targetText(target, what);
    const json = jsonArg(data, what, 'data');
    return settle(() => native.sendTo(text, json));
}

module.exports = { targetText, timeoutOf, checkHandler, checkCall, request, sendTo, answer };
