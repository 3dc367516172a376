'use strict';
// JSON with exact integers, for reading the conformance vectors: JSON.parse would turn
// 64-bit integers into doubles and lose their low bits. Integers become BigInt; everything
// else is as JSON.parse makes it. A small recursive-descent reader, test-only.

function parseExact(text) {
  let i = 0;
  const ws = () => {
    while (i < text.length && ' \t\r\n'.includes(text[i])) i += 1;
  };
  const fail = (what) => {
    throw new SyntaxError(`expected ${what} at offset ${i}`);
  };
  const str = () => {
    const start = i;
    i += 1;
    while (i < text.length && text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
    if (i >= text.length) fail('closing quote');
    i += 1;
    return JSON.parse(text.slice(start, i));
  };
  const val = () => {
    ws();
    const c = text[i];
    if (c === '{') {
      i += 1;
      const obj = {};
      ws();
      if (text[i] === '}') {
        i += 1;
        return obj;
      }
      for (;;) {
        ws();
        if (text[i] !== '"') fail('a key');
        const k = str();
        ws();
        if (text[i] !== ':') fail("':'");
        i += 1;
        obj[k] = val();
        ws();
        if (text[i] === ',') i += 1;
        else if (text[i] === '}') return (i += 1), obj;
        else fail("',' or '}'");
      }
    }
    if (c === '[') {
      i += 1;
      const arr = [];
      ws();
      if (text[i] === ']') {
        i += 1;
        return arr;
      }
      for (;;) {
        arr.push(val());
        ws();
        if (text[i] === ',') i += 1;
        else if (text[i] === ']') return (i += 1), arr;
        else fail("',' or ']'");
      }
    }
    if (c === '"') return str();
    for (const [w, v] of [['null', null], ['true', true], ['false', false]]) {
      if (text.startsWith(w, i)) {
        i += w.length;
        return v;
      }
    }
    const m = /^-?\d+/.exec(text.slice(i, i + 32));
    if (!m) fail('a value');
    i += m[0].length;
    if ('.eE'.includes(text[i] ?? ' ')) fail('an integer');
    return BigInt(m[0]);
  };
  const v = val();
  ws();
  if (i !== text.length) fail('end of input');
  return v;
}

module.exports = { parseExact };
