'use strict';
// The native stream's reconnection schedule (docs/protocols.md): 1, 2, 4, 8, 16 s, then
// every 30 s without end; WILLOWISP_STREAM_RETRY_S caps every delay. (The real reconnection,
// with processes, is tests/agents/test_node_agent.py::test_stream_reconnects_without_end.)

const test = require('node:test');
const assert = require('node:assert');
const { fromEnv, ConfigError } = require('../lib/config.js');
const { StreamSink } = require('../lib/stream.js');

function delays(capMs, n) {
  // the schedule alone: a sink that never connects
  const sink = Object.create(StreamSink.prototype);
  sink.retryCapMs = capMs;
  const out = [];
  for (sink.retries = 0; sink.retries < n; sink.retries += 1) out.push(sink.retryDelay());
  return out;
}

test('reconnections back off to every 30 s and never stop', () => {
  assert.deepStrictEqual(delays(0, 9), [1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000, 30000]);
  assert.strictEqual(delays(0, 1000)[999], 30000);
});

test('WILLOWISP_STREAM_RETRY_S caps every delay', () => {
  assert.deepStrictEqual(delays(200, 8), Array(8).fill(200));
  assert.deepStrictEqual(delays(5000, 7), [1000, 2000, 4000, 5000, 5000, 5000, 5000]);
  assert.strictEqual(fromEnv({ WILLOWISP_STREAM_RETRY_S: '0.2' }).streamRetryMs, 200);
  assert.strictEqual(fromEnv({ WILLOWISP_STREAM_RETRY_S: ' 45 ' }).streamRetryMs, 45000);
  assert.strictEqual(fromEnv({}).streamRetryMs, 0);
  assert.strictEqual(fromEnv({ WILLOWISP_STREAM_RETRY_S: '' }).streamRetryMs, 0);
});

test('a bad WILLOWISP_STREAM_RETRY_S is refused like any bad setting', () => {
  for (const bad of ['0', '-1', 'soon', '2s', 'Infinity', 'NaN']) {
    assert.throws(() => fromEnv({ WILLOWISP_STREAM_RETRY_S: bad }), (err) => {
      assert.ok(err instanceof ConfigError);
      assert.match(err.message, /bad WILLOWISP_STREAM_RETRY_S=/);
      return true;
    }, bad);
  }
});
