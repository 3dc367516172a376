'use strict';
// A file that cannot grow (RLIMIT_FSIZE: every write past the limit fails with EFBIG, as
// one past a full disk fails with ENOSPC; Node ignores SIGXFSZ): the program prints and
// exits as without the agent, the segment ends at a whole chunk, and the loss is in it
// (agent.drop per unit, one write fault, the stats' dropped) and in one stderr line.
// The same on a real full file system (ENOSPC, the reserve) is tests/agents/test_node_agent.py.

const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const K = require('../lib/kinds.js');
const { readFile } = require('./reader.js');

const AGENT = path.resolve(__dirname, '..');
const PROGRAM = path.join(__dirname, 'programs/requests.js');

// the program under `ulimit -f` (sh counts 512-byte blocks): files stop at `kib` KiB
function limited(kib, env) {
  return spawnSync('/bin/sh', ['-c', `ulimit -f ${kib * 2} && exec "$0" "$@"`, process.execPath, PROGRAM, '800'], {
    env,
    encoding: 'utf8',
    timeout: 60_000,
  });
}

test('a file that cannot grow: whole chunks, the loss counted per unit and said once', () => {
  const bare = limited(64, { ...process.env, NODE_OPTIONS: '' });
  assert.strictEqual(bare.status, 0, bare.stderr);
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'wisp-fsize-'));
  try {
    const run = limited(64, {
      ...process.env,
      NODE_OPTIONS: `--require ${path.join(AGENT, 'register.js')}`,
      WILLOWISP_OUT: out,
      WILLOWISP_SERVICE: 'fsize',
      WILLOWISP_CONTROL: 'off',
    });
    assert.deepStrictEqual([run.status, run.stdout], [bare.status, bare.stdout], run.stderr);
    const said = run.stderr.split('\n').filter((l) => l.includes('could not be written'));
    assert.strictEqual(said.length, 1, run.stderr);
    const m = /^willowisp: (\d+) events of fsize \(pid (\d+)\) could not be written to (.+): File too large$/.exec(said[0]);
    assert.ok(m, said[0]);
    assert.doesNotMatch(run.stderr, /\n\s+at |Error:/);
    assert.deepStrictEqual(fs.readdirSync(out).filter((f) => f.startsWith('.')), [], 'the reserve is removed at exit');
    const file = fs.readFileSync(m[3]);
    assert.ok(file.length <= 64 * 1024, `${file.length} bytes`);
    const { chunks } = readFile(file); // throws on a torn or corrupt chunk
    const records = chunks.flatMap((c) => c.records);
    const events = chunks.flatMap((c) => c.events);
    const faults = records.filter((r) => r.type === 5 && r.attrs.where === 'write');
    assert.ok(faults.length <= 1, 'at most one fault for the spell of refusals');
    // The news chunk needs room under the limit, which a file limit (unlike the reserve on a
    // full disk) does not keep: when the refused chunk left less than the news needs,
    // only the stderr line says the loss (tests/agents/test_node_agent.py has the disk).
    const drops = events.filter((e) => e.kind === K.AGENT_DROP);
    if (faults.length === 1) {
      assert.match(faults[0].attrs.message, /^File too large: /);
      const dropped = drops.reduce((s, e) => s + Number(e.arg), 0);
      const lost = Number(m[1]);
      assert.ok(dropped > 0 && dropped <= lost, `${dropped} dropped in the file, ${lost} said`);
      const stats = records.filter((r) => r.type === 6).at(-1);
      assert.strictEqual(stats.attrs.dropped, dropped);
      // the news chunk, when it fit (else a later chunk that fit said it): a process
      // record, the fault, an anchor, the drops, and (when they fit) the records of the
      // units that lost events
      const news = chunks.find((c) => c.events.some((e) => e.kind === K.AGENT_DROP) && c.events.every((e) => e.kind === K.AGENT_DROP || e.kind === K.CLOCK_ANCHOR));
      const units = new Map(records.filter((r) => r.type === 2).map((r) => [r.id, r.attrs]));
      if (news !== undefined) {
        assert.ok(news.records.some((r) => r.type === 1), 'the news chunk has the process record');
        assert.ok(news.records.some((r) => r.type === 5 && r.attrs.where === 'write'), 'and the fault');
        assert.ok(news.events.some((e) => e.kind === K.CLOCK_ANCHOR));
      }
      if (news !== undefined && news.records.some((r) => r.type === 2)) {
        assert.ok(drops.some((e) => units.get(e.unit)?.kind === 'async-flow'), 'drops of request flows');
        for (const e of drops) assert.ok(e.unit === 1 || units.has(e.unit), `unit ${e.unit} is defined`);
      }
    } else {
      assert.strictEqual(drops.length, 0, 'no drop said without its fault');
    }
    // sequence numbers never repeat
    const seqs = events.map((e) => e.seq);
    assert.strictEqual(new Set(seqs).size, seqs.length);
  } finally {
    fs.rmSync(out, { recursive: true, force: true });
  }
});
