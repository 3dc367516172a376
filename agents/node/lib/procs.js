'use strict';
// Child processes: the parent -> child link, as the Python agent makes it
// (docs/agent-python.md, "Processes").
//
// Every child started through `child_process` gets `TRACEPARENT` (the OpenTelemetry
// environment carrier: the current trace continued with a new span id) and
// `WILLOWISP_PARENT_PROCESS` (this process's id) in its environment, and the parent writes
// `proc.spawn` (arg: the child's pid) on a `spawn` resource carrying that span id; a child
// running any Willowisp agent writes `proc.start` from it, and the analyzer links the two.
// When the program gives the child an environment of its own, the agent's `NODE_OPTIONS`
// (the --require of this agent) and the `WILLOWISP_*` variables are added where that
// environment lacks them, so a Node child stays recorded into the same run.
//
// How: spawn, exec, execFile and fork all end in ChildProcess.prototype.spawn with the
// environment already flattened into `envPairs` ("NAME=value" strings), which is patched
// there, once; spawnSync, execSync and execFileSync go through another internal path, so
// those three exports are wrapped and their options' `env` is completed.

const childProcess = require('node:child_process');
const K = require('./kinds.js');
const agent = require('./agent.js');
const tc = require('./context.js');

const REGISTER = require('node:path').resolve(__dirname, '..', 'register.js');

// The variables a child gets on top of its environment: [name, value, always].
// `always`: replaces what the environment has (the context of this spawn); otherwise
// only added when missing.
function additions(ctx) {
  const rec = agent.state.rec;
  const out = [
    ['TRACEPARENT', tc.format(ctx), true],
    ['WILLOWISP_PARENT_PROCESS', rec.processId, true],
  ];
  const opts = process.env.NODE_OPTIONS || '';
  if (opts.includes(REGISTER)) out.push(['NODE_OPTIONS', opts, false]);
  for (const [k, v] of Object.entries(process.env)) {
    if (k.startsWith('WILLOWISP_') && k !== 'WILLOWISP_PARENT_PROCESS') out.push([k, v, false]);
  }
  return out;
}

function spawnResource(rec, ctx, what, loc) {
  return rec.newResource([
    ['kind', 'spawn'],
    ['name', what.slice(0, 200)],
    ['loc', loc],
    ['trace_id', ctx.traceId],
    ['span_id', ctx.spanId],
    ['sampled', ctx.flags & 1],
  ]);
}

function describe(file, args) {
  const parts = Array.isArray(args) && args.length > 0 ? args : [file];
  return parts.map(String).join(' ');
}

// Before a child starts: its context and resource (0 when not recorded).
function before(file, args, below) {
  const rec = agent.state.rec;
  const ctx = agent.outgoing();
  const loc = agent.state.full ? agent.callerLoc(below) : 0;
  const rid = agent.recorded(ctx) ? spawnResource(rec, ctx, describe(file, args), loc) : 0;
  return { ctx, rid, loc, unit: agent.currentUnit() };
}

function after(s, pid) {
  if (s.rid !== 0 && agent.state.rec !== null) agent.state.rec.emit(K.PROC_SPAWN, s.unit, s.rid, Number(pid) || 0, s.loc);
}

function patchAsync(rec) {
  const proto = childProcess.ChildProcess.prototype;
  const orig = proto.spawn;
  proto.spawn = function spawn(options) {
    let s = null;
    if (agent.state.rec !== null && options && Array.isArray(options.envPairs)) {
      try {
        s = before(options.file, options.args, spawn);
        const pairs = options.envPairs;
        const names = new Map(pairs.map((p, i) => [String(p).split('=', 1)[0], i]));
        for (const [k, v, always] of additions(s.ctx)) {
          const at = names.get(k);
          if (at === undefined) pairs.push(`${k}=${v}`);
          else if (always) pairs[at] = `${k}=${v}`;
        }
      } catch (err) {
        rec.fault('child_process.spawn', err);
        s = null;
      }
    }
    const result = orig.call(this, options);
    if (s !== null) {
      try {
        after(s, this.pid);
      } catch (err) {
        rec.fault('child_process.spawn', err);
      }
    }
    return result;
  };
}

// The options object of a sync call (made when the program gave none), with `env` completed.
function withEnv(args, optionsAt, ctx) {
  let options = args[optionsAt];
  if (options === undefined || options === null) options = {};
  else if (typeof options !== 'object' || Array.isArray(options)) return args; // not ours to interpret
  const env = { ...(options.env || process.env) };
  for (const [k, v, always] of additions(ctx)) if (always || env[k] === undefined) env[k] = v;
  const out = args.slice();
  while (out.length < optionsAt) out.push(undefined);
  out[optionsAt] = { ...options, env };
  return out;
}

function patchSync(rec) {
  // name -> where its options are: after an args array if one is given
  const where = {
    spawnSync: (a) => (Array.isArray(a[1]) ? 2 : 1),
    execFileSync: (a) => (Array.isArray(a[1]) ? 2 : 1),
    execSync: () => 1,
  };
  for (const [name, optionsAt] of Object.entries(where)) {
    const orig = childProcess[name];
    const wrapped = {
      [name](...args) {
        if (agent.state.rec === null) return orig.apply(this, args);
        let s = null;
        try {
          s = before(String(args[0]), Array.isArray(args[1]) ? [args[0], ...args[1]] : [args[0]], wrapped[name]);
          args = withEnv(args, optionsAt(args), s.ctx);
          // the pid of a sync child is known only after it ended: the spawn is recorded first
          after(s, 0);
        } catch (err) {
          rec.fault(`child_process.${name}`, err);
        }
        return orig.apply(this, args);
      },
    };
    childProcess[name] = wrapped[name];
  }
}

function install(rec) {
  patchAsync(rec);
  patchSync(rec);
}

module.exports = { install };
