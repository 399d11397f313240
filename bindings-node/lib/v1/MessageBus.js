'use strict';

// drover 1.0's `require('drover/src/MessageBus')`: the same object `require('drover')` exports (lib/v1/README.md).
module.exports = require('../../index').MessageBus;
