'use strict';
// What the control-channel tests send: the fixed token their agents run with
// (WILLOWISP_CONTROL_TOKEN) and a frame (docs/protocols.md: magic, body length, JSON body).

const TOKEN = '0123456789abcdef0123456789abcdef';

function frame(obj, magic = 'WCTL') {
  const body = Buffer.from(typeof obj === 'string' ? obj : JSON.stringify(obj));
  const head = Buffer.alloc(8);
  head.write(magic, 0, 'latin1');
  head.writeUInt32LE(body.length, 4);
  return Buffer.concat([head, body]);
}

module.exports = { TOKEN, frame };
