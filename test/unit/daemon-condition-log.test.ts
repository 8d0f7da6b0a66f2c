// The condition log (src/daemon/condition-log.ts): a condition is logged when it appears, reminded at most once
// per repeat interval while it persists, logged when it clears; many at once are capped with a summary line.
import t from 'tap';
import { ConditionLog, type Condition } from '../../src/daemon/condition-log.js';
import type { LoopLogger } from '../../src/daemon/loop.js';

interface Line {
  level: string;
  obj: Record<string, unknown>;
  msg: string;
}

function recorder(): LoopLogger & { lines: Line[]; take(): Line[] } {
  const lines: Line[] = [];
  const at = (level: string) => (obj: object, msg: string) => {
    lines.push({ level, obj: obj as Record<string, unknown>, msg });
  };
  return {
    lines,
    take: () => lines.splice(0, lines.length),
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
    debug: at('debug'),
  };
}

const refused = (object: string, errno = 38): Condition => ({
  key: `${object}|${errno}`,
  level: 'error',
  msg: 'XFRM operation refused by the kernel',
  fields: { object, errno },
  clearedMsg: 'XFRM operation no longer failing',
});

t.test('appears once, quiet while it persists, a reminder per interval, one line when it clears', (t) => {
  const log = recorder();
  const conditions = new ConditionLog(log, { repeatMs: 60_000 });
  conditions.update([refused('sa-1')], 0);
  t.same(log.take(), [
    { level: 'error', obj: { object: 'sa-1', errno: 38 }, msg: 'XFRM operation refused by the kernel' },
  ]);
  for (let now = 10_000; now < 60_000; now += 10_000) conditions.update([refused('sa-1')], now);
  t.same(log.take(), [], 'nothing while it persists within the interval');
  conditions.update([refused('sa-1')], 60_000);
  t.same(log.take(), [
    {
      level: 'error',
      obj: { object: 'sa-1', errno: 38, sinceSeconds: 60 },
      msg: 'XFRM operation refused by the kernel (still)',
    },
  ]);
  conditions.update([refused('sa-1')], 90_000);
  t.same(log.take(), [], 'the next reminder is an interval after the last one');
  conditions.update([], 95_000);
  t.same(log.take(), [
    { level: 'info', obj: { object: 'sa-1', errno: 38, afterSeconds: 95 }, msg: 'XFRM operation no longer failing' },
  ]);
  conditions.update([], 100_000);
  t.same(log.take(), [], 'cleared once');
  t.same(conditions.keys(), []);
  t.end();
});

t.test('the same object with another errno is another condition; duplicates in one update count once', (t) => {
  const log = recorder();
  const conditions = new ConditionLog(log);
  conditions.update([refused('sa-1', 38), refused('sa-1', 38)], 0);
  t.equal(log.take().length, 1);
  conditions.update([refused('sa-1', 17)], 1_000);
  t.same(
    log.take().map((l) => [l.msg, l.obj.errno]),
    [
      ['XFRM operation refused by the kernel', 17],
      ['XFRM operation no longer failing', 38],
    ],
  );
  t.end();
});

t.test('many at once: the first lines, then one summary; the rest count as logged', (t) => {
  const log = recorder();
  const conditions = new ConditionLog(log, { maxLinesPerUpdate: 3, repeatMs: 60_000 });
  const many = Array.from({ length: 100 }, (_, i) => refused(`sa-${i}`));
  conditions.update(many, 0);
  const lines = log.take();
  t.equal(lines.length, 4);
  t.same(
    lines.slice(0, 3).map((l) => l.obj.object),
    ['sa-0', 'sa-1', 'sa-2'],
  );
  t.match(lines[3], { level: 'error', msg: 'and 97 more like it (see /status)', obj: { more: 97 } });
  conditions.update(many, 30_000);
  t.same(log.take(), [], 'none of them is logged again within the interval');
  conditions.update([], 40_000);
  const cleared = log.take();
  t.equal(cleared.length, 4);
  t.match(cleared[3], { level: 'info', msg: 'and 97 more cleared' });
  t.same(conditions.keys(), []);
  t.end();
});

t.test('the same key with another message: logged as it changes, no cleared line in between', (t) => {
  const log = recorder();
  const conditions = new ConditionLog(log);
  const node = (msg: string): Condition => ({
    key: 'node',
    level: 'error',
    msg,
    fields: {},
    clearedMsg: 'usable again',
  });
  conditions.update([node('no InternalIP')], 0);
  conditions.update([node('no InternalIP')], 1_000);
  conditions.update([node('missing')], 2_000);
  conditions.update([node('missing')], 3_000);
  conditions.update([], 4_000);
  t.same(
    log.take().map((l) => l.msg),
    ['no InternalIP', 'missing', 'usable again'],
  );
  t.end();
});
