'use strict';
// ESM imports of the packages the agent patches (async-mutex).
//
// A `require` of such a package goes through Module.prototype.require (mutex.js wraps it).
// An `import` does not: Node's ESM loader resolves the package's "import" export (for
// async-mutex a separate build, index.mjs, with classes of its own) and never calls it. So
// a load hook appends two statements to such a module's source: an import of the module's
// own namespace (a module may import itself; the binding is live and complete once its
// body has run) and, at the end of its body, a call that hands the namespace to the
// agent, which patches it as it patches the required package:
//
//   import * as __willowisp_self from '<the module's own URL>';
//   globalThis[Symbol.for('willowisp.esm')]?.('async-mutex', __willowisp_self);
//
// Only modules inside the package's folder are touched; everything else passes through
// unchanged. The function is a non-enumerable global of the main thread (a worker thread
// the hooks also apply to has none: the call does nothing there).
//
// Hooks cost every ESM load a call, so they are registered only when a package the agent
// patches can be found from the working directory or the main script's folder. Node 22.15+
// and 24 have `module.registerHooks` (synchronous, on the loading thread: no measurable
// start-up cost), used when present. Node 20's `module.register` runs them on a thread of
// their own, ~40 ms more at every start, so there they are registered only when the main
// script is an ES module (.mjs, or .js under a package.json with "type": "module"): a
// CommonJS program that reaches async-mutex through a dynamic import() on Node 20 is not
// seen.

const fs = require('node:fs');
const Module = require('node:module');
const path = require('node:path');
const { pathToFileURL } = require('node:url');

const GLOBAL = Symbol.for('willowisp.esm');

// package name -> what patches its namespace
const PACKAGES = new Map([['async-mutex', (ns) => require('./mutex.js').patch(ns)]]);

// The source a module of `pkg` gets appended (its own URL, JSON-quoted: a URL holds no
// character JSON would escape differently from a JavaScript string).
function epilogue(pkg, url) {
  return (
    `\nimport * as __willowisp_self from ${JSON.stringify(url)};\n` +
    `globalThis[Symbol.for('willowisp.esm')]?.(${JSON.stringify(pkg)}, __willowisp_self);\n`
  );
}

// The patched package a module URL belongs to, or null.
function packageOf(url) {
  if (typeof url !== 'string' || !url.startsWith('file:')) return null;
  for (const pkg of PACKAGES.keys()) if (url.includes(`/node_modules/${pkg}/`)) return pkg;
  return null;
}

// A load hook's result, with the epilogue when it is an ES module of a patched package.
function transform(url, result) {
  const pkg = packageOf(url);
  if (pkg === null || result === null || typeof result !== 'object' || result.format !== 'module') return result;
  const src = result.source;
  if (src === undefined || src === null) return result;
  const text = typeof src === 'string' ? src : Buffer.from(src.buffer || src, src.byteOffset || 0, src.byteLength).toString('utf8');
  return { ...result, source: text + epilogue(pkg, url), shortCircuit: true };
}

// Can `pkg` be resolved from where the program runs?
function findable(pkg) {
  const from = [process.cwd()];
  if (process.argv[1]) from.push(path.dirname(path.resolve(process.argv[1])));
  try {
    require.resolve(pkg, { paths: from });
    return true;
  } catch {
    return false;
  }
}

// Is the main script an ES module? (by its extension, else its package's "type")
function entryIsModule(main) {
  if (!main) return false;
  const file = path.resolve(main);
  if (file.endsWith('.mjs')) return true;
  if (file.endsWith('.cjs')) return false;
  for (let dir = path.dirname(file); ; dir = path.dirname(dir)) {
    let text = null;
    try {
      text = fs.readFileSync(path.join(dir, 'package.json'), 'utf8');
    } catch {
      // none here: look further up
    }
    if (text !== null) {
      try {
        return JSON.parse(text).type === 'module';
      } catch {
        return false; // Node itself would refuse it
      }
    }
    if (path.dirname(dir) === dir) return false;
  }
}

function install(rec) {
  const wanted = [...PACKAGES.keys()].filter(findable);
  if (wanted.length === 0) return false;
  if (typeof Module.registerHooks === 'function') {
    Module.registerHooks({ load: (url, context, nextLoad) => transform(url, nextLoad(url, context)) });
  } else if (typeof Module.register === 'function' && entryIsModule(process.argv[1])) {
    Module.register(pathToFileURL(path.join(__dirname, 'esm_hooks.mjs')));
  } else {
    return false; // Node 20 with a CommonJS main script, or before 20.6: ESM imports unseen
  }
  Object.defineProperty(globalThis, GLOBAL, {
    value: (pkg, ns) => {
      try {
        const patch = PACKAGES.get(pkg);
        if (patch !== undefined) patch(ns);
      } catch (err) {
        rec.fault(`${pkg}.install esm`, err);
      }
    },
    enumerable: false,
    configurable: true,
    writable: false,
  });
  return true;
}

module.exports = { install, transform, packageOf, epilogue, entryIsModule };
