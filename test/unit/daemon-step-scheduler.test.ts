// StepScheduler (src/daemon/step-scheduler.ts) on a fake clock: triggers during a step coalesce into one more
// step, steps never overlap, a failed (or throwing) step is retried with a doubling, capped backoff that starts
// over after a success, the resync timer triggers steps, and stop() waits for the running step and ends it all.
import t from 'tap';
import { StepScheduler, type SchedulerTimers } from '../../src/daemon/step-scheduler.js';

/** Timers that fire only when the test says so; records every delay asked for. */
class FakeTimers implements SchedulerTimers {
  readonly delays: number[] = [];
  private pending: { ms: number; fn: () => void; repeat: boolean; live: boolean }[] = [];

  after(ms: number, fn: () => void): { cancel(): void } {
    return this.add(ms, fn, false);
  }

  every(ms: number, fn: () => void): { cancel(): void } {
    return this.add(ms, fn, true);
  }

  private add(ms: number, fn: () => void, repeat: boolean): { cancel(): void } {
    const timer = { ms, fn, repeat, live: true };
    this.delays.push(ms);
    this.pending.push(timer);
    return { cancel: () => (timer.live = false) };
  }

  /** Live one-shot timers (retries). */
  get oneShots(): number {
    return this.pending.filter((x) => x.live && !x.repeat).length;
  }

  /** Fires every live timer once (one-shots are then gone). */
  fire(kind: 'retry' | 'resync'): void {
    for (const timer of this.pending.filter((x) => x.live && x.repeat === (kind === 'resync'))) {
      if (!timer.repeat) timer.live = false;
      timer.fn();
    }
  }
}

/** A step whose outcome and completion the test controls. */
function controlledStep() {
  const calls: string[] = [];
  let running = 0;
  let maxRunning = 0;
  let release: ((ok: boolean) => void)[] = [];
  const step = (reason: string): Promise<boolean> => {
    calls.push(reason);
    running++;
    maxRunning = Math.max(maxRunning, running);
    return new Promise<boolean>((resolve) => release.push(resolve)).finally(() => running--);
  };
  const finish = async (ok: boolean): Promise<void> => {
    const r = release;
    release = [];
    for (const f of r) f(ok);
    await new Promise((resolve) => setImmediate(resolve));
  };
  return { step, calls, finish, maxRunning: () => maxRunning };
}

t.test('triggers during a step coalesce into one more step; steps never overlap', async (t) => {
  const timers = new FakeTimers();
  const c = controlledStep();
  const s = new StepScheduler({ step: c.step, timers });
  s.start();
  t.same(c.calls, ['start']);
  s.trigger('a');
  s.trigger('b');
  s.trigger('c');
  await c.finish(true);
  t.equal(c.calls.length, 2, 'one more step for the three triggers');
  await c.finish(true);
  await s.idle();
  t.equal(c.calls.length, 2, 'and nothing after it');
  t.equal(c.maxRunning(), 1);
  await s.stop();
});

t.test('failed steps retry with a doubling backoff up to the cap; a success starts it over', async (t) => {
  const timers = new FakeTimers();
  let fail = true;
  let runs = 0;
  const s = new StepScheduler({
    step: () => {
      runs++;
      return fail ? (runs % 2 ? Promise.resolve(false) : Promise.reject(new Error('thrown'))) : Promise.resolve(true);
    },
    timers,
    resyncMs: 60_000,
    retryMs: 100,
    maxRetryMs: 400,
  });
  s.start();
  await s.idle();
  for (let i = 0; i < 4; i++) {
    t.equal(timers.oneShots, 1, `retry ${i + 1} scheduled`);
    timers.fire('retry');
    await s.idle();
  }
  t.equal(runs, 5, 'the first step and four retries, rejections counted as failures');
  fail = false;
  timers.fire('retry');
  await s.idle();
  t.equal(timers.oneShots, 0, 'no retry after a success');
  fail = true;
  s.trigger('again');
  await s.idle();
  t.same(timers.delays, [60_000, 100, 200, 400, 400, 400, 100], 'resync, then 100..400 capped, then 100 again');
  await s.stop();
});

t.test('a failed step while one retry is pending schedules no second retry', async (t) => {
  const timers = new FakeTimers();
  const s = new StepScheduler({ step: () => Promise.resolve(false), timers });
  s.start();
  await s.idle();
  s.trigger('x');
  await s.idle();
  t.equal(timers.oneShots, 1);
  await s.stop();
});

t.test('the resync timer triggers steps; stop() waits for the running step and ends everything', async (t) => {
  const timers = new FakeTimers();
  const c = controlledStep();
  const s = new StepScheduler({ step: c.step, timers, resyncMs: 1234 });
  s.start();
  await c.finish(true);
  timers.fire('resync');
  t.same(c.calls, ['start', 'resync']);
  let stopped = false;
  const stopping = s.stop().then(() => (stopped = true));
  await new Promise((resolve) => setImmediate(resolve));
  t.equal(stopped, false, 'stop waits for the step in progress');
  await c.finish(false);
  await stopping;
  t.equal(stopped, true);
  t.equal(timers.oneShots, 0, 'a step failing after stop() schedules no retry');
  s.trigger('late');
  timers.fire('resync');
  t.same(c.calls, ['start', 'resync'], 'no step after stop()');
  await s.idle();
});

t.test(
  'wakeIn: one step when a retirement falls due before the resync, the sooner wins, none after stop',
  async (t) => {
    const timers = new FakeTimers();
    const calls: string[] = [];
    const s = new StepScheduler({
      step: (reason) => {
        calls.push(reason);
        return Promise.resolve(true);
      },
      timers,
      resyncMs: 30_000,
    });
    s.start();
    await s.idle();
    s.wakeIn(40_000, 'retirement due', 0);
    t.equal(timers.oneShots, 0, 'beyond the resync: left to the resync');
    s.wakeIn(5_000, 'retirement due', 0);
    s.wakeIn(8_000, 'retirement due', 0);
    t.equal(timers.oneShots, 1, 'a later wake does not replace a sooner one');
    s.wakeIn(2_000, 'status report due', 0);
    t.equal(timers.oneShots, 1, 'a sooner one replaces it');
    t.same(timers.delays.slice(-2), [5_000, 2_000]);
    timers.fire('retry');
    await s.idle();
    t.same(calls, ['start', 'status report due'], 'the step comes for the reason of the wake that fired');
    s.wakeIn(1_000, 'retirement due', 0);
    await s.stop();
    t.equal(timers.oneShots, 0, 'stop cancels it');
  },
);

t.test('minGapMs: a trigger after a quiet spell runs at once; a burst waits out the gap after each step', async (t) => {
  const timers = new FakeTimers();
  const c = controlledStep();
  let now = 1000;
  const s = new StepScheduler({ step: c.step, timers, minGapMs: 100, now: () => now });
  s.start();
  t.same(c.calls, ['start'], 'the first step runs at once');
  s.trigger('a');
  now = 1040;
  await c.finish(true);
  t.equal(c.calls.length, 1, 'a trigger during the step waits for the gap after it');
  t.same(timers.delays.slice(-1), [100], 'the whole gap: the step ended just now');
  s.trigger('b');
  now = 1090;
  s.trigger('c');
  let idle = false;
  void s.idle().then(() => (idle = true));
  await new Promise((r) => setImmediate(r));
  t.notOk(idle, 'a step waiting out its gap is pending: not idle');
  now = 1140;
  timers.fire('retry');
  await new Promise((r) => setImmediate(r));
  t.equal(c.calls.length, 2, 'the triggers during the gap coalesce into one step');
  now = 1150;
  await c.finish(true);
  await s.idle();
  t.ok(idle);
  t.equal(c.calls.length, 2);
  now = 1190;
  s.trigger('late');
  t.equal(c.calls.length, 2, '40 ms after the last step: waits');
  t.same(timers.delays.slice(-1), [60], 'the remaining gap, measured from the end of the step');
  now = 1300;
  timers.fire('retry');
  await new Promise((r) => setImmediate(r));
  t.equal(c.calls.length, 3);
  now = 1310;
  await c.finish(true);
  now = 1500;
  s.trigger('quiet');
  t.equal(c.calls.length, 4, '190 ms after the last step: at once');
  await c.finish(true);
  t.equal(c.maxRunning(), 1);
  await s.stop();
});

t.test('minGapMs: stop() during a gap ends the wait without running the pending step', async (t) => {
  const timers = new FakeTimers();
  const c = controlledStep();
  let now = 0;
  const s = new StepScheduler({ step: c.step, timers, minGapMs: 5000, now: () => now });
  s.start();
  s.trigger('a');
  now = 10;
  await c.finish(true);
  t.equal(c.calls.length, 1);
  await s.stop();
  await s.idle();
  t.equal(c.calls.length, 1, 'nothing ran after stop()');
  t.equal(timers.oneShots, 0, 'the gap timer is cancelled');
});
