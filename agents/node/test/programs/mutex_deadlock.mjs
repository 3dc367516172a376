// tests/agents/programs/node/mutex_deadlock.js with async-mutex imported as an ES module
// (Node resolves the package's own ESM build, index.mjs, whose classes are not the
// CommonJS build's): the program runs with that build. Kept inside agents/node so the
// import resolves to agents/node/node_modules (NODE_PATH does not apply to ESM).
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as asyncMutex from 'async-mutex';

const here = path.dirname(fileURLToPath(import.meta.url));
globalThis.WISP_ASYNC_MUTEX = asyncMutex;
createRequire(import.meta.url)(path.join(here, '../../../../tests/agents/programs/node/mutex_deadlock.js'));
