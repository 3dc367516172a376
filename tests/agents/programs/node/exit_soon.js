'use strict';
// A short program that ends with process.exit() on the loop's first turn: the agent's
// connection to a collector has begun (Node starts a connect on the next tick) but its
// hello is not answered yet. Two flows block on an async-mutex held by the first, so the
// recording has units, a lock and waits to check.
const { Mutex } = require('async-mutex');

const lock = new Mutex();
lock.acquire().then(() => {
  lock.acquire(); // waits for ever
  console.log('holding');
  setImmediate(() => process.exit(0));
});
