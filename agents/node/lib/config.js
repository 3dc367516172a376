'use strict';
// The agent's configuration: one frozen object read once from the environment at start,
// so hooks never look at the environment per event. A malformed value is a ConfigError:
// register.js turns it into one line on stderr and leaves the program untouched.

const path = require('node:path');

class ConfigError extends Error {}

const RUNTIMES = ['python', 'go', 'java', 'rust', 'nodejs'];

function parseBoundary(spec, source = 'WILLOWISP_BOUNDARIES') {
  // entry=PROTOCOL:WHAT;exit=...;runtimes=a,b (src/willowisp/model/boundary.py)
  const fields = {};
  for (const part of spec.split(';')) {
    if (!part.trim()) continue;
    const eq = part.indexOf('=');
    const key = eq < 0 ? '' : part.slice(0, eq).trim();
    if (!['entry', 'exit', 'runtimes'].includes(key)) {
      throw new ConfigError(`${source} ${JSON.stringify(spec.slice(0, 64))}: ${JSON.stringify(part.trim().slice(0, 64))} is not entry=, exit= or runtimes=`);
    }
    fields[key] = part.slice(eq + 1).trim();
  }
  const entry = fields.entry ?? '';
  const colon = entry.indexOf(':');
  if (colon <= 0 || !entry.slice(colon + 1).trim()) {
    throw new ConfigError(`${source} ${JSON.stringify(spec.slice(0, 64))}: needs entry=PROTOCOL:WHAT`);
  }
  const runtimes = (fields.runtimes ?? '').split(',').map((r) => r.trim()).filter(Boolean);
  // the same check every agent makes: a typo refused everywhere, not applied in some
  const unknown = runtimes.find((r) => !RUNTIMES.includes(r));
  if (unknown !== undefined) {
    throw new ConfigError(`${source} ${JSON.stringify(spec.slice(0, 64))}: unknown runtime ${JSON.stringify(unknown.slice(0, 32))} (one of ${RUNTIMES.join(', ')})`);
  }
  return Object.freeze({
    spec,
    entry,
    protocol: entry.slice(0, colon).trim().toLowerCase(),
    what: entry.slice(colon + 1).trim(),
    runtimes,
    allowsNode: runtimes.length === 0 || runtimes.includes('nodejs'),
    // the same 8 hex digits every runtime derives from the entry (tracestate wisp=b-<id>)
    id: require('node:crypto').createHash('sha256').update(entry).digest('hex').slice(0, 8),
  });
}

function number(env, name, fallback, check) {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  const v = Number(raw.trim());
  if (!Number.isFinite(v) || !check(v)) throw new ConfigError(`bad ${name}=${JSON.stringify(raw)}`);
  return v;
}

function programName(argv) {
  const script = argv[1];
  return script ? path.basename(script).replace(/\.[cm]?js$/, '') || 'node' : 'node';
}

function fromEnv(env = process.env, argv = process.argv) {
  const mode = (env.WILLOWISP_MODE ?? '').trim() || 'full';
  if (mode !== 'full' && mode !== 'hops') {
    throw new ConfigError(`bad WILLOWISP_MODE=${JSON.stringify(env.WILLOWISP_MODE)} (full or hops)`);
  }
  const ratio = number(env, 'WILLOWISP_TRACE_RATIO', 1, (v) => v >= 0 && v <= 1);
  const flushMs = number(env, 'WILLOWISP_FLUSH_MS', 50, (v) => v > 0 && v <= 100);
  const maxBytes = number(env, 'WILLOWISP_MAX_BUFFER_BYTES', 64 * 1024 * 1024, (v) => v >= 65536);
  // caps every stream reconnection delay (docs/protocols.md); 0: no cap (1, 2, 4, 8, 16, 30...)
  const streamRetryS = number(env, 'WILLOWISP_STREAM_RETRY_S', 0, (v) => v > 0);
  const offsetRaw = (env.WILLOWISP_CLOCK_OFFSET_NS ?? '').trim() || '0';
  if (!/^-?\d{1,19}$/.test(offsetRaw)) {
    throw new ConfigError(`bad WILLOWISP_CLOCK_OFFSET_NS=${JSON.stringify(env.WILLOWISP_CLOCK_OFFSET_NS)}`);
  }
  const runPidRaw = (env.WILLOWISP_RUN_PID ?? '').trim() || '0';
  const boundaries = (env.WILLOWISP_BOUNDARIES ?? '')
    .split('|')
    .filter((b) => b.trim())
    .map((b) => parseBoundary(b));
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  return Object.freeze({
    out: env.WILLOWISP_OUT || path.join(process.cwd(), 'wisp-traces', stamp),
    mode,
    traceRatio: ratio,
    service: env.WILLOWISP_SERVICE || env.OTEL_SERVICE_NAME || programName(argv),
    boundaries: Object.freeze(boundaries),
    clockOffsetNs: BigInt(offsetRaw),
    runPid: /^\d+$/.test(runPidRaw) ? Number(runPidRaw) : 0,
    flushMs,
    maxBufferBytes: maxBytes,
    traceparent: env.TRACEPARENT || '',
    collector: (env.WILLOWISP_COLLECTOR || '').trim(),
    token: env.WILLOWISP_TOKEN || '',
    streamRetryMs: streamRetryS * 1000,
    parentProcess: env.WILLOWISP_PARENT_PROCESS || '',
  });
}

function disabled(env = process.env) {
  const v = (env.WILLOWISP_DISABLED ?? '').trim().toLowerCase();
  return v !== '' && v !== '0' && v !== 'false' && v !== 'no';
}

module.exports = { ConfigError, fromEnv, disabled, parseBoundary };
