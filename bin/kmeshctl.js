#!/usr/bin/env node
// kmeshctl executable: runs the bundled CLI, dist/src/cli/kmeshctl.bundle.cjs (`npm run build:ts` makes it:
// tsc, then scripts/bundle.mjs), compiled with the V8 code cache kept beside it (kmeshctl.bundle.cjs.v8cache).
// The cache is written after a run that had none or whose cache V8 refused (another Node version); when the
// directory is not writable the CLI just runs without one. See README "kmeshctl" for why it is built this way.
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import vm from 'node:vm';

const bundle = fileURLToPath(new URL('../dist/src/cli/kmeshctl.bundle.cjs', import.meta.url));
const cacheFile = `${bundle}.v8cache`;

let source;
try {
  source = fs.readFileSync(bundle, 'utf8');
} catch (err) {
  if (err?.code !== 'ENOENT') throw err;
  process.stderr.write('error: kmeshctl is not built (dist/ is missing): run "npm run build:ts" first\n');
  process.exit(1);
}
let cachedData;
try {
  cachedData = fs.readFileSync(cacheFile);
} catch {
  cachedData = undefined;
}

// The CommonJS wrapper on the first line, so that line numbers in the bundle stay as they are.
const script = new vm.Script(`(function (exports, require, module, __filename, __dirname) {${source}\n})`, {
  filename: bundle,
  cachedData,
  importModuleDynamically: vm.constants?.USE_MAIN_CONTEXT_DEFAULT_LOADER,
});
const cjsModule = { exports: {} };
script
  .runInThisContext()
  .call(cjsModule.exports, cjsModule.exports, createRequire(bundle), cjsModule, bundle, path.dirname(bundle));

process.exitCode = await cjsModule.exports.main(process.argv.slice(2));

if (cachedData === undefined || script.cachedDataRejected) {
  // After the run, so the cache also holds the functions this run compiled. Atomic: concurrent runs may race.
  const temp = `${cacheFile}.${process.pid}.tmp`;
  try {
    fs.writeFileSync(temp, script.createCachedData());
    fs.renameSync(temp, cacheFile);
  } catch {
    fs.rmSync(temp, { force: true });
  }
}
