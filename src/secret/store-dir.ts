// SecretStore on a local directory, for running without a cluster. Layout (shared with the daemon's directory source):
//   ROOT/kmesh-ipsec/ipSec          the payload JSON, exactly what the kubelet would project; mode 0600
//   ROOT/kmeshnodeinfos/*.json      full KmeshNodeInfo objects (apiVersion, kind, metadata, spec)
//   ROOT/.kmesh-ipsec.meta.json     {"creationTimestamp": ...} of the current secret (kmeshctl's own bookkeeping)
//   ROOT/.kmesh-ipsec.lock          held (O_EXCL) while a command reads-compares-writes; removed afterwards
// The payload is replaced atomically (write a temp file, fsync, rename). The version of a secret is a hash of its
// content, compared under the lock, so concurrent commands behave like optimistic writes against the API server.
import { createHash, randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { writeFileAtomic } from '../util/atomic-write.js';
import { advertisedSpi } from './rotation.js';
import { DEFAULT_NAMESPACE, SECRET_DATA_KEY, SECRET_NAME, StoreConflictError, StoreError } from './store.js';
import type { SecretStore, StoredSecret } from './store.js';

/** Directory (under the store root) holding KmeshNodeInfo objects as JSON files. */
export const NODE_INFO_DIR = 'kmeshnodeinfos';

export interface DirStoreOptions {
  /** The store root (`--store dir:ROOT`). Must exist. */
  root: string;
  /** Give up waiting for the lock after this long (default 10 s). */
  lockTimeoutMs?: number;
}

function errnoCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null ? (err as NodeJS.ErrnoException).code : undefined;
}

function contentVersion(content: string): string {
  return createHash('sha256').update(content).digest('hex').slice(0, 24);
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return errnoCode(err) !== 'ESRCH';
  }
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export class DirSecretStore implements SecretStore {
  readonly location: string;
  readonly root: string;
  private readonly secretDir: string;
  private readonly payloadPath: string;
  private readonly metaPath: string;
  private readonly lockPath: string;
  private readonly lockTimeoutMs: number;

  constructor(options: DirStoreOptions) {
    this.root = path.resolve(options.root);
    this.secretDir = path.join(this.root, SECRET_NAME);
    this.payloadPath = path.join(this.secretDir, SECRET_DATA_KEY);
    this.metaPath = path.join(this.root, `.${SECRET_NAME}.meta.json`);
    this.lockPath = path.join(this.root, `.${SECRET_NAME}.lock`);
    this.lockTimeoutMs = options.lockTimeoutMs ?? 10_000;
    this.location = this.payloadPath;
  }

  private async checkRoot(): Promise<void> {
    let stat;
    try {
      stat = await fs.stat(this.root);
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') {
        throw new StoreError(`store directory ${this.root} does not exist; create it first (mkdir -p ${this.root})`);
      }
      throw new StoreError(`cannot use store directory ${this.root}: ${(err as Error).message}`);
    }
    if (!stat.isDirectory()) throw new StoreError(`store path ${this.root} is not a directory`);
  }

  private ioError(err: unknown, action: string): never {
    if (err instanceof StoreError || err instanceof StoreConflictError) throw err;
    throw new StoreError(`cannot ${action}: ${(err as Error).message}`);
  }

  /** Runs `fn` holding the store's lock file; a lock left by a dead process is broken. */
  private async locked<T>(fn: () => Promise<T>): Promise<T> {
    const token = `${process.pid} ${randomUUID()}\n`;
    const deadline = Date.now() + this.lockTimeoutMs;
    for (;;) {
      try {
        const handle = await fs.open(this.lockPath, 'wx', 0o600);
        try {
          await handle.writeFile(token);
        } finally {
          await handle.close();
        }
        break;
      } catch (err) {
        if (errnoCode(err) !== 'EEXIST') this.ioError(err, `create lock file ${this.lockPath}`);
      }
      const holder = await this.lockHolder();
      if (holder.stale) {
        await this.breakLock(holder.content);
        continue;
      }
      if (Date.now() > deadline) {
        throw new StoreError(
          `${this.lockPath} is held by ${holder.pid ? `process ${holder.pid}` : 'another process'}; ` +
            'if no kmeshctl is running, delete that file and retry',
        );
      }
      await sleep(5 + Math.random() * 20);
    }
    try {
      return await fn();
    } finally {
      try {
        if ((await fs.readFile(this.lockPath, 'utf8')) === token) await fs.unlink(this.lockPath);
      } catch {
        // Lock already gone: nothing to release.
      }
    }
  }

  /** Who holds the lock, and whether they are gone (dead pid, or an empty lock file older than 5 s). */
  private async lockHolder(): Promise<{ content: string; pid: number | undefined; stale: boolean }> {
    try {
      const content = await fs.readFile(this.lockPath, 'utf8');
      const pid = Number.parseInt(content.split(' ', 1)[0] ?? '', 10);
      if (Number.isInteger(pid) && pid > 0) return { content, pid, stale: !processAlive(pid) };
      const { mtimeMs } = await fs.stat(this.lockPath);
      return { content, pid: undefined, stale: Date.now() - mtimeMs > 5_000 };
    } catch {
      return { content: '', pid: undefined, stale: false }; // released meanwhile: just retry
    }
  }

  /** Removes a stale lock without ever removing a live one that replaced it meanwhile. */
  private async breakLock(staleContent: string): Promise<void> {
    const aside = `${this.lockPath}.stale.${process.pid}.${randomUUID()}`;
    try {
      await fs.rename(this.lockPath, aside);
    } catch {
      return; // someone else broke or released it
    }
    const moved = await fs.readFile(aside, 'utf8').catch(() => '');
    if (moved !== staleContent) {
      // We moved a fresh lock: put it back (fails only if a third process took the lock, which then holds it).
      await fs.link(aside, this.lockPath).catch(() => undefined);
    }
    await fs.unlink(aside).catch(() => undefined);
  }

  private async readMeta(): Promise<Date | undefined> {
    try {
      const meta = JSON.parse(await fs.readFile(this.metaPath, 'utf8')) as { creationTimestamp?: unknown };
      if (typeof meta.creationTimestamp !== 'string') return undefined;
      const date = new Date(meta.creationTimestamp);
      return Number.isNaN(date.getTime()) ? undefined : date;
    } catch {
      return undefined;
    }
  }

  private async readPayload(): Promise<string | undefined> {
    try {
      return await fs.readFile(this.payloadPath, 'utf8');
    } catch (err) {
      const code = errnoCode(err);
      if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
      return this.ioError(err, `read ${this.payloadPath}`);
    }
  }

  private async stored(payload: string): Promise<StoredSecret> {
    let creationTime = await this.readMeta();
    if (creationTime === undefined) {
      // Written by someone else (no bookkeeping of ours): the file's own time is the best we know.
      creationTime = await fs.stat(this.payloadPath).then(
        (s) => s.mtime,
        () => undefined,
      );
    }
    return {
      name: SECRET_NAME,
      namespace: DEFAULT_NAMESPACE,
      payload,
      version: contentVersion(payload),
      creationTime,
    };
  }

  async read(): Promise<StoredSecret | undefined> {
    await this.checkRoot();
    const payload = await this.readPayload();
    return payload === undefined ? undefined : this.stored(payload);
  }

  async create(payload: string): Promise<StoredSecret> {
    await this.checkRoot();
    return this.locked(async () => {
      if ((await this.readPayload()) !== undefined) throw new StoreConflictError(`${this.payloadPath} exists already`);
      try {
        await fs.mkdir(this.secretDir, { recursive: true, mode: 0o700 });
        const meta = JSON.stringify({ creationTimestamp: new Date().toISOString() }) + '\n';
        await writeFileAtomic(this.metaPath, meta, { mode: 0o600 });
        await writeFileAtomic(this.payloadPath, payload, { mode: 0o600 });
      } catch (err) {
        this.ioError(err, `write ${this.payloadPath}`);
      }
      return this.stored(payload);
    });
  }

  async replace(current: StoredSecret, payload: string): Promise<StoredSecret> {
    await this.checkRoot();
    return this.locked(async () => {
      const onDisk = await this.readPayload();
      if (onDisk === undefined) throw new StoreConflictError(`${this.payloadPath} was deleted meanwhile`);
      if (contentVersion(onDisk) !== current.version) throw new StoreConflictError(`${this.payloadPath} changed`);
      try {
        await writeFileAtomic(this.payloadPath, payload, { mode: 0o600 });
      } catch (err) {
        this.ioError(err, `write ${this.payloadPath}`);
      }
      return this.stored(payload);
    });
  }

  async delete(): Promise<boolean> {
    await this.checkRoot();
    return this.locked(async () => {
      try {
        await fs.unlink(this.payloadPath);
      } catch (err) {
        const code = errnoCode(err);
        if (code === 'ENOENT' || code === 'ENOTDIR') return false;
        this.ioError(err, `delete ${this.payloadPath}`);
      }
      await fs.unlink(this.metaPath).catch(() => undefined);
      return true;
    });
  }

  async advertisedSpis(): Promise<number[]> {
    return (await this.nodeInfoObjects()).flatMap(advertisedSpi);
  }

  async nodeInfoObjects(): Promise<unknown[]> {
    await this.checkRoot();
    const dir = path.join(this.root, NODE_INFO_DIR);
    let names: string[];
    try {
      names = await fs.readdir(dir);
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return [];
      return this.ioError(err, `list ${dir}`);
    }
    const objects: unknown[] = [];
    for (const name of names.filter((n) => n.endsWith('.json')).sort()) {
      try {
        objects.push(JSON.parse(await fs.readFile(path.join(dir, name), 'utf8')));
      } catch {
        // Unreadable or not JSON (or removed meanwhile): skipped, it advertises nothing.
      }
    }
    return objects;
  }
}
