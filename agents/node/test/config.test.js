'use strict';
// The agent's configuration: a boundary SPEC is checked as every agent checks it, so a typo
// is refused everywhere (a `willowisp ctl ... enable` it refused in Python but applied in
// Node left processes of one run in different states).

const test = require('node:test');
const assert = require('node:assert');
const { parseBoundary, ConfigError } = require('../lib/config.js');

test('a boundary naming an unknown runtime is refused, known ones are kept', () => {
  assert.throws(() => parseBoundary('entry=http:POST /checkout;runtimes=pythn', 'ctl'), (err) => {
    assert.ok(err instanceof ConfigError);
    assert.match(err.message, /unknown runtime "pythn" \(one of python, go, java, rust, nodejs\)/);
    return true;
  });
  const b = parseBoundary('entry=http:POST /checkout;runtimes=python, nodejs');
  assert.deepStrictEqual(b.runtimes, ['python', 'nodejs']);
  assert.strictEqual(b.allowsNode, true);
  assert.strictEqual(parseBoundary('entry=http:POST /x;runtimes=go').allowsNode, false);
});
