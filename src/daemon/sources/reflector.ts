// List-then-watch cache of one Kubernetes resource kind, restarted on every error: a failed list, a watch
// that ends (server restart, timeout, 410 Gone, network error) all lead to a fresh list after a backoff, so
// the cache converges to the server's state no matter what was missed. Calls `onChange` after each update.
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

  private retry(reason: string): void {
    if (this.stopped) return;
    this.options.onError?.(`${this.name}: ${reason}; relisting in ${this.backoffMs} ms`);
    this.retryTimer = setTimeout(() => void this.cycle(), this.backoffMs);
    this.backoffMs = Math.min(this.backoffMs * 2, this.maxBackoffMs);
  }

  private async cycle(): Promise<void> {
    if (this.stopped) return;
    let rv: string;
    try {
      const listed = await this.ops.list();
      if (this.isStopped()) return;
      this.listCount += 1;
      this.items.clear();
      for (const obj of listed.items) this.put(obj);
      this.listed = true;
      rv = listed.resourceVersion;
      this.onChange();
    } catch (err) {
      this.retry(`list failed (${errorText(err)})`);
      return;
    }
    try {
      let sawEvent = false;
      this.current = await this.ops.watch(
        rv,
        (event) => {
          if (this.stopped) return;
          if (!sawEvent) {
            sawEvent = true;
            this.backoffMs = this.minBackoffMs;
          }
          this.apply(event);
        },
        (err) => {
          this.current = undefined;
          if (this.stopped) return;
          if (err) this.retry(`watch ended (${errorText(err)})`);
          else this.retry('watch closed by the server');
        },
      );
      if (this.isStopped()) this.current.abort();
    } catch (err) {
      this.retry(`watch failed (${errorText(err)})`);
    }
  }

  private put(obj: unknown): void {
    const key = this.ops.key(obj);
    if (key === undefined) return;
    if (this.ops.keep && !this.ops.keep(obj)) this.items.delete(key);
    else this.items.set(key, obj);
  }

  private apply(event: WatchEvent): void {
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
      case 'ERROR':
        // 410 Gone and friends: the watch is over; force a relist.
        this.current?.abort();
        return;
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
