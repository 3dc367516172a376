'use strict';
// The workloads of bench_node_agent.py, one role per process:
//
//   node node_agent_workload.js downstream            a service answering GET /stock
//   node node_agent_workload.js front DOWNSTREAM_PORT a service doing ~50 us of work per
//                                                     request, then calling downstream
//   node node_agent_workload.js load PORT N CONC      N requests, CONC at a time; prints
//                                                     the wall time in ms, the CPU time
//                                                     the served process spent meanwhile
//                                                     and its main thread's share of it
//   node node_agent_workload.js promises N            a promise-heavy handler (N awaits),
//                                                     called once through HTTP; prints its
//                                                     wall ms and CPU ms
//
// Servers print `PORT <n>` when listening and exit on SIGTERM. `GET /cpu` on the front
// service answers its own CPU time so far and its main thread's (ms): on a shared machine the CPU time a process
// spends is a steadier measure of what the agent costs than wall time, which the load of
// other processes moves by tens of per cent.

const http = require('node:http');

const [role, ...args] = process.argv.slice(2);
const keepAlive = new http.Agent({ keepAlive: true, maxSockets: 64 });

function spin(us) {
  const end = process.hrtime.bigint() + BigInt(us * 1000);
  let x = 0;
  while (process.hrtime.bigint() < end) x += 1;
  return x;
}

function listen(server) {
  server.keepAliveTimeout = 60_000;
  server.listen(0, '127.0.0.1', () => process.stdout.write(`PORT ${server.address().port}\n`));
  process.on('SIGTERM', () => process.exit(0));
}

function get(port, path) {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path, agent: keepAlive }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve(body));
      })
      .on('error', reject);
  });
}

function cpuMs() {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

// The CPU time of the main thread alone (the event loop: what requests wait for), in ms,
// from the scheduler's per-thread figure (ns); process.cpuUsage() also counts libuv's
// thread pool (where the agent compresses), V8's compiler and GC helper threads. -1 where
// /proc has no such file.
const fs = require('node:fs');
function loopCpuMs() {
  try {
    return Number(fs.readFileSync(`/proc/self/task/${process.pid}/schedstat`, 'latin1').split(' ')[0]) / 1e6;
  } catch {
    return -1;
  }
}

async function work(n) {
  let acc = 0;
  for (let i = 0; i < n; i += 1) acc += await Promise.resolve(i).then((v) => v & 7);
  return acc;
}

if (role === 'downstream') {
  listen(http.createServer((req, res) => res.end('42')));
} else if (role === 'front') {
  const down = Number(args[0]);
  listen(
    http.createServer(async (req, res) => {
      if (req.url === '/cpu') {
        res.end(`${cpuMs()} ${loopCpuMs()}`);
        return;
      }
      spin(50);
      const stock = await get(down, '/stock');
      res.end(`stock=${stock}`);
    }),
  );
} else if (role === 'load') {
  const [port, n, conc] = args.map(Number);
  let next = 0;
  const worker = async () => {
    while (next < n) {
      next += 1;
      await get(port, '/order');
    }
  };
  (async () => {
    const [cpu0, loop0] = (await get(port, '/cpu')).split(' ').map(Number);
    const t0 = process.hrtime.bigint();
    await Promise.all(Array.from({ length: conc }, worker));
    const wall = Number(process.hrtime.bigint() - t0) / 1e6;
    const [cpu1, loop1] = (await get(port, '/cpu')).split(' ').map(Number);
    console.log(`${wall} ${cpu1 - cpu0} ${loop1 - loop0}`);
    process.exit(0);
  })();
} else if (role === 'promises') {
  const n = Number(args[0]);
  const server = http.createServer(async (req, res) => {
    const c0 = cpuMs();
    const t0 = process.hrtime.bigint();
    await work(n);
    res.end(`${Number(process.hrtime.bigint() - t0) / 1e6} ${cpuMs() - c0}`);
  });
  server.listen(0, '127.0.0.1', async () => {
    await get(server.address().port, '/warmup');
    console.log(await get(server.address().port, '/work'));
    process.exit(0);
  });
}
