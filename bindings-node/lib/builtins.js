'use strict';

// Whether one of Node's own modules is loaded in this process, without loading it: drover loads
// node:net and node:tls only when the app does (each costs resident memory in every worker).

/** True if `node:<name>` is loaded (or when Node cannot tell: then the caller loads it). */
function isLoaded(name) {
    const list = process.moduleLoadList;
    return !Array.isArray(list) || list.includes(`NativeModule ${name}`);
}

module.exports = { isLoaded };
