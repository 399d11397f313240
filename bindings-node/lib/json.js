'use strict';

// Messages cross into the addon as JSON text, as Node's IPC serializes them ('json' mode):
// JSON.stringify in V8 is cheaper than walking the object through N-API calls, and it has
// JSON's semantics (`toJSON` honoured; BigInt and cycles throw a TypeError).

/** The JSON text of a message; undefined (like a function) is null. */
function toJson(message) {
    const text = JSON.stringify(message);
    return text === undefined ? 'null' : text;
}

module.exports = { toJson };
