// Logs conditions that hold across reconcile steps (a refused XFRM operation, an unusable own Node, "not
// advertising because ...") when they change instead of at every step: a line when a condition first holds, a
// reminder while it persists (at most once per repeat interval), and a line when it clears. A condition is
// identified by its key (e.g. object + errno); its message and fields are what the log line says, and a new
// message under the same key (the reason changed) is logged as it appears, without a cleared line. One step can
// bring or clear many conditions at once (every peer's SAs refused): past a limit per step the rest are counted
// in one summary line (they count as logged; /status lists them all).
import type { LoopLogger } from './loop.js';

export interface Condition {
  /** Identity: the same key and msg in consecutive steps is the same condition (logged once). */
  key: string;
  level: 'warn' | 'error';
  /** The log message while it holds. */
  msg: string;
  /** Structured fields of the log line (never key material). */
  fields: Record<string, unknown>;
  /** The message when it no longer holds. */
  clearedMsg: string;
}

interface Held {
  condition: Condition;
  since: number;
  lastLogged: number;
}

export interface ConditionLogOptions {
  /** Reminder interval while a condition persists (default 10 minutes). */
  repeatMs?: number;
  /** New conditions logged one by one per update; the rest are summarised in one line (default 10). */
  maxLinesPerUpdate?: number;
}

export const DEFAULT_CONDITION_REPEAT_MS = 10 * 60_000;

export class ConditionLog {
  private held = new Map<string, Held>();
  private readonly repeatMs: number;
  private readonly maxLines: number;

  constructor(
    private readonly log: LoopLogger,
    options: ConditionLogOptions = {},
  ) {
    this.repeatMs = options.repeatMs ?? DEFAULT_CONDITION_REPEAT_MS;
    this.maxLines = options.maxLinesPerUpdate ?? 10;
  }

  /** The conditions holding now (after a step): logs what appeared, what is due a reminder, what cleared. */
  update(current: readonly Condition[], now: number): void {
    const next = new Map<string, Held>();
    const due: { condition: Condition; before: Held | undefined }[] = [];
    for (const condition of current) {
      if (next.has(condition.key)) continue;
      const held = this.held.get(condition.key);
      // The same condition saying something else (another reason) is logged as a new one.
      const before = held !== undefined && held.condition.msg === condition.msg ? held : undefined;
      if (before !== undefined && now - before.lastLogged < this.repeatMs) {
        next.set(condition.key, { ...before, condition });
        continue;
      }
      next.set(condition.key, { condition, since: before?.since ?? now, lastLogged: now });
      due.push({ condition, before });
    }
    due.slice(0, this.maxLines).forEach(({ condition, before }) => {
      if (before === undefined) this.log[condition.level](condition.fields, condition.msg);
      else {
        const sinceSeconds = Math.round((now - before.since) / 1000);
        this.log[condition.level]({ ...condition.fields, sinceSeconds }, `${condition.msg} (still)`);
      }
    });
    const moreDue = due.slice(this.maxLines).map((d) => d.condition);
    const firstMore = moreDue[0];
    if (firstMore !== undefined) {
      const level = moreDue.some((c) => c.level === 'error') ? 'error' : 'warn';
      this.log[level](
        { more: moreDue.length, next: firstMore.msg },
        `and ${moreDue.length} more like it (see /status)`,
      );
    }
    const cleared = [...this.held.values()].filter((h) => !next.has(h.condition.key));
    for (const was of cleared.slice(0, this.maxLines)) {
      const afterSeconds = Math.round((now - was.since) / 1000);
      this.log.info({ ...was.condition.fields, afterSeconds }, was.condition.clearedMsg);
    }
    if (cleared.length > this.maxLines) {
      this.log.info({ more: cleared.length - this.maxLines }, `and ${cleared.length - this.maxLines} more cleared`);
    }
    this.held = next;
  }

  /** Keys of the conditions holding after the last update. */
  keys(): string[] {
    return [...this.held.keys()];
  }
}
