'use strict';
// Data accesses (format 1.1, docs/format.md "Data accesses"): `data` resources named by
// what two accesses must share to conflict, and data.access events (arg 0 read, 1 write).
// One resource per (name, store) is defined once and reused. Recorded in `full` mode, and
// in `hops` mode only inside a boundary instance (as the Python agent's gate).

const K = require('./kinds.js');
const agent = require('./agent.js');

const MAX_NAME = 200;
const cache = new Map(); // store \0 name -> resource number

function enabled() {
  if (agent.state.full) return true;
  const f = agent.currentFlow();
  return f !== undefined && f.boundary !== null;
}

function resource(rec, name, store, loc) {
  const key = `${store}\0${name}`;
  let rid = cache.get(key);
  if (rid === undefined) {
    if (cache.size > 100_000) cache.clear();
    rid = rec.newResource([['kind', 'data'], ['name', name], ['loc', loc], ['store', store], ['statement', '']]);
    cache.set(key, rid);
  }
  return rid;
}

function access(rec, unit, name, store, mode, loc) {
  rec.emit(K.DATA_ACCESS, unit, resource(rec, String(name).slice(0, MAX_NAME), store, loc), mode, loc);
}

const WRITES = new Set(['PUT', 'POST', 'PATCH', 'DELETE']);
const READS = new Set(['GET', 'HEAD']);

// A server request as a read or write of what its URL names.
function httpRequest(rec, unit, method, host, target) {
  if (!agent.state.full) return;
  const m = method.toUpperCase();
  if (!WRITES.has(m) && !READS.has(m)) return;
  access(rec, unit, `http:${host}${target.split('?')[0]}`, 'http', WRITES.has(m) ? 1 : 0, 0);
}

module.exports = { enabled, access, httpRequest };
