// Node 20's off-thread load hook (module.register): see esm.js. Runs on the loader's own
// thread, so it only rewrites source; the patching happens on the main thread.
import { createRequire } from 'node:module';

const { transform } = createRequire(import.meta.url)('./esm.js');

export async function load(url, context, nextLoad) {
  return transform(url, await nextLoad(url, context));
}
