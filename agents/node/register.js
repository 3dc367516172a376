'use strict';
// `node --require <this file> app.js` (or NODE_OPTIONS="--require <this file>", which
// `willowisp run` sets): starts recording this process from the WILLOWISP_* variables.
// Any failure to start is one line on stderr; the program always runs.

try {
  require('./lib/start.js').start();
} catch (err) {
  try {
    process.stderr.write(`willowisp: agent not started in pid ${process.pid}: ${err && err.message ? err.message : err}\n`);
  } catch {
    // stderr closed: stay silent
  }
}
