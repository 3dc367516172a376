'use strict';
// Two flows hand a value over through a plain promise: `waiter` awaits a promise that
// `settler` resolves from a timer callback of its own. Prints the flows' names in order.
const { flow } = require('../../index.js');

let resolveIt;
const handedOver = new Promise((r) => (resolveIt = r));

flow('waiter', async () => {
  const v = await handedOver;
  process.stdout.write(JSON.stringify({ waiterGot: v }));
});

flow('settler', async () => {
  await new Promise((r) => setTimeout(r, 5));
  resolveIt(42);
});

// the same flow resolving its own promise: no edge
flow('alone', async () => {
  await new Promise((r) => setTimeout(r, 1));
  await Promise.resolve(1);
});
