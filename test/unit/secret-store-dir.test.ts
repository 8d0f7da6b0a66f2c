// The directory store on its own: atomic 0600 writes, content-hash versions, the flock (contention, waiting for a
// live holder whatever its PID, a lock file nobody holds, a lock file unlinked under a waiter).
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { loadAddon } from '../../src/native/addon.js';
import { DirSecretStore } from '../../src/secret/store-dir.js';
import { StoreConflictError, StoreError } from '../../src/secret/store.js';

const PAYLOAD_1 = '{"spi":1}';
const PAYLOAD_2 = '{"spi":2}';

/** Opens `lockPath`, flocks it (another open file than the store's, so they conflict) and writes `content`. */
function holdLock(lockPath: string, content: string): number {
  const fd = fs.openSync(lockPath, 'w', 0o600);
  const { fileLock } = loadAddon() as { fileLock: { flockTry: (fd: number) => boolean } };
  if (!fileLock.flockTry(fd)) throw new Error(`${lockPath} already locked`);
  fs.writeSync(fd, content);
  return fd;
}

t.test('create writes ROOT/kmesh-ipsec/ipSec with mode 0600 and no temp files left', async (t) => {
  const root = t.testdir();
  const store = new DirSecretStore({ root });
  t.equal(await store.read(), undefined);
  const created = await store.create(PAYLOAD_1);
  const file = path.join(root, 'kmesh-ipsec', 'ipSec');
  t.equal(store.location, file);
  t.equal(fs.readFileSync(file, 'utf8'), PAYLOAD_1);
  t.equal(fs.statSync(file).mode & 0o777, 0o600);
  t.same(fs.readdirSync(path.join(root, 'kmesh-ipsec')), ['ipSec']);
  t.notOk(fs.existsSync(path.join(root, '.kmesh-ipsec.lock')), 'lock released');
  t.equal(created.payload, PAYLOAD_1);
  t.ok(created.creationTime instanceof Date);
  t.same(await store.read(), created);
  await t.rejects(store.create(PAYLOAD_2), StoreConflictError);
});

t.test('replace needs the version that was read; creation time survives rotations', async (t) => {
  const root = t.testdir();
  const store = new DirSecretStore({ root });
  const first = await store.create(PAYLOAD_1);
  const second = await store.replace(first, PAYLOAD_2);
  t.not(second.version, first.version);
  t.same(second.creationTime, first.creationTime);
  await t.rejects(store.replace(first, '{"spi":3}'), StoreConflictError, 'stale version refused');
  t.equal(fs.readFileSync(store.location, 'utf8'), PAYLOAD_2);
  t.equal(await store.delete(), true);
  await t.rejects(store.replace(second, '{"spi":3}'), StoreConflictError, 'deleted meanwhile');
  t.equal(await store.delete(), false);
  t.ok(fs.existsSync(path.join(root, 'kmesh-ipsec')), 'the directory stays for the daemon to watch');
});

t.test('a payload written by hand (no bookkeeping) is read with its file time', async (t) => {
  const root = t.testdir({ 'kmesh-ipsec': { ipSec: PAYLOAD_1 } });
  const stored = await new DirSecretStore({ root }).read();
  t.equal(stored?.payload, PAYLOAD_1);
  t.same(stored?.creationTime, fs.statSync(path.join(root, 'kmesh-ipsec', 'ipSec')).mtime);
});

t.test('advertised SPIs come from kmeshnodeinfos/*.json; broken files advertise nothing', async (t) => {
  const info = (spi: unknown) =>
    JSON.stringify({ apiVersion: 'kmesh.net/v1alpha1', kind: 'KmeshNodeInfo', metadata: { name: 'n' }, spec: { spi } });
  const root = t.testdir({
    kmeshnodeinfos: {
      'a.json': info(3),
      'b.json': info(7),
      'c.json': '{oops',
      'd.json': info(-1),
      'notes.txt': info(99),
    },
  });
  const store = new DirSecretStore({ root });
  t.same((await store.advertisedSpis()).sort(), [3, 7]);
  t.same(await new DirSecretStore({ root: t.testdir() }).advertisedSpis(), []);
});

t.test('a missing store directory is an error that says to create it', async (t) => {
  const root = path.join(t.testdir(), 'absent');
  const store = new DirSecretStore({ root });
  await t.rejects(
    store.read(),
    new StoreError(`store directory ${root} does not exist; create it first (mkdir -p ${root})`),
  );
  await t.rejects(store.create(PAYLOAD_1), StoreError);
  const file = path.join(t.testdir({ f: 'x' }), 'f');
  await t.rejects(new DirSecretStore({ root: file }).read(), { message: `store path ${file} is not a directory` });
});

t.test('a lock held through another open file makes writers wait, then give up with a clear message', async (t) => {
  const root = t.testdir();
  const lockPath = path.join(root, '.kmesh-ipsec.lock');
  const holder = holdLock(lockPath, '4242\n');
  const store = new DirSecretStore({ root, lockTimeoutMs: 200 });
  await t.rejects(store.create(PAYLOAD_1), {
    message:
      `${lockPath} is still locked by another process (PID 4242 in its PID namespace) after 0.2 s; another ` +
      `kmeshctl is writing, or a process holds the lock: find it with "fuser -v ${lockPath}", or raise --timeout`,
  });
  t.equal(await store.read(), undefined, 'nothing written');
  // Released while we wait: the writer proceeds.
  const waiting = new DirSecretStore({ root, lockTimeoutMs: 5000 }).create(PAYLOAD_1);
  setTimeout(() => fs.closeSync(holder), 100);
  t.equal((await waiting).payload, PAYLOAD_1);
  t.same(fs.readdirSync(root).sort(), ['.kmesh-ipsec.meta.json', 'kmesh-ipsec'], 'lock file removed on release');
});

t.test('a lock file nobody holds (left by a crash or an older kmeshctl) is simply taken', async (t) => {
  const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']).stdout.toString();
  const root = t.testdir({ '.kmesh-ipsec.lock': `${dead} crashed\n` });
  const store = new DirSecretStore({ root, lockTimeoutMs: 1000 });
  t.equal((await store.create(PAYLOAD_1)).payload, PAYLOAD_1);
  t.same(fs.readdirSync(root).sort(), ['.kmesh-ipsec.meta.json', 'kmesh-ipsec']);
});

t.test('a live holder whose PID means nothing here (another PID namespace) is waited for, not broken', async (t) => {
  const root = t.testdir();
  const lockPath = path.join(root, '.kmesh-ipsec.lock');
  const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']).stdout.toString();
  const holder = holdLock(lockPath, `${dead}\n`);
  const store = new DirSecretStore({ root, lockTimeoutMs: 400 });
  await t.rejects(store.create(PAYLOAD_1), StoreError);
  t.equal(await store.read(), undefined, 'the holder was not overrun');
  fs.closeSync(holder);
  t.equal((await store.create(PAYLOAD_1)).payload, PAYLOAD_1);
});

t.test('a writer that locked a file its holder unlinked meanwhile retries on the new one', async (t) => {
  const root = t.testdir();
  const lockPath = path.join(root, '.kmesh-ipsec.lock');
  const holder = holdLock(lockPath, '1\n');
  const first = await new DirSecretStore({ root }).read();
  t.equal(first, undefined);
  const a = new DirSecretStore({ root, lockTimeoutMs: 5000 }).create(PAYLOAD_1);
  const b = new DirSecretStore({ root, lockTimeoutMs: 5000 }).create(PAYLOAD_1);
  await new Promise((resolve) => setTimeout(resolve, 50));
  fs.unlinkSync(lockPath); // as a releasing holder does, before closing
  fs.closeSync(holder);
  const results = await Promise.allSettled([a, b]);
  t.same(results.map((r) => r.status).sort(), ['fulfilled', 'rejected'], 'one creates, the other sees it exists');
  const rejected = results.find((r) => r.status === 'rejected');
  t.ok(rejected?.status === 'rejected' && rejected.reason instanceof StoreConflictError);
  t.notOk(fs.existsSync(lockPath));
});

t.test('concurrent replaces of one version: exactly one wins', async (t) => {
  const root = t.testdir();
  const store = new DirSecretStore({ root });
  const first = await store.create(PAYLOAD_1);
  const results = await Promise.allSettled([1, 2, 3, 4].map((n) => store.replace(first, `{"spi":${n + 1}}`)));
  t.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
  t.ok(results.filter((r) => r.status === 'rejected').every((r) => r.reason instanceof StoreConflictError));
});
