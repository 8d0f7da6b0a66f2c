import fs from 'node:fs';
import path from 'node:path';
import t, { type Test } from 'tap';
import { KeyFileWatcher, type KeyFileEvent } from '../../src/daemon/key-file-watcher.js';
import { decodeIpsecPayload, encodeIpsecPayload } from '../../src/secret/payload.js';

function payload(spi: number, fill: number): string {
  return encodeIpsecPayload({ spi, aeadKeyName: 'rfc4106(gcm(aes))', key: Buffer.alloc(36, fill), icvBits: 128 });
}

/** A watcher plus a way to wait for its next event matching a predicate. */
function watch(t: Test, file: string) {
  const events: KeyFileEvent[] = [];
  let waiters: { pred: (e: KeyFileEvent) => boolean; resolve: (e: KeyFileEvent) => void }[] = [];
  const w = new KeyFileWatcher(
    file,
    decodeIpsecPayload,
    (e) => {
      events.push(e);
      const hit = waiters.filter((x) => x.pred(e));
      waiters = waiters.filter((x) => !x.pred(e));
      for (const x of hit) x.resolve(e);
    },
    { pollMs: 50 },
  );
  t.teardown(() => w.stop());
  const next = (pred: (e: KeyFileEvent) => boolean): Promise<KeyFileEvent> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no matching key-file event within 5 s')), 5000);
      waiters.push({
        pred,
        resolve: (e) => {
          clearTimeout(timer);
          resolve(e);
        },
      });
    });
  return { w, events, next };
}

const isKey = (spi: number) => (e: KeyFileEvent) => e.kind === 'key' && e.key.spi === spi;

t.test('late creation, plain rewrite, malformed content, deletion', async (t) => {
  const dir = path.join(t.testdir(), 'kmesh-ipsec');
  const file = path.join(dir, 'ipSec');
  const { w, next } = watch(t, file);
  await w.start();
  t.equal(w.key(), undefined);
  t.match(w.status().problem, /does not exist yet/);

  fs.mkdirSync(dir);
  const first = next(isKey(1));
  fs.writeFileSync(file, payload(1, 0x11));
  const e1 = await first;
  t.equal(e1.kind === 'key' && e1.key.key.equals(Buffer.alloc(36, 0x11)), true, 'the decoded key');
  t.equal(w.status().problem, '');

  const second = next(isKey(2));
  fs.writeFileSync(file, payload(2, 0x22));
  await second;
  t.equal(w.key()?.spi, 2);

  const bad = next((e) => e.kind === 'invalid');
  fs.writeFileSync(file, '{"spi":3,"aeadKeyName":"rfc4106(gcm(aes))","aeadKey":"AAAA","length":128}');
  const invalid = await bad;
  t.same(invalid, { kind: 'invalid', reason: 'aeadKey decodes to 3 bytes, need 36', keptSpi: 2 });
  t.equal(w.key()?.spi, 2, 'the last good key stays in force');
  t.match(w.status().problem, /aeadKey decodes to 3 bytes, need 36; SPI 2 stays in force/);
  t.notMatch(w.status().problem, /AAAA|IiIi/, 'no key material in the problem text');

  const gone = next((e) => e.kind === 'missing');
  fs.rmSync(file);
  t.same(await gone, { kind: 'missing', keptSpi: 2 });
  t.equal(w.key()?.spi, 2);

  const back = next(isKey(3));
  fs.writeFileSync(file, payload(3, 0x33));
  await back;
  t.equal(w.key()?.spi, 3);
});

t.test('the kubelet ..data symlink swap', async (t) => {
  const dir = path.join(t.testdir(), 'kmesh-ipsec');
  fs.mkdirSync(dir);
  const project = (version: string, text: string): void => {
    const data = path.join(dir, version);
    fs.mkdirSync(data);
    fs.writeFileSync(path.join(data, 'ipSec'), text);
    fs.symlinkSync(version, path.join(dir, '..data_tmp'));
    fs.renameSync(path.join(dir, '..data_tmp'), path.join(dir, '..data'));
  };
  project('..2024_01_01_00_00_00.1', payload(1, 0x01));
  fs.symlinkSync('..data/ipSec', path.join(dir, 'ipSec'));
  const { w, next } = watch(t, path.join(dir, 'ipSec'));
  const first = next(isKey(1));
  await w.start();
  await first;

  const swapped = next(isKey(2));
  project('..2024_01_01_00_05_00.2', payload(2, 0x02));
  fs.rmSync(path.join(dir, '..2024_01_01_00_00_00.1'), { recursive: true });
  const e = await swapped;
  t.equal(e.kind, 'key');
  t.equal(w.key()?.spi, 2);

  const sameAgain = w.key();
  await w.check();
  t.equal(w.key(), sameAgain, 're-reading unchanged content emits nothing new');
});

t.test('a malformed file at start: no key, a reason', async (t) => {
  const dir = t.testdir({ ipSec: 'not json' });
  const { w, events } = watch(t, path.join(dir, 'ipSec'));
  await w.start();
  t.equal(w.key(), undefined);
  t.equal(events.length, 1);
  t.match(events[0], { kind: 'invalid', keptSpi: undefined });
  t.match(w.status().problem, /payload is not JSON/);
});
