// ClusterSource over a local directory, the embedded default with no cluster. The directory holds the
// same objects a cluster would, as JSON files: nodes/<name>.json (Node), namespaces/<name>.json,
// pods/**/<name>.json (Pod), kmeshnodeinfos/<name>.json (KmeshNodeInfo). Several daemons (one per
// simulated node) share one directory; each writes only its own kmeshnodeinfos/<node>.json, atomically
// (temp file, fsync, rename). Changes are seen through fs.watch and a periodic rescan (no event can be lost).
// Scans are incremental (dir-scan.ts): only new or changed files are read and parsed, every file again on
// every FULL_RESCAN_EVERY-th poll; an unchanged file keeps its parsed object, so a KmeshNodeInfo's `object`
// stays the same while its file does (the loop memoises validation by it, as with the kube source).
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { NodeInfo } from '../../model/node.js';
import { nodeKeyStatusJson, nodeKeyStatusUpToDate, type NodeKeyStatus } from '../../model/node-key-status.js';
import { namespaceFacts, nodeFacts, nodeInfoObject, objectName, podFacts } from './objects.js';
import type { ClusterSource, ClusterView, NamespaceFacts, NodeFacts, PodFacts, RawNodeInfo } from './source.js';
import { DirScanner, type DirScanStats } from './dir-scan.js';
import { writeFileAtomic } from '../../util/atomic-write.js';
import { DIR_STORE_NODE_INFOS } from '../../model/kmesh-names.js';

const DIR_KINDS = ['nodes', 'namespaces', 'pods', DIR_STORE_NODE_INFOS] as const;

/** Every this many polls, every file is reread whatever its stat says (dir-scan.ts says why). */
export const FULL_RESCAN_EVERY = 30;

/** The four kind directories, each scanned incrementally, with what each file gives this node. */
function scanners(root: string, nodeName: string) {
  return {
    nodes: new DirScanner<NodeFacts>(root, 'nodes', (_rel, obj) =>
      objectName(obj) === nodeName ? nodeFacts(obj) : undefined,
    ),
    namespaces: new DirScanner<NamespaceFacts>(root, 'namespaces', (_rel, obj) => namespaceFacts(obj)),
    pods: new DirScanner<PodFacts>(root, 'pods', (_rel, obj) => {
      const pod = podFacts(obj);
      return pod.nodeName === nodeName ? pod : undefined;
    }),
    kmeshnodeinfos: new DirScanner<RawNodeInfo>(root, DIR_STORE_NODE_INFOS, (rel, obj) => ({
      name: objectName(obj) ?? path.basename(rel, '.json'),
      object: obj,
    })),
  };
}

/** The view from the scanned files (pure apart from the scanners' caches); problems ordered kind by kind. */
function viewFromScans(scans: ReturnType<typeof scanners>): ClusterView {
  const kinds = [scans.nodes, scans.namespaces, scans.pods, scans.kmeshnodeinfos];
  return {
    node: scans.nodes.items().at(-1),
    nodeInfos: scans.kmeshnodeinfos.items(),
    pods: scans.pods.items(),
    namespaces: scans.namespaces.items(),
    problems: kinds.flatMap((k) => k.problems()),
    synced: true,
  };
}

export interface DirSourceOptions {
  /** Rescan period in ms (the safety net under fs.watch). */
  pollMs?: number;
  /** Every this many polls the rescan rereads every file (default FULL_RESCAN_EVERY). */
  fullRescanEvery?: number;
}

export class DirSource implements ClusterSource {
  readonly description: string;
  private current: ClusterView = {
    node: undefined,
    nodeInfos: [],
    pods: [],
    namespaces: [],
    problems: [],
    synced: false,
  };
  private readonly scans: ReturnType<typeof scanners>;
  private polls = 0;
  private rescanFull = false;
  private watchers: fs.FSWatcher[] = [];
  private timer: NodeJS.Timeout | undefined;
  private debounce: NodeJS.Timeout | undefined;
  private scanning: Promise<void> | undefined;
  private rescanAgain = false;
  private onChange: () => void = () => undefined;
  private stopped = false;
  private readonly pollMs: number;
  private readonly fullEvery: number;

  constructor(
    private readonly root: string,
    private readonly nodeName: string,
    options: DirSourceOptions = {},
  ) {
    this.description = `dir:${root}`;
    this.pollMs = options.pollMs ?? 1000;
    this.fullEvery = options.fullRescanEvery ?? FULL_RESCAN_EVERY;
    if (!Number.isInteger(this.fullEvery) || this.fullEvery < 1)
      throw new Error(`dir source: fullRescanEvery ${this.fullEvery} is not a whole number of polls >= 1`);
    this.scans = scanners(root, nodeName);
  }

  async start(onChange: () => void): Promise<void> {
    this.onChange = onChange;
    await fsp.mkdir(path.join(this.root, DIR_STORE_NODE_INFOS), { recursive: true });
    this.watchDirs();
    await this.rescan();
    this.timer = setInterval(() => {
      this.watchDirs();
      this.polls += 1;
      void this.rescan({ full: this.polls % this.fullEvery === 0 });
    }, this.pollMs);
    this.timer.unref();
  }

  /** Adds an fs.watch on every kind directory that exists and is not watched yet (they may appear late). */
  private watchDirs(): void {
    if (this.watchers.length === DIR_KINDS.length) return;
    for (const w of this.watchers) w.close();
    this.watchers = [];
    for (const kind of DIR_KINDS) {
      try {
        const w = fs.watch(path.join(this.root, kind), { recursive: false }, () => {
          this.scheduleRescan();
        });
        w.on('error', () => undefined);
        this.watchers.push(w);
      } catch {
        // Not there yet; the periodic rescan tries again.
      }
    }
  }

  private scheduleRescan(): void {
    if (this.debounce !== undefined || this.stopped) return;
    this.debounce = setTimeout(() => {
      this.debounce = undefined;
      void this.rescan();
    }, 20);
  }

  /**
   * Rereads what changed in the directory (every file when `full`); notifies when anything visible changed.
   * Concurrent calls coalesce into one more scan after the running one (full if any of them asked for it).
   */
  async rescan(options: { full?: boolean } = {}): Promise<void> {
    if (options.full) this.rescanFull = true;
    if (this.scanning) {
      this.rescanAgain = true;
      return this.scanning;
    }
    this.scanning = (async () => {
      do {
        this.rescanAgain = false;
        const full = this.rescanFull;
        this.rescanFull = false;
        let changed = false;
        for (const scanner of Object.values(this.scans)) if (await scanner.scan(full)) changed = true;
        if ((changed || !this.current.synced) && !this.stopped) {
          this.current = viewFromScans(this.scans);
          this.onChange();
        }
      } while (this.repeatRequested());
    })().finally(() => {
      this.scanning = undefined;
    });
    return this.scanning;
  }

  /** What the scans cost so far, all kinds together (files read: new, changed, racy or a full pass). */
  scanStats(): DirScanStats {
    const all = Object.values(this.scans).map((s) => s.stats);
    return {
      scans: this.scans.nodes.stats.scans,
      fullScans: this.scans.nodes.stats.fullScans,
      filesRead: all.reduce((n, s) => n + s.filesRead, 0),
      filesChanged: all.reduce((n, s) => n + s.filesChanged, 0),
    };
  }

  private repeatRequested(): boolean {
    return this.rescanAgain && !this.stopped;
  }

  view(): ClusterView {
    return this.current;
  }

  private ownFile(): string {
    return path.join(this.root, DIR_STORE_NODE_INFOS, `${this.nodeName}.json`);
  }

  /** Our own file as last written (undefined when absent or unreadable: it is rewritten whole). */
  private async ownObject(): Promise<Record<string, unknown> | undefined> {
    try {
      const obj: unknown = JSON.parse(await fsp.readFile(this.ownFile(), 'utf8'));
      return typeof obj === 'object' && obj !== null && !Array.isArray(obj)
        ? (obj as Record<string, unknown>)
        : undefined;
    } catch {
      return undefined;
    }
  }

  /** Writes the spec; the status written by publishNodeStatus stays (as a status subresource keeps it). */
  async publishNodeInfo(info: NodeInfo): Promise<void> {
    const status = (await this.ownObject())?.status;
    const object = nodeInfoObject(info, this.current.node?.uid ?? '');
    if (status !== undefined) object.status = status;
    await writeFileAtomic(this.ownFile(), JSON.stringify(object, null, 2) + '\n', { dirMode: 0o755 });
    await this.rescan();
  }

  /** Writes the status into our own file (this daemon is its only writer); nothing before the spec exists. */
  async publishNodeStatus(status: NodeKeyStatus): Promise<void> {
    const object = await this.ownObject();
    if (object === undefined || nodeKeyStatusUpToDate(object, status)) return;
    const json = JSON.stringify({ ...object, status: nodeKeyStatusJson(status) }, null, 2) + '\n';
    await writeFileAtomic(this.ownFile(), json, { dirMode: 0o755 });
    await this.rescan();
  }

  async deleteNodeInfo(): Promise<boolean> {
    let existed = true;
    try {
      await fsp.rm(this.ownFile());
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      existed = false;
    }
    await this.rescan();
    return existed;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    if (this.debounce) clearTimeout(this.debounce);
    for (const w of this.watchers) w.close();
    this.watchers = [];
    await this.scanning;
  }
}
