// List-then-watch cache of one Kubernetes resource kind, as client-go's reflector keeps one: list, then watch
// from the list's resourceVersion; when a watch ends (server timeout, restart, network error) watch again from
// the last resourceVersion seen (events and bookmarks advance it), so no change is missed and nothing is
// relisted; when the server says that version is gone (410 Expired, after etcd compacted it) or a list fails,
// list again after a backoff. Calls `onChange` after each update.
// Which version a list asks for is client-go's rule too (listResourceVersion): the first list asks for any
// ("0"), which the API server answers from its watch cache instead of a read of etcd, so a DaemonSet rolling out
// on 5,000 nodes does not make 5,000 reads of every KmeshNodeInfo from etcd; a relist asks for no older than the
// last version seen (also from the cache); only once the server has said that version is gone (410, or "too
// large resource version") does a list ask for the latest (""), a read of etcd.
import { firstLine } from '../../util/first-line.js';

export interface ListResult {
  items: unknown[];
  resourceVersion: string;
}

export interface WatchEvent {
  type: string;
  object: unknown;
}

export interface ReflectorOps {
  /**
   * Lists every object (already filtered server-side where possible) at `resourceVersion`, as the API's list
   * parameter means it: "0" any version (the server's cache), "" the latest (a read of etcd), anything else not
   * older than that version.
   */
  list(resourceVersion: string): Promise<ListResult>;
  /** Starts a watch from `resourceVersion`; calls `onEvent` per event and `onDone` exactly once at its end. */
  watch(
    resourceVersion: string,
    onEvent: (event: WatchEvent) => void,
    onDone: (err: unknown) => void,
  ): Promise<{ abort(): void }>;
  /** Cache key of an object (namespace/name). */
  key(obj: unknown): string | undefined;
  /** Client-side filter (servers may ignore field selectors). */
  keep?(obj: unknown): boolean;
  /** What of an object is cached (the rest is dropped as it arrives); default all of it. */
  trim?(obj: unknown): unknown;
}

export interface ReflectorOptions {
  minBackoffMs?: number;
  maxBackoffMs?: number;
  onError?: (message: string) => void;
}

export class Reflector {
  private readonly items = new Map<string, unknown>();
  private listed = false;
  private stopped = true;
  private current: { abort(): void } | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private backoffMs: number;
  private readonly minBackoffMs: number;
  private readonly maxBackoffMs: number;
  /** Number of (re)lists done; tests read it to see restarts. */
  listCount = 0;
  /** Watches resumed from the last resourceVersion without a relist. */
  resumeCount = 0;
  /** Watches the server refused as too old (410): each led to a relist. */
  goneCount = 0;
  /** The last resourceVersion seen (list, event or bookmark): where a resumed watch starts. */
  private lastRv = '';
  /** The server said lastRv is gone (410 or "too large resource version"): the next list asks for the latest. */
  private lastRvGone = false;
  /** The resourceVersion each list asked for, the last 16 (tests). */
  readonly listVersions: string[] = [];
  private changes = 0;

  constructor(
    readonly name: string,
    private readonly ops: ReflectorOps,
    private readonly onChange: () => void,
    private readonly options: ReflectorOptions = {},
  ) {
    this.minBackoffMs = options.minBackoffMs ?? 200;
    this.maxBackoffMs = options.maxBackoffMs ?? 10_000;
    this.backoffMs = this.minBackoffMs;
  }

  get synced(): boolean {
    return this.listed;
  }

  /** How many times the cache changed (a list, an added, changed or deleted object): same count, same objects. */
  get changeCount(): number {
    return this.changes;
  }

  /** A watch is open (the server accepted it and has not ended it). */
  get watching(): boolean {
    return this.current !== undefined;
  }

  objects(): unknown[] {
    return [...this.items.values()];
  }

  start(): void {
    this.stopped = false;
    void this.cycle();
  }

  stop(): void {
    this.stopped = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.current?.abort();
    this.current = undefined;
  }

  private isStopped(): boolean {
    return this.stopped;
  }

  private retry(reason: string, next: () => Promise<void>): void {
    if (this.stopped) return;
    this.options.onError?.(`${this.name}: ${reason}; retrying in ${this.backoffMs} ms`);
    this.retryTimer = setTimeout(() => void next(), this.backoffMs);
    this.backoffMs = Math.min(this.backoffMs * 2, this.maxBackoffMs);
  }

  /** The resourceVersion the next list asks for (client-go's rule: the header above). */
  private listResourceVersion(): string {
    if (this.lastRvGone) return '';
    return this.listed && this.lastRv !== '' ? this.lastRv : '0';
  }

  private async cycle(): Promise<void> {
    if (this.stopped) return;
    const asked = this.listResourceVersion();
    this.listVersions.push(asked);
    if (this.listVersions.length > 16) this.listVersions.shift();
    try {
      const listed = await this.ops.list(asked);
      if (this.isStopped()) return;
      this.listCount += 1;
      this.items.clear();
      for (const obj of listed.items) this.put(obj);
      this.listed = true;
      this.lastRv = listed.resourceVersion;
      this.lastRvGone = false;
      this.changes++;
      this.onChange();
    } catch (err) {
      if (versionGone(err)) this.lastRvGone = true;
      this.retry(`list failed (${errorText(err)}), relisting`, () => this.cycle());
      return;
    }
    await this.watchFrom();
  }

  /** Watches from lastRv; a watch that ends is resumed from there, a 410 leads to a relist. */
  private async watchFrom(): Promise<void> {
    if (this.stopped) return;
    let gone = false;
    let sawEvent = false;
    const relist = () => {
      this.goneCount += 1;
      this.lastRvGone = true;
      this.options.onError?.(`${this.name}: resourceVersion ${this.lastRv} is gone (410), relisting`);
      void this.cycle();
    };
    try {
      this.current = await this.ops.watch(
        this.lastRv,
        (event) => {
          if (this.stopped || gone) return;
          if (event.type === 'ERROR') {
            // 410 Expired: the version we watch from was compacted away. Anything else: end and resume.
            gone = statusCode(event.object) === 410;
            this.current?.abort();
            return;
          }
          if (!sawEvent) {
            sawEvent = true;
            this.backoffMs = this.minBackoffMs;
          }
          this.apply(event);
        },
        (err) => {
          this.current = undefined;
          if (this.stopped) return;
          if (gone) return relist();
          if (!err || isAbort(err)) return void this.resume();
          this.watchFailed('watch ended', err, relist);
        },
      );
      if (this.isStopped()) this.current.abort();
    } catch (err) {
      this.watchFailed('watch failed', err, relist);
    }
  }

  /**
   * As client-go decides: 410 relists at once; any other answer from the server (403, 5xx, 504 "too large
   * resource version") relists after a backoff; a network failure (no answer) resumes the watch after one.
   */
  private watchFailed(what: string, err: unknown, relist: () => void): void {
    const code = statusCode(err);
    if (code === 410) return relist();
    if (versionGone(err)) this.lastRvGone = true;
    if (code !== undefined) this.retry(`${what} (${errorText(err)}), relisting`, () => this.cycle());
    else this.retry(`${what} (${errorText(err)}), resuming from ${this.lastRv}`, () => this.resume());
  }

  private resume(): Promise<void> {
    this.resumeCount += 1;
    return this.watchFrom();
  }

  private put(obj: unknown): void {
    const key = this.ops.key(obj);
    if (key === undefined) return;
    if (this.ops.keep && !this.ops.keep(obj)) this.items.delete(key);
    else this.items.set(key, this.ops.trim ? this.ops.trim(obj) : obj);
  }

  private apply(event: WatchEvent): void {
    const rv = resourceVersionOf(event.object);
    if (rv !== undefined) this.lastRv = rv;
    switch (event.type) {
      case 'ADDED':
      case 'MODIFIED':
        this.put(event.object);
        break;
      case 'DELETED': {
        const key = this.ops.key(event.object);
        if (key !== undefined) this.items.delete(key);
        break;
      }
      default:
        return; // BOOKMARK: nothing to cache.
    }
    this.changes++;
    this.onChange();
  }
}

export function errorText(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    return typeof code === 'number' ? `HTTP ${code}` : firstLine(err) || err.name;
  }
  return String(err);
}

function resourceVersionOf(obj: unknown): string | undefined {
  const rv = (obj as { metadata?: { resourceVersion?: unknown } } | null)?.metadata?.resourceVersion;
  return typeof rv === 'string' && rv !== '' ? rv : undefined;
}

/** The HTTP status in a watch failure or an ERROR event's Status object (`code`), if any. */
function statusCode(x: unknown): number | undefined {
  if (typeof x !== 'object' || x === null) return undefined;
  const o = x as { code?: unknown; statusCode?: unknown };
  if (typeof o.code === 'number') return o.code;
  if (typeof o.statusCode === 'number') return o.statusCode;
  return undefined;
}

/**
 * The server no longer has the version asked for: 410 Gone/Expired, or (a list or watch from a version ahead of
 * its cache) a 504 whose Status names the cause ResourceVersionTooLarge, or says "too large resource version".
 */
function versionGone(err: unknown): boolean {
  const code = statusCode(err);
  if (code === 410) return true;
  if (code !== 504 || typeof err !== 'object' || err === null) return false;
  const body = (err as { body?: unknown }).body ?? err;
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  return /ResourceVersionTooLarge|too large resource version/i.test(text);
}

function isAbort(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { name?: unknown }).name === 'AbortError';
}
