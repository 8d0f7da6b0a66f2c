#!/usr/bin/env -S MALLOC_ARENA_MAX=2 MALLOC_MMAP_THRESHOLD_=131072 node --max-semi-space-size=4
// kmesh-daemon executable: runs the bundled daemon, dist/src/daemon/kmesh-daemon.bundle.cjs (`npm run build`
// makes it), through bin/load-bundle.js with its V8 code cache (written a few seconds after start, once the
// daemon has compiled what it runs). Exits as soon as main returns, so no lingering watch connection can keep a
// stopped daemon alive. The first line sets the memory settings read at launch (bin/heap-settings.js: LAUNCH_ENV
// and LAUNCH_FLAGS; the line stays under the 127 bytes that kernels before 5.1 read of it); the runtime ones are
// applied here before the daemon loads. Unlike bin/kmeshctl.js it leaves NODE_EXTRA_CA_CERTS to Node: the ~20 ms
// Node spends on that file once at the start of a long-lived daemon did not pay for the room on that line.
'use strict';
const path = require('node:path');
const { applyRuntimeFlags } = require('./heap-settings.js');
const { BundleMissingError, loadBundle } = require('./load-bundle.js');

applyRuntimeFlags();

const CACHE_AFTER_MS = 5000;

let bundle;
try {
  bundle = loadBundle(path.join(__dirname, '..', 'dist', 'src', 'daemon', 'kmesh-daemon.bundle.cjs'));
} catch (err) {
  if (!(err instanceof BundleMissingError)) throw err;
  process.stderr.write('kmesh-daemon: not built (dist/ is missing): run "npm run build" first\n');
  process.exit(1);
}
setTimeout(bundle.saveCache, CACHE_AFTER_MS).unref();
bundle.exports.main(process.argv.slice(2)).then((code) => {
  bundle.saveCache();
  process.exit(code);
});
