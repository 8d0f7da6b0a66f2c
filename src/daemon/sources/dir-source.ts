// ClusterSource over a local directory, the embedded default with no cluster. The directory holds the
// same objects a cluster would, as JSON files: nodes/<name>.json (Node), namespaces/<name>.json,
// pods/**/<name>.json (Pod), kmeshnodeinfos/<name>.json (KmeshNodeInfo). Several daemons (one per
// simulated node) share one directory; each writes only its own kmeshnodeinfos/<node>.json, atomically
// (temp file, fsync, rename). Changes are seen through fs.watch and a periodic rescan (no event can be lost).
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { NodeInfo } from '../../model/node.js';
import { nodeKeyStatusJson, nodeKeyStatusUpToDate, type NodeKeyStatus } from '../../model/node-key-status.js';
import { namespaceFacts, nodeFacts, nodeInfoObject, objectName, podFacts } from './objects.js';
import type { ClusterSource, ClusterView, NamespaceFacts, PodFacts, RawNodeInfo } from './source.js';
import { writeFileAtomic } from '../../util/atomic-write.js';
import { DIR_STORE_NODE_INFOS } from '../../model/kmesh-names.js';

const DIR_KINDS = ['nodes', 'namespaces', 'pods', DIR_STORE_NODE_INFOS] as const;

interface DirFile {
  rel: string;
  text: string;
}

async function listJsonFiles(root: string, sub: string): Promise<string[]> {
  const out: string[] = [];
  async function walk(rel: string): Promise<void> {
    let entries: fs.Dirent[];
    try {
      entries = await fsp.readdir(path.join(root, rel), { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const child = path.join(rel, e.name);
      if (e.isDirectory()) await walk(child);
      else if (e.name.endsWith('.json') && !e.name.startsWith('.')) out.push(child);
    }
  }
  await walk(sub);
  return out.sort();
}

async function readFiles(root: string, sub: string): Promise<DirFile[]> {
  const files: DirFile[] = [];
  for (const rel of await listJsonFiles(root, sub)) {
    try {
      files.push({ rel, text: await fsp.readFile(path.join(root, rel), 'utf8') });
    } catch {
      // Removed between listing and reading: it is simply gone.
    }
  }
  return files;
}

/** Builds the view from the directory's files (pure apart from the inputs). */
function viewFromFiles(files: Record<(typeof DIR_KINDS)[number], DirFile[]>, nodeName: string): ClusterView {
  const problems: string[] = [];
  const parse = (f: DirFile): unknown => {
    try {
      return JSON.parse(f.text) as unknown;
    } catch (err) {
      problems.push(`${f.rel}: invalid JSON (${(err as Error).message})`);
      return undefined;
    }
  };
  let node: ClusterView['node'];
  for (const f of files.nodes) {
    const obj = parse(f);
    if (obj === undefined || objectName(obj) !== nodeName) continue;
    try {
      node = nodeFacts(obj);
    } catch (err) {
      problems.push(`${f.rel}: ${(err as Error).message}`);
    }
  }
  const namespaces: NamespaceFacts[] = [];
  for (const f of files.namespaces) {
    const obj = parse(f);
    if (obj === undefined) continue;
    try {
      namespaces.push(namespaceFacts(obj));
    } catch (err) {
      problems.push(`${f.rel}: ${(err as Error).message}`);
    }
  }
  const pods: PodFacts[] = [];
  for (const f of files.pods) {
    const obj = parse(f);
    if (obj === undefined) continue;
    try {
      const pod = podFacts(obj);
      if (pod.nodeName === nodeName) pods.push(pod);
    } catch (err) {
      problems.push(`${f.rel}: ${(err as Error).message}`);
    }
  }
  const nodeInfos: RawNodeInfo[] = [];
  for (const f of files.kmeshnodeinfos) {
    const obj = parse(f);
    if (obj === undefined) continue;
    nodeInfos.push({ name: objectName(obj) ?? path.basename(f.rel, '.json'), object: obj });
  }
  return { node, nodeInfos, pods, namespaces, problems, synced: true };
}

export interface DirSourceOptions {
  /** Rescan period in ms (the safety net under fs.watch). */
  pollMs?: number;
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
  private fingerprint = '';
  private watchers: fs.FSWatcher[] = [];
  private timer: NodeJS.Timeout | undefined;
  private debounce: NodeJS.Timeout | undefined;
  private scanning: Promise<void> | undefined;
  private rescanAgain = false;
  private onChange: () => void = () => undefined;
  private stopped = false;
  private readonly pollMs: number;

  constructor(
    private readonly root: string,
    private readonly nodeName: string,
    options: DirSourceOptions = {},
  ) {
    this.description = `dir:${root}`;
    this.pollMs = options.pollMs ?? 1000;
  }

  async start(onChange: () => void): Promise<void> {
    this.onChange = onChange;
    await fsp.mkdir(path.join(this.root, DIR_STORE_NODE_INFOS), { recursive: true });
    this.watchDirs();
    await this.rescan();
    this.timer = setInterval(() => {
      this.watchDirs();
      void this.rescan();
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

  /** Rereads the directory; notifies when anything visible changed. Concurrent calls coalesce. */
  async rescan(): Promise<void> {
    if (this.scanning) {
      this.rescanAgain = true;
      return this.scanning;
    }
    this.scanning = (async () => {
      do {
        this.rescanAgain = false;
        const files = {
          nodes: await readFiles(this.root, 'nodes'),
          namespaces: await readFiles(this.root, 'namespaces'),
          pods: await readFiles(this.root, 'pods'),
          kmeshnodeinfos: await readFiles(this.root, 'kmeshnodeinfos'),
        };
        const fingerprint = JSON.stringify(files);
        if (fingerprint !== this.fingerprint && !this.stopped) {
          this.fingerprint = fingerprint;
          this.current = viewFromFiles(files, this.nodeName);
          this.onChange();
        }
      } while (this.repeatRequested());
    })().finally(() => {
      this.scanning = undefined;
    });
    return this.scanning;
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
