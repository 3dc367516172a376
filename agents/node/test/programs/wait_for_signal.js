'use strict';
// Records one access, says `ready`, then waits (an open server) until a signal ends it.
const http = require('node:http');
require('../../index.js').access('before-signal', 'write');
http.createServer().listen(0, '127.0.0.1', () => process.stdout.write('ready\n'));
