// Where a simulated cluster keeps its objects and secret, behind one interface so the demo and the
// end-to-end suites drive the directory store and the Kubernetes store (fake API server) the same way.
// DirClusterStore is the embedded no-cluster default: JSON files under one directory shared by all daemons.
import fsp from 'node:fs/promises';
import path from 'node:path';
import { packageRoot } from '../native/addon.js';
import { run, type RunResult } from './shell.js';
import type { SimNode } from './netns-cluster.js';
import { writeFileAtomic } from '../util/atomic-write.js';
import { DIR_STORE_NODE_INFOS } from '../model/kmesh-names.js';

export type ObjectKind = 'nodes' | 'namespaces' | 'pods';

export interface ClusterStore {
  readonly description: string;
  /**
   * True when deleting a Node makes the store itself remove that node's KmeshNodeInfo (a cluster whose
   * garbage collector follows the ownerReference the daemon sets); the scenarios then delete only the Node.
   * Absent or false: the scenarios remove both, as an operator would.
   */
  readonly collectsGarbage?: boolean;
  /** Daemon flags selecting this store for `node` (and its key file). */
  daemonFlags(node: SimNode): string[];
  put(kind: ObjectKind, obj: Record<string, unknown>): Promise<void>;
  remove(kind: ObjectKind | 'kmeshnodeinfos', namespace: string | undefined, name: string): Promise<void>;
  /** KmeshNodeInfo objects by name. */
  nodeInfos(): Promise<Map<string, unknown>>;
  /** Runs kmeshctl against this store. */
  kmeshctl(args: readonly string[]): Promise<RunResult>;
  /** Makes the current secret visible to every daemon (in a cluster, the kubelet's job). */
  syncSecret(): Promise<void>;
}

export function kmeshctlPath(): string {
  return path.join(packageRoot(), 'bin', 'kmeshctl.js');
}

interface Meta {
  metadata?: { name?: string; namespace?: string };
}

export class DirClusterStore implements ClusterStore {
  readonly description: string;

  constructor(readonly dir: string) {
    this.description = `dir:${dir}`;
  }

  daemonFlags(): string[] {
    return [`--store=dir:${this.dir}`];
  }

  private file(kind: string, namespace: string | undefined, name: string): string {
    return namespace === undefined
      ? path.join(this.dir, kind, `${name}.json`)
      : path.join(this.dir, kind, namespace, `${name}.json`);
  }

  async put(kind: ObjectKind, obj: Record<string, unknown>): Promise<void> {
    const meta = (obj as Meta).metadata ?? {};
    const file = this.file(kind, kind === 'pods' ? meta.namespace : undefined, meta.name ?? '');
    await writeFileAtomic(file, JSON.stringify(obj, null, 2) + '\n', { dirMode: 0o755 });
  }

  async remove(kind: ObjectKind | 'kmeshnodeinfos', namespace: string | undefined, name: string): Promise<void> {
    await fsp.rm(this.file(kind, kind === 'pods' ? namespace : undefined, name), { force: true });
  }

  async nodeInfos(): Promise<Map<string, unknown>> {
    const out = new Map<string, unknown>();
    let files: string[];
    try {
      files = await fsp.readdir(path.join(this.dir, DIR_STORE_NODE_INFOS));
    } catch {
      return out;
    }
    for (const f of files.filter((x) => x.endsWith('.json'))) {
      try {
        out.set(
          f.replace(/\.json$/, ''),
          JSON.parse(await fsp.readFile(path.join(this.dir, DIR_STORE_NODE_INFOS, f), 'utf8')),
        );
      } catch {
        // being replaced right now
      }
    }
    return out;
  }

  kmeshctl(args: readonly string[]): Promise<RunResult> {
    return run('node', [kmeshctlPath(), `--store=dir:${this.dir}`, ...args]);
  }

  syncSecret(): Promise<void> {
    // The daemons read <dir>/kmesh-ipsec/ipSec directly, where kmeshctl wrote it.
    return Promise.resolve();
  }
}
