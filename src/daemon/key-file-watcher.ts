// Watches the IPsec secret file the way it really changes: the kubelet's atomic `..data` symlink swap in a
// projected secret volume, plain rewrites (directory store, humans), deletion, and creation after the daemon
// started. Reacts to fs.watch events on the directory and re-reads on a short poll as a safety net (watches
// on a replaced directory or a missed event can never leave an old key in force). A file that does not
// decode keeps the last good key in force and is reported with the reason; key bytes are never logged.
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { IpsecKey } from '../model/node.js';
import { firstLine } from '../util/first-line.js';

export type KeyFileEvent =
  | { kind: 'key'; key: IpsecKey }
  | { kind: 'invalid'; reason: string; keptSpi: number | undefined }
  | { kind: 'missing'; keptSpi: number | undefined };

export interface KeyFileStatus {
  path: string;
  /** SPI of the key in force (last good one read), if any. */
  spi: number | undefined;
  /** Why the file on disk is not the key in force ('' when it is). */
  problem: string;
}

export interface KeyFileWatcherOptions {
  pollMs?: number;
}

export class KeyFileWatcher {
  private lastText: string | undefined = undefined;
  private lastState: 'none' | 'missing' | 'invalid' | 'ok' = 'none';
  private good: IpsecKey | undefined;
  private problem = '';
  private dirWatcher: fs.FSWatcher | undefined;
  private watchedDirIno: number | undefined;
  private timer: NodeJS.Timeout | undefined;
  private debounce: NodeJS.Timeout | undefined;
  private checking: Promise<void> | undefined;
  private again = false;
  private stopped = false;
  private readonly pollMs: number;

  constructor(
    readonly file: string,
    private readonly decode: (text: string) => IpsecKey,
    private readonly onEvent: (event: KeyFileEvent) => void,
    options: KeyFileWatcherOptions = {},
  ) {
    this.pollMs = options.pollMs ?? 1000;
  }

  /** Reads the file once (events for what it finds), then keeps watching. */
  async start(): Promise<void> {
    await this.check();
    this.timer = setInterval(() => void this.check(), this.pollMs);
    this.timer.unref();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    if (this.debounce) clearTimeout(this.debounce);
    this.dirWatcher?.close();
  }

  /** The key in force: the last one that decoded. */
  key(): IpsecKey | undefined {
    return this.good;
  }

  status(): KeyFileStatus {
    return { path: this.file, spi: this.good?.spi, problem: this.problem };
  }

  private ensureDirWatch(): void {
    const dir = path.dirname(this.file);
    let ino: number | undefined;
    try {
      ino = fs.statSync(dir).ino;
    } catch {
      ino = undefined;
    }
    if (ino === this.watchedDirIno && (this.dirWatcher !== undefined || ino === undefined)) return;
    this.dirWatcher?.close();
    this.dirWatcher = undefined;
    this.watchedDirIno = ino;
    if (ino === undefined) return;
    try {
      this.dirWatcher = fs.watch(dir, () => this.schedule());
      this.dirWatcher.on('error', () => {
        this.dirWatcher?.close();
        this.dirWatcher = undefined;
      });
    } catch {
      this.dirWatcher = undefined;
    }
  }

  private schedule(): void {
    if (this.debounce || this.stopped) return;
    this.debounce = setTimeout(() => {
      this.debounce = undefined;
      void this.check();
    }, 20);
  }

  /** Re-reads the file now; concurrent calls coalesce into one more read. */
  async check(): Promise<void> {
    if (this.checking) {
      this.again = true;
      return this.checking;
    }
    this.checking = (async () => {
      do {
        this.again = false;
        this.ensureDirWatch();
        await this.readOnce();
      } while (this.repeatRequested());
    })().finally(() => {
      this.checking = undefined;
    });
    return this.checking;
  }

  private repeatRequested(): boolean {
    return this.again && !this.stopped;
  }

  private async readOnce(): Promise<void> {
    let text: string | undefined;
    try {
      text = await fsp.readFile(this.file, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ENOTDIR') {
        this.report('invalid', undefined, `cannot read ${this.file}: ${code ?? (err as Error).message}`);
        return;
      }
    }
    if (this.stopped) return;
    if (text === undefined) {
      if (this.lastState === 'missing') return;
      this.lastText = undefined;
      this.lastState = 'missing';
      this.problem = this.good
        ? `${this.file} is gone; SPI ${this.good.spi} stays in force`
        : `${this.file} does not exist yet`;
      this.onEvent({ kind: 'missing', keptSpi: this.good?.spi });
      return;
    }
    if (text === this.lastText && this.lastState !== 'missing') return;
    this.lastText = text;
    let key: IpsecKey;
    try {
      key = this.decode(text);
    } catch (err) {
      this.report('invalid', text, (err as Error).message);
      return;
    }
    this.lastState = 'ok';
    this.problem = '';
    this.good = key;
    this.onEvent({ kind: 'key', key });
  }

  private report(state: 'invalid', text: string | undefined, reason: string): void {
    this.lastText = text;
    this.lastState = state;
    const line = firstLine(reason);
    this.problem = `${this.file}: ${line}${this.good ? `; SPI ${this.good.spi} stays in force` : ''}`;
    this.onEvent({ kind: 'invalid', reason: line, keptSpi: this.good?.spi });
  }
}
