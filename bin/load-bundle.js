// Runs one of the CommonJS bundles scripts/bundle.mjs makes (dist/src/*/*.bundle.cjs) with a V8 code cache kept
// beside it (FILE.v8cache), so that V8 does not compile the bundle again on every start. saveCache() writes the
// cache when there was none or V8 refused it (another Node version); call it once the process has done its work,
// so the cache also holds the functions that work compiled. A directory that is not writable only means no cache.
// bin/ is CommonJS (bin/package.json): a CommonJS main module starts without Node's ES module loader.
'use strict';
const fs = require('node:fs');
const { createRequire } = require('node:module');
const path = require('node:path');
const vm = require('node:vm');

class BundleMissingError extends Error {
  name = 'BundleMissingError';
}

/** Loads `file` and returns its exports and a function that writes its code cache if needed. */
function loadBundle(file) {
  let source;
  try {
    source = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if (err?.code === 'ENOENT') throw new BundleMissingError(`${file} is missing`);
    throw err;
  }
  const cacheFile = `${file}.v8cache`;
  let cachedData;
  try {
    cachedData = fs.readFileSync(cacheFile);
  } catch {
    cachedData = undefined;
  }
  // The CommonJS wrapper on the first line, so that line numbers in the bundle stay as they are.
  const script = new vm.Script(`(function (exports, require, module, __filename, __dirname) {${source}\n})`, {
    filename: file,
    cachedData,
    importModuleDynamically: vm.constants?.USE_MAIN_CONTEXT_DEFAULT_LOADER,
  });
  const cjsModule = { exports: {} };
  script
    .runInThisContext()
    .call(cjsModule.exports, cjsModule.exports, createRequire(file), cjsModule, file, path.dirname(file));

  let needed = cachedData === undefined || script.cachedDataRejected === true;
  const saveCache = () => {
    if (!needed) return;
    needed = false;
    const temp = `${cacheFile}.${process.pid}.tmp`;
    try {
      fs.writeFileSync(temp, script.createCachedData());
      fs.renameSync(temp, cacheFile); // atomic: concurrent first runs may race
    } catch {
      try {
        fs.rmSync(temp, { force: true });
      } catch {
        // nothing to clean up
      }
    }
  };
  return { exports: cjsModule.exports, saveCache };
}

module.exports = { BundleMissingError, loadBundle };
