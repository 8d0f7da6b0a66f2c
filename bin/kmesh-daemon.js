#!/usr/bin/env -S -u NODE_EXTRA_CA_CERTS KMESH_NODE_EXTRA_CA_CERTS=${NODE_EXTRA_CA_CERTS} node --max-semi-space-size=4
// kmesh-daemon executable: runs the bundled daemon, dist/src/daemon/kmesh-daemon.bundle.cjs (`npm run build`
// makes it), through bin/load-bundle.js with its V8 code cache (written a few seconds after start, once the
// daemon has compiled what it runs). Exits as soon as main returns, so no lingering watch connection can keep a
// stopped daemon alive. The first line moves NODE_EXTRA_CA_CERTS aside as bin/kmeshctl.js does (see there) and
// passes node the heap's launch flags (bin/heap-settings.js: LAUNCH_FLAGS; the line stays under the 127 bytes
// that kernels before 5.1 read of it); the runtime ones are applied here before the daemon loads.
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
