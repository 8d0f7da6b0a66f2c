// List-then-watch cache of one Kubernetes resource kind, as client-go's reflector keeps one: list, then watch
// from the list's resourceVersion; when a watch ends (server timeout, restart, network error) watch again from
// the last resourceVersion seen (events and bookmarks advance it), so no change is missed and nothing is
// relisted; when the server says that version is gone (410 Expired, after etcd compacted it) or a list fails,
// list again after a backoff. Calls `onChange` after each update.
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
  /** Lists every object (already filtered server-side where possible). */
  list(): Promise<ListResult>;
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

  private async cycle(): Promise<void> {
    if (this.stopped) return;
    try {
      const listed = await this.ops.list();
      if (this.isStopped()) return;
      this.listCount += 1;
      this.items.clear();
      for (const obj of listed.items) this.put(obj);
      this.listed = true;
      this.lastRv = listed.resourceVersion;
      this.onChange();
    } catch (err) {
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
    else this.items.set(key, obj);
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

function isAbort(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { name?: unknown }).name === 'AbortError';
}
