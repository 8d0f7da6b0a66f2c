// Runs one of the CommonJS bundles scripts/bundle.mjs makes (dist/src/*/*.bundle.cjs) with a V8 code cache kept
// beside it (FILE.v8cache), so that V8 does not compile the bundle again on every start. saveCache() writes the
// cache when there was none, it was made for other bundle contents, or V8 refused it (another Node version);
// call it once the process has done its work, so the cache also holds the functions that work compiled. A
// directory that is not writable only means no cache. The cache file starts with the SHA-1 of the bundle it was
// made from: V8 itself checks only the source's length, and a stale cache of a same-length bundle would run old
// code. bin/ is CommonJS (bin/package.json): a CommonJS main module starts without Node's ES module loader.
'use strict';
const crypto = require('node:crypto');
const fs = require('node:fs');
const { createRequire } = require('node:module');
const path = require('node:path');
const vm = require('node:vm');

class BundleMissingError extends Error {
  name = 'BundleMissingError';
}

const DIGEST_BYTES = 20;

/** The V8 data of `cacheFile` if it was made from a bundle with this digest. */
function readCache(cacheFile, digest) {
  let bytes;
  try {
    bytes = fs.readFileSync(cacheFile);
  } catch {
    return undefined;
  }
  const ours = bytes.length > DIGEST_BYTES && bytes.subarray(0, DIGEST_BYTES).equals(digest);
  return ours ? bytes.subarray(DIGEST_BYTES) : undefined;
}

/**
 * Loads `file`; returns its exports, whether the code cache was used, and a function that writes the code cache
 * if it was not.
 */
function loadBundle(file) {
  let bytes;
  try {
    bytes = fs.readFileSync(file);
  } catch (err) {
    if (err?.code === 'ENOENT') throw new BundleMissingError(`${file} is missing`);
    throw err;
  }
  const digest = crypto.createHash('sha1').update(bytes).digest();
  const source = bytes.toString('utf8');
  const cacheFile = `${file}.v8cache`;
  const cachedData = readCache(cacheFile, digest);
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

  const cacheUsed = cachedData !== undefined && script.cachedDataRejected !== true;
  let needed = !cacheUsed;
  const saveCache = () => {
    if (!needed) return;
    needed = false;
    const temp = `${cacheFile}.${process.pid}.tmp`;
    try {
      fs.writeFileSync(temp, Buffer.concat([digest, script.createCachedData()]));
      fs.renameSync(temp, cacheFile); // atomic: concurrent first runs may race
    } catch {
      try {
        fs.rmSync(temp, { force: true });
      } catch {
        // nothing to clean up
      }
    }
  };
  return { exports: cjsModule.exports, cacheUsed, saveCache };
}

module.exports = { BundleMissingError, loadBundle };
