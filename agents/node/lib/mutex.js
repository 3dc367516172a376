'use strict';
// The `async-mutex` package: its Mutex and Semaphore as named locks.
//
// The package is patched when the program first requires it (Module.prototype.require is
// wrapped for ids naming async-mutex; an ESM import through esm.js's load hook). Every Mutex wraps a
// Semaphore, and Mutex.acquire / runExclusive / release, Semaphore.runExclusive and the
// releasers all end in Semaphore.prototype.acquire and .release, so those two are the hooks:
//
//   acquire on a free lock:  lock.acquired                     (by the acquiring flow)
//   acquire on a held lock:  unit.block (acquire) ... lock.acquired, or unit.wake on error
//   release:                 lock.release, written before the lock is released
//
// One `lock` resource per Mutex (kind `semaphore` for a plain Semaphore), defined at its
// first acquisition and located at the program's line there; its name is the variable the
// program called it through on that line (`await lockA.acquire()` names it `lockA`), else
// `Mutex@file:line`. Recorded in `full` mode, and in `hops` mode inside boundary instances.

const fs = require('node:fs');
const Module = require('node:module');
const K = require('./kinds.js');
const agent = require('./agent.js');
const data = require('./data.js');

const RES = Symbol('willowisp.lock');
const IS_MUTEX = Symbol('willowisp.mutex');
const patched = new WeakSet();
const lines = new Map(); // file -> its lines, for naming

function sourceLine(site) {
  let text = lines.get(site.file);
  if (text === undefined) {
    try {
      text = fs.readFileSync(site.file, 'utf8').split('\n');
    } catch {
      text = [];
    }
    if (lines.size > 256) lines.clear();
    lines.set(site.file, text);
  }
  return text[site.line - 1] || '';
}

function defineLock(rec, sem, below) {
  const site = agent.callerSite(below);
  const loc = agent.callerLoc(below);
  const mutex = sem[IS_MUTEX] === true;
  let name = null;
  if (site !== null) {
    const m = /([A-Za-z_$][\w$]*)\s*\.\s*(?:acquire|runExclusive|waitForUnlock)\s*\(/.exec(sourceLine(site));
    if (m) name = m[1];
  }
  if (name === null) {
    name = `${mutex ? 'Mutex' : 'Semaphore'}@${site ? `${require('node:path').basename(site.file)}:${site.line}` : '?'}`;
  }
  const rid = rec.newResource([['kind', mutex ? 'lock' : 'semaphore'], ['name', name], ['loc', loc], ['library', 'async-mutex']]);
  sem[RES] = rid;
  return rid;
}

function patch(exports) {
  const { Semaphore, Mutex } = exports;
  if (typeof Semaphore !== 'function' || patched.has(Semaphore.prototype)) return;
  patched.add(Semaphore.prototype);
  const sp = Semaphore.prototype;
  const origAcquire = sp.acquire;
  const origRelease = sp.release;

  sp.acquire = function acquire(...args) {
    const rec = agent.state.rec;
    if (rec === null || !data.enabled()) return origAcquire.apply(this, args);
    let unit = 0;
    let rid = 0;
    let loc = 0;
    let blocked = false;
    try {
      unit = agent.currentUnit();
      rid = this[RES] ?? defineLock(rec, this, acquire);
      loc = agent.callerLoc(acquire);
      const weight = typeof args[0] === 'number' ? args[0] : 1;
      blocked = this.getValue() < weight || (typeof this._queue === 'object' && this._queue.length > 0);
      if (blocked) rec.emit(K.UNIT_BLOCK, unit, rid, K.REASON_ACQUIRE, loc);
    } catch (err) {
      rec.fault('async-mutex.acquire', err);
      return origAcquire.apply(this, args);
    }
    return origAcquire.apply(this, args).then(
      (result) => {
        rec.emit(K.LOCK_ACQUIRED, unit, rid, 0, loc);
        return result;
      },
      (err) => {
        if (blocked) rec.emit(K.UNIT_WAKE, unit, rid, K.WAKE_ERROR, loc);
        throw err;
      },
    );
  };

  sp.release = function release(...args) {
    const rec = agent.state.rec;
    const rid = this[RES];
    if (rec !== null && rid !== undefined) {
      try {
        rec.emit(K.LOCK_RELEASE, agent.currentUnit(), rid, 0, agent.state.full ? agent.callerLoc(release) : 0);
      } catch (err) {
        rec.fault('async-mutex.release', err);
      }
    }
    return origRelease.apply(this, args);
  };

  if (typeof Mutex === 'function') {
    const mp = Mutex.prototype;
    for (const method of ['acquire', 'runExclusive', 'waitForUnlock', 'release']) {
      const orig = mp[method];
      if (typeof orig !== 'function') continue;
      mp[method] = {
        [method](...args) {
          if (this._semaphore && typeof this._semaphore === 'object') this._semaphore[IS_MUTEX] = true;
          return orig.apply(this, args);
        },
      }[method];
    }
  }
}

function install(rec) {
  const origRequire = Module.prototype.require;
  Module.prototype.require = function require(id) {
    const exports = origRequire.apply(this, arguments);
    if (typeof id === 'string' && id.includes('async-mutex') && exports && typeof exports === 'object') {
      try {
        patch(exports);
      } catch (err) {
        rec.fault('async-mutex.install', err);
      }
    }
    return exports;
  };
}

module.exports = { install, patch };
