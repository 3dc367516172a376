'use strict';
// Where a recorder's chunks go when no collector takes them (or after the native stream
// fell back): the segment files of this process in the run folder, and what a full disk
// does to them (docs/agent-node.md, "A full disk").
//
// A segment is `<service>-<pid>-<process id prefix>-<n>.wtrace`: the file header, then
// chunks, each appended whole with write(2); past SEGMENT_BYTES the next chunk opens the
// next segment, which starts again with the process record (the recorder writes it: open()
// sets its needProcessRecord).
//
// A full disk: a chunk is appended whole or cut off again (append), so a file always ends
// at a chunk boundary; a refused chunk's events are counted as dropped per unit in the
// recorder's `unwritten` and said in the next chunk written, its records carried and
// written before that chunk (refused); the first refusal frees the reserve made beside the
// first segment and writes a news chunk into that room at once (writeNews); one stderr line
// at exit says how many events were lost (sayLost).

const fs = require('node:fs');
const path = require('node:path');
const w = require('./wtrace.js');
const K = require('./kinds.js');

const SEGMENT_BYTES = 256 * 1024 * 1024;
// The room kept for the news of a loss, and how many definition records of refused
// chunks are kept for the next chunk at most.
const RESERVE_BYTES = 64 * 1024;
const RESERVE_PREFIX = '.willowisp-reserve-';
const MAX_CARRIED_BYTES = 16 * 1024 * 1024;
const NO_EVENTS = Buffer.from([0]);
const MAX_NEWS_UNITS = 1000;
const hrtime = process.hrtime.bigint;

class SegmentFiles {
  // Nothing is opened yet: the recorder calls open() for the first segment (or write()
  // opens it, when the native stream falls back).
  constructor(rec) {
    this.rec = rec;
    this.segment = 0;
    this.fd = -1;
    this.fileBytes = 0;
    this.path = '';
    this.reserve = ''; // the reserve file's path while it exists (makeReserve)
    this.reserveTried = false;
    this.lostOnWrite = 0; // events in refused chunks (the stderr line at exit)
    this.writeError = ''; // set while writes are refused: one fault per spell
    this.refusal = ''; // the last refusal's reason
    // The records of refused chunks, each as a chunk of its own (no events), written before
    // the next chunk; at most MAX_CARRIED_BYTES of them.
    this.carriedChunks = [];
    this.carriedBytes = 0;
  }

  segmentPath() {
    const name = `${this.rec.config.service.replace(/[^A-Za-z0-9._-]/g, '_')}-${this.rec.pid}-${this.rec.processId.slice(0, 8)}-${this.segment}.wtrace`;
    return path.join(this.rec.config.out, name);
  }

  // Opens the next segment (the first one: after making the reserve). Throws when the
  // file cannot be made or its header written; the current segment stays then.
  open() {
    if (!this.reserveTried) {
      this.reserveTried = true;
      this.makeReserve();
    }
    this.segment += 1;
    const file = this.segmentPath();
    const fd = fs.openSync(file, 'a', 0o644);
    try {
      appendAll(fd, w.fileHeader());
    } catch (err) {
      fs.closeSync(fd);
      this.segment -= 1;
      if (this.fd >= 0) {
        try {
          fs.unlinkSync(file); // a later segment that got no room: the current one goes on
        } catch {
          // nothing to remove
        }
      }
      throw err;
    }
    if (this.fd >= 0) fs.closeSync(this.fd);
    this.path = file;
    this.fd = fd;
    this.fileBytes = 16;
    this.rec.needProcessRecord = true;
  }

  // Room kept for the news of a full disk: a file of RESERVE_BYTES (written for real: no
  // fallocate in Node) that the agent deletes when the file system first refuses a chunk,
  // so the chunk saying what was lost still fits. None when it cannot be made.
  makeReserve() {
    const file = path.join(this.rec.config.out, `${RESERVE_PREFIX}${this.rec.pid}`);
    let fd;
    try {
      fd = fs.openSync(file, 'w', 0o600);
    } catch {
      return;
    }
    try {
      appendAll(fd, Buffer.alloc(RESERVE_BYTES));
      this.reserve = file;
    } catch {
      try {
        fs.unlinkSync(file);
      } catch {
        // nothing to remove
      }
    } finally {
      fs.closeSync(fd);
    }
  }

  dropReserve() {
    const file = this.reserve;
    this.reserve = '';
    if (file === '') return false;
    try {
      fs.unlinkSync(file);
    } catch {
      return false;
    }
    return true;
  }

  // Appends a chunk to the segment file (opened here first when streaming fell back):
  // all of it or nothing. A refusal (a full disk, a quota) is handled by refused() and
  // never thrown; `raw`, the chunk's payload when the caller still has it, saves
  // inflating the chunk again there. Returns whether the chunk was written.
  write(chunk, raw = null) {
    try {
      if (this.fd < 0) {
        // the stream's fallback: it writes the process record at the head itself
        const need = this.rec.needProcessRecord;
        makeDirs(this.rec.config.out);
        this.segment -= 1;
        this.open();
        this.rec.needProcessRecord = need;
      }
      if (this.fileBytes + chunk.length > SEGMENT_BYTES && this.fileBytes > 16) {
        try {
          this.open();
        } catch {
          // no room for a new segment: the chunk goes to this one, or is refused below
        }
      }
      if (this.carriedChunks.length === 0) this.append(chunk);
      else {
        // the records of refused chunks first (the events of this one may name them), in
        // one write with it: all or nothing, so the stats record of this chunk stays the
        // last one written
        this.append(Buffer.concat([...this.carriedChunks, chunk]));
        this.carriedChunks = [];
        this.carriedBytes = 0;
      }
    } catch (err) {
      this.refused(err, chunk, raw);
      return false;
    }
    this.writeError = '';
    return true;
  }

  // One chunk appended whole, or the file cut back to where it was (ftruncate) and the
  // error thrown: the file always ends at a chunk boundary, and a later chunk that fits
  // follows the last whole one directly. (fs.writeSync writes once: a short write on a
  // nearly full disk returns the count, which is why this loops.)
  append(chunk) {
    const start = this.fileBytes;
    let done = 0;
    try {
      done = appendAll(this.fd, chunk);
    } catch (err) {
      done = err.written ?? 0;
      if (done > 0) {
        try {
          fs.ftruncateSync(this.fd, start);
          done = 0;
        } catch {
          // the reader resynchronises on the next chunk's magic
        }
      }
      this.fileBytes = start + done;
      throw err;
    }
    this.fileBytes = start + done;
  }

  // A chunk the file system refused (append() cut it off again). Its events are dropped
  // and counted per unit, said in the next chunk that gets written (and on stderr at
  // exit); its definitions and faults are kept for that chunk, so later events still name
  // their units and resources. The first refusal of a spell is one fault (where=write);
  // the very first one deletes the reserve and writes the news at once (writeNews).
  refused(err, chunk, raw) {
    let named = [];
    try {
      const payload = raw !== null ? raw : w.chunkPayload(chunk);
      const p = w.payloadEvents(payload, raw !== null ? this.rec.eventsAt.get(raw) : undefined);
      let lost = 0;
      const unwritten = this.rec.unwritten;
      for (let i = 0; i < p.n; i += 1) {
        const unit = p.unit(i);
        let count = 1;
        if (p.kind(i) === K.AGENT_DROP) count = Number(p.arg(i)); // already in totalDropped
        else lost += 1;
        unwritten.set(unit, (unwritten.get(unit) ?? 0) + count);
      }
      this.lostOnWrite += lost;
      this.rec.totalDropped += lost;
      // its records (all of them: definitions, faults, its stats) as a chunk without events,
      // compressed once here, written together with the next chunk that fits (write);
      // no cost at the next refusals but the write
      if (p.at > 2) { // (two zero counts: no string, no record)
        const carried = w.deflateChunk(Buffer.concat([payload.subarray(0, p.at), NO_EVENTS]));
        this.carriedChunks.push(carried);
        this.carriedBytes += carried.length;
        while (this.carriedBytes > MAX_CARRIED_BYTES && this.carriedChunks.length > 1) this.carriedBytes -= this.carriedChunks.shift().length;
      }
      if (this.reserve !== '') {
        // the news comes now: the records of the units that lost events go in it
        const records = p.records !== undefined ? p.records : w.decodePayload(payload).records;
        named = records.filter((r) => r.type === w.RECORD.unit && unwritten.has(r.id));
      }
    } catch (e) {
      this.rec.fault('write.count', e);
    }
    this.rec.anchorNext(); // the next chunk carries an anchor
    let fault = null;
    if (this.writeError === '') {
      this.writeError = this.refusal = reasonOf(err);
      try {
        fault = this.rec.faultRecord('write', `${this.refusal}: ${this.path}`);
      } catch {
        // counted as far as it went
      }
    }
    // the news, else (no room even for the units' records) the news without them
    if (this.dropReserve() && (this.writeNews(fault, named.slice(-MAX_NEWS_UNITS)) || (named.length > 0 && this.writeNews(fault, [])))) return;
    if (fault !== null) this.rec.define(fault.type, fault.id, fault.attrs, undefined);
  }

  // A small chunk with only the news of the loss, written at once into the room the
  // reserve left: the process record, the write fault, the records of the units that lost
  // events (so the drops name them even when nothing after fits; they come again with the
  // carried definitions), a clock anchor, one agent.drop per unit with lost events and the
  // stats. Events recorded since wait for the next flush (they may not fit). Returns
  // whether it was written.
  writeNews(fault, units) {
    let n = 0;
    let mono = 0n;
    try {
      const records = [this.rec.processRecord(), ...units];
      if (fault !== null) records.push(fault);
      records.push(this.rec.statsRecord());
      n = 1 + this.rec.unwritten.size;
      const ev = { firstSeq: this.rec.nextSeq, n, ...w.newColumns(n) };
      mono = hrtime();
      ev.kind[0] = K.CLOCK_ANCHOR;
      ev.unit[0] = 1;
      ev.time[0] = mono;
      ev.arg[0] = this.rec.wallAt(mono) + BigInt(this.rec.config.clockOffsetNs);
      let i = 1;
      for (const [unit, count] of this.rec.unwritten) {
        ev.kind[i] = K.AGENT_DROP;
        ev.unit[i] = unit;
        ev.time[i] = mono;
        ev.arg[i] = BigInt(count);
        i += 1;
      }
      this.append(w.deflateChunk(w.encodePayload(records, ev)));
    } catch {
      return false; // not even that fits: the line at exit says it
    }
    this.rec.nextSeq += n;
    this.rec.unwritten.clear();
    this.rec.lastAnchor = mono;
    return true;
  }

  // The one line a full disk costs the program's stderr (at exit): nothing is lost
  // silently, and when the disk stayed full there is nowhere else to say it.
  sayLost() {
    try {
      fs.writeSync(
        2,
        `willowisp: ${this.lostOnWrite} events of ${this.rec.config.service} (pid ${this.rec.pid}) could not be written to ${this.path || this.rec.config.out}: ${this.refusal}\n`,
      );
    } catch {
      // no stderr
    }
  }

  // At exit (the recorder has written what it had).
  close() {
    try {
      fs.closeSync(this.fd);
    } catch {
      // never opened, or already closed
    }
    this.fd = -1;
    this.dropReserve();
    if (this.lostOnWrite > 0) this.sayLost();
  }
}

// mkdir -p, one level at a time: Node 20's recursive mkdirSync never returns for some
// paths it cannot create (under /proc, where mkdir says ENOENT for a parent that exists).
function makeDirs(dir) {
  const missing = [];
  let at = path.resolve(dir);
  while (!fs.existsSync(at)) {
    missing.push(at);
    const up = path.dirname(at);
    if (up === at || missing.length > 64) break;
    at = up;
  }
  for (const d of missing.reverse()) {
    try {
      fs.mkdirSync(d);
    } catch (err) {
      if (err.code !== 'EEXIST') throw err;
    }
  }
}

// Writes all of `buf` at the end of `fd` (opened for appending); returns the count. A
// failure part-way throws with `written` set to what did go out.
function appendAll(fd, buf) {
  let done = 0;
  try {
    while (done < buf.length) {
      const n = fs.writeSync(fd, buf, done, buf.length - done);
      if (!(n > 0)) throw Object.assign(new Error('write wrote nothing'), { code: 'EIO' });
      done += n;
    }
  } catch (err) {
    if (err && typeof err === 'object') err.written = done;
    throw err;
  }
  return done;
}

// An error's reason as strerror says it ("No space left on device").
function reasonOf(err) {
  try {
    if (err && typeof err.errno === 'number') {
      const known = require('node:util').getSystemErrorMap().get(err.errno);
      if (known !== undefined) return known[1].charAt(0).toUpperCase() + known[1].slice(1);
    }
  } catch {
    // the message below
  }
  return String(err && err.message ? err.message : err).slice(0, 200);
}

module.exports = { SegmentFiles, makeDirs, RESERVE_PREFIX };
