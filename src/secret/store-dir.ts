// SecretStore on a local directory, for running without a cluster. Layout (shared with the daemon's directory source):
//   ROOT/kmesh-ipsec/ipSec          the payload JSON, exactly what the kubelet would project; mode 0600
//   ROOT/kmeshnodeinfos/*.json      full KmeshNodeInfo objects (apiVersion, kind, metadata, spec)
//   ROOT/.kmesh-ipsec.meta.json     {"creationTimestamp": ...} of the current secret (kmeshctl's own bookkeeping)
//   ROOT/.kmesh-ipsec.lock          flock'ed while a command reads-compares-writes (dir-lock.ts); removed afterwards
// The payload is replaced atomically (write a temp file, fsync, rename). The version of a secret is a hash of its
// content, compared under the lock, so concurrent commands behave like optimistic writes against the API server.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import {
  DIR_STORE_NODE_INFOS,
  IPSEC_SECRET_DATA_KEY,
  IPSEC_SECRET_NAME,
  KMESH_NAMESPACE,
} from '../model/kmesh-names.js';
import { writeFileAtomic } from '../util/atomic-write.js';
import { acquireDirLock } from './dir-lock.js';
import { advertisedSpi } from './rotation.js';
import { StoreConflictError, StoreError } from './store.js';
import type { SecretStore, StoredSecret } from './store.js';

export interface DirStoreOptions {
  /** The store root (`--store dir:ROOT`). Must exist. */
  root: string;
  /** Give up waiting for another writer's lock after this long (default 15 s, kmeshctl passes --timeout). */
  lockTimeoutMs?: number;
}

function errnoCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null ? (err as NodeJS.ErrnoException).code : undefined;
}

function contentVersion(content: string): string {
  return createHash('sha256').update(content).digest('hex').slice(0, 24);
}

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
    this.secretDir = path.join(this.root, IPSEC_SECRET_NAME);
    this.payloadPath = path.join(this.secretDir, IPSEC_SECRET_DATA_KEY);
    this.metaPath = path.join(this.root, `.${IPSEC_SECRET_NAME}.meta.json`);
    this.lockPath = path.join(this.root, `.${IPSEC_SECRET_NAME}.lock`);
    this.lockTimeoutMs = options.lockTimeoutMs ?? 15_000;
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

  /** Runs `fn` holding the store's lock (dir-lock.ts: flock, released by the kernel if we die). */
  private async locked<T>(fn: () => Promise<T>): Promise<T> {
    const lock = await acquireDirLock(this.lockPath, { timeoutMs: this.lockTimeoutMs });
    try {
      return await fn();
    } finally {
      await lock.release();
    }
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
      name: IPSEC_SECRET_NAME,
      namespace: KMESH_NAMESPACE,
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
    const dir = path.join(this.root, DIR_STORE_NODE_INFOS);
    let names: string[];
    try {
      names = await fs.readdir(dir);
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return [];
      return this.ioError(err, `list ${dir}`);
    }
    const objects: unknown[] = [];
    // Read synchronously, as the daemon's directory scan does (src/daemon/sources/dir-scan.ts): each
    // fs.promises.readFile is four thread-pool round trips, and one after the other they made `kmeshctl ipsec
    // status` take 2.4 s at 5,000 nodes, nearly all of it waiting. kmeshctl has nothing else to do meanwhile.
    for (const name of names.filter((n) => n.endsWith('.json')).sort()) {
      try {
        objects.push(JSON.parse(readFileSync(path.join(dir, name), 'utf8')));
      } catch {
        // Unreadable or not JSON (or removed meanwhile): skipped, it advertises nothing.
      }
    }
    return objects;
  }
}
