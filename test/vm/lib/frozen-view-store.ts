// A directory store in which one node's view of the cluster can be frozen, as if its watch stalled: that node's
// daemon runs on its own directory whose nodes/, pods/ and namespaces/ are symlinks to the shared store, whose
// kmeshnodeinfos/ holds symlinks to the peers' files (live) and its own file, which the shared store links back
// to (so the others see what it publishes). Freezing replaces the peer links by copies of what they say right
// now; thawing puts the links back. Its key file is the shared one (the kubelet keeps projecting the Secret).
import fsp from 'node:fs/promises';
import path from 'node:path';
import { DirClusterStore, type ClusterStore, type ObjectKind } from '../../../src/demo/cluster-store.js';
import type { SimNode } from '../../../src/demo/netns-cluster.js';
import type { RunResult } from '../../../src/demo/shell.js';

export class FrozenViewStore implements ClusterStore {
  readonly ownDir: string;
  readonly description: string;
  private readonly shared: DirClusterStore;

  constructor(
    readonly dir: string,
    private readonly frozenNode: string,
    private readonly peers: readonly string[],
  ) {
    this.shared = new DirClusterStore(dir);
    this.description = `${this.shared.description} (${frozenNode} on its own view)`;
    this.ownDir = `${dir}-${frozenNode}`;
  }

  put(kind: ObjectKind, obj: Record<string, unknown>): Promise<void> {
    return this.shared.put(kind, obj);
  }

  remove(kind: ObjectKind | 'kmeshnodeinfos', namespace: string | undefined, name: string): Promise<void> {
    return this.shared.remove(kind, namespace, name);
  }

  nodeInfos(): Promise<Map<string, unknown>> {
    return this.shared.nodeInfos();
  }

  kmeshctl(args: readonly string[]): Promise<RunResult> {
    return this.shared.kmeshctl(args);
  }

  syncSecret(): Promise<void> {
    return this.shared.syncSecret();
  }

  daemonFlags(node: SimNode): string[] {
    if (node.name !== this.frozenNode) return this.shared.daemonFlags();
    return [`--store=dir:${this.ownDir}`, `--ipsec-key-file=${path.join(this.dir, 'kmesh-ipsec', 'ipSec')}`];
  }

  private infoFile(root: string, name: string): string {
    return path.join(root, 'kmeshnodeinfos', `${name}.json`);
  }

  /** Lays out both directories (call before the daemons start). */
  async prepare(): Promise<void> {
    for (const kind of ['nodes', 'pods', 'namespaces', 'kmeshnodeinfos']) {
      await fsp.mkdir(path.join(this.dir, kind), { recursive: true });
    }
    await fsp.mkdir(path.join(this.ownDir, 'kmeshnodeinfos'), { recursive: true });
    for (const kind of ['nodes', 'pods', 'namespaces']) {
      await fsp.symlink(path.join(this.dir, kind), path.join(this.ownDir, kind));
    }
    await fsp.symlink(this.infoFile(this.ownDir, this.frozenNode), this.infoFile(this.dir, this.frozenNode));
    await this.thaw();
  }

  /** The frozen node now sees its peers' KmeshNodeInfo objects as they are at this moment, until thaw(). */
  async freeze(): Promise<void> {
    for (const peer of this.peers) {
      const link = this.infoFile(this.ownDir, peer);
      const text = await fsp.readFile(this.infoFile(this.dir, peer), 'utf8');
      await fsp.writeFile(`${link}.tmp`, text);
      await fsp.rename(`${link}.tmp`, link);
    }
  }

  /** Live again: the peer files are links to the shared store. */
  async thaw(): Promise<void> {
    for (const peer of this.peers) {
      const link = this.infoFile(this.ownDir, peer);
      await fsp.rm(`${link}.tmp`, { force: true });
      await fsp.symlink(this.infoFile(this.dir, peer), `${link}.tmp`);
      await fsp.rename(`${link}.tmp`, link);
    }
  }

  /** The frozen node's own directory goes with the test directory; nothing else to undo. */
  async destroy(): Promise<void> {
    await fsp.rm(this.ownDir, { recursive: true, force: true });
  }
}
