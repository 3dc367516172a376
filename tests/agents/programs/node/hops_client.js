'use strict';
// A client calling a service at 127.0.0.1:PORT (argv[2]) three times, one request after
// the other, from one line; prints `done` once every response is in.

const http = require('node:http');

async function main(port) {
  for (let i = 0; i < 3; i += 1) {
    await new Promise((resolve, reject) => {
      http.get({ host: '127.0.0.1', port, path: `/stock/${i}` }, (res) => res.resume().on('end', resolve)).on('error', reject);
    });
  }
  process.stdout.write('done\n');
}

main(Number(process.argv[2]));
