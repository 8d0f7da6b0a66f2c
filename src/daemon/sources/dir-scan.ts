// Incremental scan of one kind directory of the directory store (nodes/, pods/, …): remembers per JSON file its
// stat identity (dev, ino, size, mtime and ctime in ns) and what its text gave (the parsed object turned into an
// item by the kind's `derive`, or a one-line problem), and on each scan rereads only files that are new or
// whose stat changed; removed files are dropped. A file whose text is unchanged keeps its item — the same
// object — so consumers can memoise by identity. `scan` says whether the items or problems may have changed.
//
// Same-size rewrites within the timestamp granularity: a file rewritten in place (same inode) with the same
// size in the same clock tick keeps every stat field, and an atomic rename can even reuse a freed inode number.
// Comparing ctime alone does not help (it comes from the same coarse clock as mtime). Two nets:
//  1. racy files (as git's "racily clean" index entries): a file whose mtime was less than RACY_MS before the
//     scan started could still be rewritten within the same tick, so it is reread on every scan until its
//     mtime is older than that. Linux local filesystems stamp from a clock of at most a few ms granularity,
//     so this sees such a rewrite at the next scan; it costs rereads only of files changed in the last moment.
//  2. a full reread of every file (`scan(true)`, every 30th poll of the directory source) for filesystems with
//     1–2 s timestamps or clocks that disagree with ours; a rewrite the stat cannot show waits at most that long.
// A reread whose text has the same digest changes nothing (no notification, same item).
// Files are stat'ed and read synchronously in chunks with a yield to the event loop between chunks: 5,000
// fs.promises.stat calls cost ~15x the CPU of statSync (a thread-pool round trip each), and a local
// directory does not block for long. The store is a local directory by design (no network filesystem).
import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';

/** A file whose mtime is this recent when a scan starts is reread by the next scan too. */
export const RACY_MS = 250;
/** Files stat'ed or read between two yields to the event loop. */
const CHUNK = 256;

/** What a file's stat identifies it by; compared field by field (no key string built per file and scan). */
interface StatId {
  dev: bigint;
  ino: bigint;
  size: bigint;
  mtimeNs: bigint;
  ctimeNs: bigint;
}

interface Entry<T> {
  /** The file's path (root joined with its relative path), kept so a scan does not join it again. */
  file: string;
  stat: StatId;
  digest: string;
  racy: boolean;
  item: T | undefined;
  problem: string | undefined;
}

export interface DirScanStats {
  scans: number;
  fullScans: number;
  /** Files read (and digested) since the start. */
  filesRead: number;
  /** Files whose text changed, appeared or disappeared since the start. */
  filesChanged: number;
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
    // path.join(rel, name) for a normalised rel and a directory entry's name (no slash), without path.join's
    // normalisation of every file's path on every scan.
    const prefix = rel === '.' ? '' : `${rel}/`;
    for (const e of entries) {
      const child = prefix + e.name;
      if (e.isDirectory()) await walk(child);
      else if (e.name.endsWith('.json') && !e.name.startsWith('.')) out.push(child);
    }
  }
  await walk(path.normalize(sub));
  return out.sort();
}

const yieldToLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** The file's stat, or undefined when it is gone or unreadable. */
function statFile(file: string): fs.BigIntStats | undefined {
  try {
    return fs.statSync(file, { bigint: true, throwIfNoEntry: false });
  } catch {
    return undefined;
  }
}

export interface DirScanOptions {
  /** Wall clock in ms (Date.now), against which file mtimes are judged racy. */
  now?: () => number;
  /** stat(2) of a file (tests stand in a coarse-timestamp filesystem here). */
  stat?: (file: string) => fs.BigIntStats | undefined;
}

function statId(st: fs.BigIntStats): StatId {
  return { dev: st.dev, ino: st.ino, size: st.size, mtimeNs: st.mtimeNs, ctimeNs: st.ctimeNs };
}

function sameStat(id: StatId, st: fs.BigIntStats): boolean {
  return (
    id.dev === st.dev &&
    id.ino === st.ino &&
    id.size === st.size &&
    id.mtimeNs === st.mtimeNs &&
    id.ctimeNs === st.ctimeNs
  );
}

/**
 * The cached files of one kind directory. `derive` turns a parsed object into the kind's item (undefined: the
 * file holds nothing for this node) or throws with the problem; it must be pure.
 */
export class DirScanner<T> {
  private entries = new Map<string, Entry<T>>();
  /** Entries in file-name order, as of the last scan that changed anything. */
  private ordered: Entry<T>[] = [];
  readonly stats: DirScanStats = { scans: 0, fullScans: 0, filesRead: 0, filesChanged: 0 };
  private readonly now: () => number;
  private readonly stat: (file: string) => fs.BigIntStats | undefined;

  constructor(
    private readonly root: string,
    private readonly sub: string,
    private readonly derive: (rel: string, obj: unknown) => T | undefined,
    options: DirScanOptions = {},
  ) {
    this.now = options.now ?? Date.now;
    this.stat = options.stat ?? statFile;
  }

  /** Rereads what may have changed (everything when `full`); true when items or problems may differ. */
  async scan(full = false): Promise<boolean> {
    const started = this.now();
    this.stats.scans += 1;
    if (full) this.stats.fullScans += 1;
    const rels = await listJsonFiles(this.root, this.sub);
    const next = new Map<string, Entry<T>>();
    let changed = rels.length !== this.entries.size;
    for (let i = 0; i < rels.length; i++) {
      if (i > 0 && i % CHUNK === 0) await yieldToLoop();
      const rel = rels[i] as string;
      const old = this.entries.get(rel);
      const entry = this.refresh(rel, old, full, started);
      if (entry === undefined) {
        changed = true; // removed between listing and stat/read: it is simply gone
        continue;
      }
      if (entry !== old) {
        changed = true;
        this.stats.filesChanged += 1;
      }
      next.set(rel, entry);
    }
    if (!changed) {
      for (const rel of this.entries.keys()) if (!next.has(rel)) changed = true;
    }
    if (changed) {
      for (const rel of this.entries.keys()) if (!next.has(rel)) this.stats.filesChanged += 1;
      this.ordered = [...next.values()];
    }
    this.entries = next;
    return changed;
  }

  /**
   * The entry for `rel` now: `old` itself when the file is unchanged (updated in place when only its stat
   * moved), a new entry when its text changed, undefined when it is gone.
   */
  private refresh(rel: string, old: Entry<T> | undefined, full: boolean, started: number): Entry<T> | undefined {
    const file = old?.file ?? path.join(this.root, rel);
    const st = this.stat(file);
    if (st === undefined) return undefined;
    const racy = started - Number(st.mtimeNs / 1_000_000n) < RACY_MS;
    if (old !== undefined && !full && !old.racy && sameStat(old.stat, st)) {
      old.racy = racy;
      return old;
    }
    const stat = statId(st);
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch {
      return undefined;
    }
    this.stats.filesRead += 1;
    const digest = crypto.createHash('sha1').update(text).digest('base64');
    if (old !== undefined && old.digest === digest) {
      old.stat = stat;
      old.racy = racy;
      return old;
    }
    const { item, problem } = this.parse(rel, text);
    return { file, stat, digest, racy, item, problem };
  }

  private parse(rel: string, text: string): { item: T | undefined; problem: string | undefined } {
    let obj: unknown;
    try {
      obj = JSON.parse(text) as unknown;
    } catch (err) {
      return { item: undefined, problem: `${rel}: invalid JSON (${(err as Error).message})` };
    }
    try {
      return { item: this.derive(rel, obj), problem: undefined };
    } catch (err) {
      return { item: undefined, problem: `${rel}: ${(err as Error).message}` };
    }
  }

  /** Items in file-name order (files that hold nothing for this node or failed are left out). */
  items(): T[] {
    const out: T[] = [];
    for (const e of this.ordered) if (e.item !== undefined) out.push(e.item);
    return out;
  }

  /** One line per file that could not be used, in file-name order. */
  problems(): string[] {
    const out: string[] = [];
    for (const e of this.ordered) if (e.problem !== undefined) out.push(e.problem);
    return out;
  }
}
