// The dir store's lock across PID namespaces (a container sharing the directory sees other PIDs): bin/kmeshctl.js as
// real processes, some under `unshare --pid --fork` (util-linux; needs root), a lock holder that is util-linux's
// flock(1) (the same flock(2) lock, taken by an independent program). A live holder in another PID namespace is
// waited for, never broken; the kernel releases a dead holder's lock; two creates racing from two PID namespaces
// rotate one after the other and lose no key.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { loadAddon } from '../../src/native/addon.js';
import { decodeIpsecPayload } from '../../src/secret/payload.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const bin = path.join(root, 'bin', 'kmeshctl.js');
const built = fs.existsSync(path.join(root, 'dist', 'src', 'cli', 'kmeshctl.bundle.cjs'));
const pidNamespaces =
  process.getuid?.() === 0 &&
  spawnSync('unshare', ['--pid', '--fork', '--kill-child', 'sh', '-c', 'echo $$'], { encoding: 'utf8' }).stdout ===
    '1\n';
const skip = !built
  ? 'dist/ not built: npm run build:ts'
  : !pidNamespaces
    ? 'needs root and unshare --pid (util-linux)'
    : false;

interface Run {
  child: ChildProcess;
  done: Promise<{ code: number | null; stdout: string; stderr: string }>;
}

/** Starts `argv`, optionally in a new PID namespace (where it is PID 1; killed with its unshare parent). */
function start(argv: string[], inNewPidNamespace: boolean): Run {
  const [cmd, ...args] = inNewPidNamespace ? ['unshare', '--pid', '--fork', '--kill-child', ...argv] : argv;
  const child = spawn(cmd ?? '', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
  return { child, done };
}

const kmeshctl = (store: string, args: string[], inNewPidNamespace: boolean) =>
  start([process.execPath, bin, '--store', `dir:${store}`, '--timeout', '60', ...args], inNewPidNamespace);

/** Whether someone holds the flock on `file` (tested with our own open file, released at once). */
function locked(file: string): boolean {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch {
    return false;
  }
  try {
    return !(loadAddon() as { fileLock: { flockTry: (fd: number) => boolean } }).fileLock.flockTry(fd);
  } finally {
    fs.closeSync(fd);
  }
}

async function until(what: string, condition: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** flock(1) holding the store's lock from a new PID namespace (-o: the sleep does not inherit the lock). */
async function holdLock(store: string): Promise<Run> {
  const lockFile = path.join(store, '.kmesh-ipsec.lock');
  const holder = start(['flock', '-o', lockFile, 'sleep', '600'], true);
  await until('flock(1) holds the lock', () => locked(lockFile));
  return holder;
}

const exited = (run: Run, ms: number) =>
  Promise.race([run.done.then(() => true), new Promise<boolean>((resolve) => setTimeout(() => resolve(false), ms))]);

t.test(
  'a live lock held in another PID namespace is not broken; the kernel releases it when the holder dies',
  { skip },
  async (t) => {
    const store = t.testdir();
    const holder = await holdLock(store);
    t.teardown(() => holder.child.kill('SIGKILL'));
    const create = kmeshctl(store, ['secret', 'create'], false);
    // Longer than any "is the holder still there?" guess would wait (the PID-based lock broke a PID-less one at 5 s).
    t.equal(await exited(create, 6_000), false, 'create still waits for the live holder after 6 s');
    t.notOk(fs.existsSync(path.join(store, 'kmesh-ipsec', 'ipSec')), 'nothing written while the holder lives');
    holder.child.kill('SIGKILL'); // unshare dies, --kill-child takes flock (PID 1 there) with it: no unlock, no cleanup
    const started = Date.now();
    t.same(await create.done, { code: 0, stdout: 'IPsec secret created (SPI 1)\n', stderr: '' });
    t.ok(Date.now() - started < 3_000, 'proceeds as soon as the holder is gone');
    t.notOk(fs.existsSync(path.join(store, '.kmesh-ipsec.lock')), 'the lock file is removed by its last holder');
  },
);

t.test('two creates at once from two PID namespaces rotate one after the other, no key lost', { skip }, async (t) => {
  const store = t.testdir();
  const payloadFile = path.join(store, 'kmesh-ipsec', 'ipSec');
  t.equal((await kmeshctl(store, ['secret', 'create'], false).done).code, 0);
  for (let round = 1; round <= 3; round += 1) {
    const before = decodeIpsecPayload(fs.readFileSync(payloadFile)).spi;
    // Both start while the lock is held, so both are waiting when it is released: a true race.
    const holder = await holdLock(store);
    const keys = [`${round}1`, `${round}2`].map((byte) => byte.repeat(36)); // new keys every round
    const runs = [
      kmeshctl(store, ['secret', 'create', '--key', keys[0] ?? ''], true),
      kmeshctl(store, ['secret', 'create', '--key', keys[1] ?? ''], false),
    ];
    await new Promise((resolve) => setTimeout(resolve, 500));
    holder.child.kill('SIGKILL');
    const results = await Promise.all(runs.map((r) => r.done));
    t.same(
      results.map((r) => [r.code, r.stderr]),
      [
        [0, ''],
        [0, ''],
      ],
      `round ${round}: both succeed`,
    );
    t.same(
      results.map((r) => r.stdout).sort(),
      [
        `IPsec key rotated (SPI ${before} -> ${before + 1})\n`,
        `IPsec key rotated (SPI ${before + 1} -> ${before + 2})\n`,
      ],
      `round ${round}: distinct SPIs, each rotating from the other's`,
    );
    // The later writer's key is in force: the one whose output names the higher SPI.
    const last = results.findIndex((r) => r.stdout.includes(`-> ${before + 2})`));
    const final = decodeIpsecPayload(fs.readFileSync(payloadFile));
    t.equal(final.spi, before + 2);
    t.equal(final.key.toString('hex'), keys[last], `round ${round}: the last rotation's key is stored`);
  }
});
