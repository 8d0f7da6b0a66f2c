#!/usr/bin/env -S -u NODE_EXTRA_CA_CERTS KMESH_NODE_EXTRA_CA_CERTS=${NODE_EXTRA_CA_CERTS} node
// kmeshctl executable: runs the bundled CLI, dist/src/cli/kmeshctl.bundle.cjs (`npm run build:ts` makes it: tsc,
// then scripts/bundle.mjs), through bin/load-bundle.js with its V8 code cache. See README "kmeshctl" for why.
// The first line starts Node without NODE_EXTRA_CA_CERTS, whose file Node 20 parses at every start (~20 ms of
// CPU for a system bundle) although a kubeconfig that names its CA never uses it; the value travels as
// KMESH_NODE_EXTRA_CA_CERTS and src/kube/node-extra-ca.ts applies it where Node would have (no CA named).
'use strict';
const path = require('node:path');
const { BundleMissingError, loadBundle } = require('./load-bundle.js');

let bundle;
try {
  bundle = loadBundle(path.join(__dirname, '..', 'dist', 'src', 'cli', 'kmeshctl.bundle.cjs'));
} catch (err) {
  if (!(err instanceof BundleMissingError)) throw err;
  process.stderr.write('error: kmeshctl is not built (dist/ is missing): run "npm run build:ts" first\n');
  process.exit(1);
}
bundle.exports.main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
  bundle.saveCache();
});
