// When the reconcile loop runs a step, apart from what a step does (the split controller-runtime makes between
// its work queue and a reconciler). A trigger asks for a step; triggers arriving while a step runs coalesce
// into one more step after it; steps never overlap. A failed step is retried after a backoff that doubles up
// to a cap and starts over after a success. A resync timer asks for a step at least every resyncMs whatever
// else happens. With minGapMs, a step starts no sooner than that after the previous one ended: a trigger after a
// quiet spell runs at once, but a burst of changes (a rotation: every peer's update within seconds) is taken in
// steps at most one per gap, each reflecting all that arrived before it, rather than one per step duration.
// stop() ends all triggering and waits for the step in progress. Timers never keep the process alive on their own.

/** A handle of a scheduled callback: cancellable, and never keeping the process alive. */
export interface TimerHandle {
  cancel(): void;
}

/** The clock the scheduler waits on; tests drive a fake one. */
export interface SchedulerTimers {
  after(ms: number, fn: () => void): TimerHandle;
  every(ms: number, fn: () => void): TimerHandle;
}

const realTimers: SchedulerTimers = {
  after(ms, fn) {
    const t = setTimeout(fn, ms).unref();
    return { cancel: () => clearTimeout(t) };
  },
  every(ms, fn) {
    const t = setInterval(fn, ms).unref();
    return { cancel: () => clearInterval(t) };
  },
};

export interface StepSchedulerOptions {
  /** Runs one step; resolves true when it succeeded, false to be retried after the backoff. */
  step: (reason: string) => Promise<boolean>;
  /** Longest time between two steps; default 30 s. */
  resyncMs?: number;
  /** First retry delay after a failed step; default 500 ms. */
  retryMs?: number;
  /** Cap of the doubling retry delay; default 10 s. */
  maxRetryMs?: number;
  /** Least time from the end of a step to the start of the next; default 0 (back to back). */
  minGapMs?: number;
  timers?: SchedulerTimers;
  /** The clock the gap is measured on (ms); default performance.now. */
  now?: () => number;
}

export class StepScheduler {
  private running: Promise<void> | undefined;
  private dirty = false;
  private stopped = false;
  private resyncTimer: TimerHandle | undefined;
  private retryTimer: TimerHandle | undefined;
  private wakeTimer: TimerHandle | undefined;
  private wakeDue = Infinity;
  private gapTimer: TimerHandle | undefined;
  private gapDone: (() => void) | undefined;
  /** When the last step ended (the scheduler's clock); -Infinity before the first. */
  private lastEnd = -Infinity;
  private retryMs: number;
  private idleWaiters: (() => void)[] = [];
  private readonly timers: SchedulerTimers;
  private readonly now: () => number;

  constructor(private readonly options: StepSchedulerOptions) {
    this.retryMs = options.retryMs ?? 500;
    this.timers = options.timers ?? realTimers;
    this.now = options.now ?? (() => performance.now());
  }

  /** Starts the resync timer and asks for the first step. */
  start(): void {
    this.stopped = false;
    this.resyncTimer?.cancel();
    this.resyncTimer = this.timers.every(this.options.resyncMs ?? 30_000, () => this.trigger('resync'));
    this.trigger('start');
  }

  /** Stops triggering and waits for a step in progress. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.resyncTimer?.cancel();
    this.wakeTimer?.cancel();
    this.wakeTimer = undefined;
    this.retryTimer?.cancel();
    this.resyncTimer = undefined;
    this.retryTimer = undefined;
    this.endGap();
    await this.running;
  }

  /** Asks for a step; coalesces with one already pending. */
  trigger(reason: string): void {
    if (this.stopped) return;
    this.dirty = true;
    if (this.running) return;
    this.running = (async () => {
      for (;;) {
        // The least gap after the last step (also the one before this run of steps); stop() ends the wait.
        if (this.dirty && this.gapLeft() > 0) await this.gap();
        if (!this.dirty || this.stopped) break;
        this.dirty = false;
        const ok = await this.options.step(reason).catch(() => false);
        this.lastEnd = this.now();
        if (ok) this.retryMs = this.options.retryMs ?? 500;
        else this.scheduleRetry();
      }
    })().finally(() => {
      this.running = undefined;
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    });
  }

  /** Resolves when no step is running or pending. */
  idle(): Promise<void> {
    if (!this.running) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /**
   * Asks for a step in `ms` for `reason` (an old SPI's floor or grace period ends, a deferred status report falls
   * due), unless one is already asked for sooner; a delay at or beyond the resync interval is left to the resync.
   */
  wakeIn(ms: number, reason = 'retirement due', now = Date.now()): void {
    if (this.stopped || ms >= (this.options.resyncMs ?? 30_000)) return;
    const due = now + Math.max(0, ms);
    if (this.wakeTimer && due >= this.wakeDue) return;
    this.wakeTimer?.cancel();
    this.wakeDue = due;
    this.wakeTimer = this.timers.after(Math.max(0, ms), () => {
      this.wakeTimer = undefined;
      this.wakeDue = Infinity;
      this.trigger(reason);
    });
  }

  /** What is left of the least gap after the last step, in ms (0 or less: none). */
  private gapLeft(): number {
    return this.lastEnd + (this.options.minGapMs ?? 0) - this.now();
  }

  /** Waits out what is left of the least gap after the last step (stop() ends the wait). */
  private gap(): Promise<void> {
    const left = this.gapLeft();
    if (left <= 0 || this.stopped) return Promise.resolve();
    return new Promise((resolve) => {
      this.gapDone = resolve;
      this.gapTimer = this.timers.after(left, () => this.endGap());
    });
  }

  private endGap(): void {
    this.gapTimer?.cancel();
    this.gapTimer = undefined;
    const done = this.gapDone;
    this.gapDone = undefined;
    done?.();
  }

  private scheduleRetry(): void {
    if (this.retryTimer || this.stopped) return;
    this.retryTimer = this.timers.after(this.retryMs, () => {
      this.retryTimer = undefined;
      this.trigger('retry');
    });
    this.retryMs = Math.min(this.retryMs * 2, this.options.maxRetryMs ?? 10_000);
  }
}
