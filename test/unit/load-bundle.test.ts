// bin/load-bundle.js, which runs the executables' bundles with a V8 code cache: the cache is written after a run
// without one and used by the next run; a cache made for other bundle contents (even of the same length, which
// V8's own check lets through) or garbage is not used, and is replaced.
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import t from 'tap';

interface LoadedBundle {
  exports: { answer: () => string };
  cacheUsed: boolean;
  saveCache: () => void;
}
const { loadBundle, BundleMissingError } = createRequire(import.meta.url)('../../bin/load-bundle.js') as {
  loadBundle: (file: string) => LoadedBundle;
  BundleMissingError: new (message: string) => Error;
};

const bundleSource = (word: string) =>
  `'use strict';\nfunction answer() { return ${JSON.stringify(word)} + require('node:path').sep; }\nexports.answer = answer;\n`;

t.test('the cache is written after a run without one and used by the next', (t) => {
  const file = path.join(t.testdir(), 'x.bundle.cjs');
  fs.writeFileSync(file, bundleSource('alpha'));
  const first = loadBundle(file);
  t.equal(first.exports.answer(), 'alpha/');
  t.equal(first.cacheUsed, false);
  t.notOk(fs.existsSync(`${file}.v8cache`), 'nothing written before saveCache');
  first.saveCache();
  t.ok(fs.existsSync(`${file}.v8cache`));
  const second = loadBundle(file);
  t.equal(second.cacheUsed, true);
  t.equal(second.exports.answer(), 'alpha/');
  const before = fs.readFileSync(`${file}.v8cache`);
  second.saveCache();
  t.same(fs.readFileSync(`${file}.v8cache`), before, 'a used cache is left alone');
  t.end();
});

t.test('a cache made for other contents of the same length is not used, and is replaced', (t) => {
  const file = path.join(t.testdir(), 'x.bundle.cjs');
  fs.writeFileSync(file, bundleSource('alpha'));
  loadBundle(file).saveCache();
  fs.writeFileSync(file, bundleSource('omega'));
  const changed = loadBundle(file);
  t.equal(changed.cacheUsed, false);
  t.equal(changed.exports.answer(), 'omega/', 'the new code runs');
  changed.saveCache();
  t.equal(loadBundle(file).cacheUsed, true, 'the replaced cache fits the new contents');
  fs.writeFileSync(`${file}.v8cache`, 'not a cache');
  const garbage = loadBundle(file);
  t.equal(garbage.cacheUsed, false);
  t.equal(garbage.exports.answer(), 'omega/');
  t.end();
});

t.test('an unwritable directory means no cache, not an error; a missing bundle is BundleMissingError', (t) => {
  const dir = t.testdir();
  const file = path.join(dir, 'x.bundle.cjs');
  fs.writeFileSync(file, bundleSource('alpha'));
  const loaded = loadBundle(file);
  fs.mkdirSync(`${file}.v8cache`); // the cache path is taken by a directory: the rename fails
  t.doesNotThrow(() => loaded.saveCache());
  t.same(
    fs.readdirSync(dir).filter((f) => f.endsWith('.tmp')),
    [],
    'no temporary file left behind',
  );
  t.throws(() => loadBundle(path.join(dir, 'missing.bundle.cjs')), BundleMissingError);
  t.end();
});
