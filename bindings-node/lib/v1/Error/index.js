'use strict';

// drover 1.0's `require('drover/src/Error')`: its error classes, by name (and every later one).
const { fromNative, fromDescription, call, TAG, ...classes } = require('../../errors');

module.exports = classes;
