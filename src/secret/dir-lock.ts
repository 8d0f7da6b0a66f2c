// The dir store's writer lock: an exclusive flock(2) on ROOT/.kmesh-ipsec.lock (through the native addon; Node
// has no flock). The lock belongs to the open file, not to a PID, so it holds across PID namespaces (a container
// sharing the directory) and the kernel releases it when its holder dies: nothing ever has to guess whether a
// holder is alive, and a live lock is never broken.
// The file exists only while someone holds it: the holder unlinks it before closing, and whoever locks a file
// checks that it is still the one at the path (else it locked an unlinked file, and retries). The file holds the
// holder's PID, for the message of a writer that gives up waiting (not for liveness: PIDs differ between
// namespaces).
import fs from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { loadAddon } from '../native/addon.js';
import { StoreError } from './store.js';

/** flockTry(fd): true if the fd now holds an exclusive lock, false if another open file holds one; never blocks. */
type FlockTry = (fd: number) => boolean;

let cachedFlock: FlockTry | undefined;

function addonFlockTry(lockPath: string): FlockTry {
  if (cachedFlock === undefined) {
    let addon: { fileLock?: { flockTry?: unknown } };
    try {
      addon = loadAddon() as typeof addon;
    } catch (err) {
      throw new StoreError(
        `cannot lock ${lockPath}: the native addon does not load (${(err as Error).message.split('\n', 1)[0]}); ` +
          'build it with: npm run build:native',
      );
    }
    const flockTry = addon.fileLock?.flockTry;
    if (typeof flockTry !== 'function') {
      throw new StoreError(
        `cannot lock ${lockPath}: the native addon predates flock; rebuild it: npm run build:native`,
      );
    }
    cachedFlock = flockTry as FlockTry;
  }
  return cachedFlock;
}

/** A held lock. `release()` (or `await using`) unlinks the lock file and closes it; calling it twice is harmless. */
export interface HeldDirLock {
  readonly path: string;
  release(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

export interface DirLockOptions {
  /** Give up after waiting this long for another holder. */
  timeoutMs: number;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

function sameFile(a: { dev: number; ino: number }, b: { dev: number; ino: number } | undefined): boolean {
  return b !== undefined && a.dev === b.dev && a.ino === b.ino;
}

/** Locks `lockPath` (created 0600 if missing), waiting up to `timeoutMs` for the current holder. */
export async function acquireDirLock(lockPath: string, options: DirLockOptions): Promise<HeldDirLock> {
  const flockTry = addonFlockTry(lockPath);
  const deadline = Date.now() + options.timeoutMs;
  for (;;) {
    let handle: FileHandle;
    try {
      handle = await fs.open(lockPath, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_NOFOLLOW, 0o600);
    } catch (err) {
      throw new StoreError(`cannot open lock file ${lockPath}: ${(err as Error).message}`);
    }
    let held = false;
    try {
      if (flockTry(handle.fd)) {
        const [own, atPath] = await Promise.all([handle.stat(), fs.stat(lockPath).catch(() => undefined)]);
        if (sameFile(own, atPath)) {
          held = true;
          await handle.truncate(0);
          await handle.write(`${process.pid}\n`, 0);
          return heldLock(lockPath, handle);
        }
        // We locked a file its holder unlinked on release: try again with the one at the path now.
      }
    } catch (err) {
      if (held) await releaseHandle(lockPath, handle);
      throw err instanceof StoreError ? err : new StoreError(`cannot lock ${lockPath}: ${(err as Error).message}`);
    } finally {
      if (!held) await handle.close();
    }
    if (Date.now() > deadline) throw await timeoutError(lockPath, options.timeoutMs);
    await sleep(5 + Math.random() * 20);
  }
}

function heldLock(lockPath: string, handle: FileHandle): HeldDirLock {
  let released: Promise<void> | undefined;
  const release = () => (released ??= releaseHandle(lockPath, handle));
  return { path: lockPath, release, [Symbol.asyncDispose]: release };
}

/** Unlinks the lock file (still ours: only holders unlink) and closes it, which drops the flock. */
async function releaseHandle(lockPath: string, handle: FileHandle): Promise<void> {
  try {
    const [own, atPath] = await Promise.all([handle.stat(), fs.stat(lockPath).catch(() => undefined)]);
    if (sameFile(own, atPath)) await fs.unlink(lockPath);
  } catch {
    // Could not tidy up: the file stays, unlocked, and the next writer reuses it.
  } finally {
    await handle.close();
  }
}

async function timeoutError(lockPath: string, timeoutMs: number): Promise<StoreError> {
  const pid = Number.parseInt(await fs.readFile(lockPath, 'utf8').catch(() => ''), 10);
  const holder =
    Number.isInteger(pid) && pid > 0 ? `another process (PID ${pid} in its PID namespace)` : 'another process';
  return new StoreError(
    `${lockPath} is still locked by ${holder} after ${timeoutMs / 1000} s; another kmeshctl is writing, or ` +
      `a process holds the lock: find it with "fuser -v ${lockPath}", or raise --timeout`,
  );
}
