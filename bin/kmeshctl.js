#!/usr/bin/env node
// kmeshctl executable: runs the bundled CLI, dist/src/cli/kmeshctl.bundle.cjs (`npm run build:ts` makes it: tsc,
// then scripts/bundle.mjs), through bin/load-bundle.js with its V8 code cache. See README "kmeshctl" for why.
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
