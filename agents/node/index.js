'use strict';
// The public face of the Node agent: the API programs call (lib/api.js). Loading this
// module does not start recording; register.js does.

module.exports = require('./lib/api.js');
