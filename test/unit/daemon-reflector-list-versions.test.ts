// Which resourceVersion the reflector's lists ask for (client-go's rule, src/daemon/sources/reflector.ts): "0" (the
// API server's watch cache) first, the last version seen on a relist after a server error, "" (a read of etcd) once
// the server said that version is gone; and what of an object it caches (ReflectorOps.trim). Against scripted
// list and watch answers; the real API server's side is test/kube/daemon-source.test.ts (its audit log).
import t from 'tap';
import { KubeApiError } from '../../src/kube/rest.js';
import { Reflector, type ListResult, type ReflectorOps, type WatchEvent } from '../../src/daemon/sources/reflector.js';

interface OpenWatch {
  from: string;
  event: (e: WatchEvent) => void;
  done: (err: unknown) => void;
}

/** Scripted list and watch: lists answer from `answers` (an Error is thrown), watches wait to be driven. */
function scripted(answers: (ListResult | Error)[]) {
  const asked: string[] = [];
  const watches: OpenWatch[] = [];
  const ops: ReflectorOps = {
    list: (resourceVersion) => {
      asked.push(resourceVersion);
      const next = answers.shift();
      if (next === undefined) return new Promise<ListResult>(() => undefined); // no more answers: hangs
      return next instanceof Error ? Promise.reject(next) : Promise.resolve(next);
    },
    watch: (resourceVersion, onEvent, onDone) => {
      let ended = false;
      const w: OpenWatch = {
        from: resourceVersion,
        event: onEvent,
        done: (err) => {
          if (!ended) onDone(err);
          ended = true;
        },
      };
      watches.push(w);
      return Promise.resolve({ abort: () => w.done(Object.assign(new Error('aborted'), { name: 'AbortError' })) });
    },
    key: (obj) => (obj as { metadata?: { name?: string } }).metadata?.name,
    trim: (obj) => {
      const o = obj as { metadata: { name: string; resourceVersion?: string }; bulky?: unknown };
      return { metadata: o.metadata };
    },
  };
  return { ops, asked, watches };
}

const obj = (name: string, rv: string) => ({ metadata: { name, resourceVersion: rv }, bulky: 'x'.repeat(100) });
const list = (rv: string, ...items: object[]): ListResult => ({ items, resourceVersion: rv });
const settle = () => new Promise((r) => setTimeout(r, 5));
const until = async (what: string, test: () => boolean) => {
  for (let i = 0; i < 400 && !test(); i++) await settle();
  if (!test()) throw new Error(`timed out waiting for ${what}`);
};

t.test('first list asks for any version; a relist after 410 asks for the latest', async (t) => {
  const s = scripted([list('10', obj('a', '9')), list('30', obj('a', '29'))]);
  const r = new Reflector('things', s.ops, () => undefined, { minBackoffMs: 1, maxBackoffMs: 2 });
  r.start();
  await until('the first watch', () => s.watches.length === 1);
  t.same(s.asked, ['0'], 'the first list is served from the watch cache');
  t.equal(s.watches[0]?.from, '10', 'the watch starts at the list’s version');
  s.watches[0]?.event({ type: 'MODIFIED', object: obj('a', '12') });
  s.watches[0]?.event({ type: 'ERROR', object: { kind: 'Status', code: 410, reason: 'Expired' } });
  await until('the second watch', () => s.watches.length === 2);
  t.same(s.asked, ['0', ''], 'after 410 the relist reads the latest');
  t.equal(s.watches[1]?.from, '30');
  t.same(r.listVersions, ['0', '']);
  t.same(r.objects(), [{ metadata: { name: 'a', resourceVersion: '29' } }], 'cached as trimmed');
  r.stop();
});

t.test('a relist after another server error asks for no older than the last version seen', async (t) => {
  const s = scripted([list('10'), list('40')]);
  const r = new Reflector('things', s.ops, () => undefined, { minBackoffMs: 1, maxBackoffMs: 2 });
  r.start();
  await until('the first watch', () => s.watches.length === 1);
  s.watches[0]?.event({ type: 'ADDED', object: obj('b', '17') });
  s.watches[0]?.event({ type: 'BOOKMARK', object: { metadata: { resourceVersion: '21' } } });
  s.watches[0]?.done(new KubeApiError(503, { kind: 'Status', code: 503, message: 'unavailable' }, 1));
  await until('the second watch', () => s.watches.length === 2);
  t.same(s.asked, ['0', '21'], 'the bookmark’s version, from the watch cache');
  t.same(r.objects(), [], 'the relist replaced the cache');
  r.stop();
});

t.test(
  'the server saying a version is gone on a list or as "too large" makes the next list read the latest',
  async (t) => {
    const tooLarge = new KubeApiError(
      504,
      {
        kind: 'Status',
        code: 504,
        reason: 'Timeout',
        message: 'Too large resource version: 99, current: 50',
        details: { causes: [{ reason: 'ResourceVersionTooLarge', message: 'Too large resource version' }] },
      },
      1,
    );
    const s = scripted([
      new KubeApiError(500, 'boom', 1),
      list('10'),
      new KubeApiError(410, { kind: 'Status', code: 410, reason: 'Expired' }, 1),
      list('50'),
      list('60'),
    ]);
    const r = new Reflector('things', s.ops, () => undefined, { minBackoffMs: 1, maxBackoffMs: 2 });
    r.start();
    await until('the first watch', () => s.watches.length === 1);
    t.same(s.asked, ['0', '0'], 'a failed first list is retried from the watch cache');
    s.watches[0]?.done(new KubeApiError(500, 'boom', 1)); // relist at 10 -> 410 -> relist at ''
    await until('the second watch', () => s.watches.length === 2);
    t.same(s.asked, ['0', '0', '10', ''], 'a list told 410 is followed by a read of the latest');
    s.watches[1]?.done(tooLarge);
    await until('the third watch', () => s.watches.length === 3);
    t.same(s.asked.slice(4), [''], 'after "too large resource version" too');
    r.stop();
  },
);
