// Lists read in pages (src/kube/list-pages.ts): every page's objects in order under the snapshot's version, a
// continue token that expired between pages read again whole, and what it refuses. The pages of a real API server
// are checked in test/kube/daemon-source.test.ts.
import t from 'tap';
import { listInPages } from '../../src/kube/list-pages.js';
import { KubeApiError } from '../../src/kube/rest.js';

/** A list body to answer with, or an Error to fail with. */
type Answer = unknown;

/** A `get` that answers from a script and records the queries it was asked. */
function scripted(answers: Answer[]): { get: (q: Record<string, string>) => Promise<unknown>; asked: string[] } {
  const asked: string[] = [];
  return {
    asked,
    get: (q) => {
      asked.push(new URLSearchParams(q).toString());
      const a = answers.shift();
      if (a === undefined) return Promise.reject(new Error('asked more than the script has'));
      return a instanceof Error ? Promise.reject(a) : Promise.resolve(a);
    },
  };
}

const page = (items: string[], rv: string, next?: string): unknown => ({
  items: items.map((name) => ({ metadata: { name } })),
  metadata: { resourceVersion: rv, ...(next === undefined ? {} : { continue: next }) },
});
const names = (r: { items: unknown[] }): string[] =>
  r.items.map((x) => (x as { metadata: { name: string } }).metadata.name);
const expired = (): KubeApiError =>
  new KubeApiError(
    410,
    { kind: 'Status', reason: 'Expired', message: 'The provided continue parameter is too old' },
    1,
  );

t.test('pages followed to the last, in order, under the version of the snapshot', async (t) => {
  const s = scripted([page(['a', 'b'], '7', 'tok1'), page(['c', 'd'], '7', 'tok2'), page(['e'], '7')]);
  const r = await listInPages(s.get, { labelSelector: 'x=y' }, 2);
  t.same(names(r), ['a', 'b', 'c', 'd', 'e']);
  t.equal(r.resourceVersion, '7');
  t.same(s.asked, [
    'labelSelector=x%3Dy&limit=2',
    'labelSelector=x%3Dy&limit=2&continue=tok1',
    'labelSelector=x%3Dy&limit=2&continue=tok2',
  ]);
  t.end();
});

t.test('one page when the server sends no token (a server that ignores limit, or a short list)', async (t) => {
  const s = scripted([page(['a', 'b', 'c'], '9')]);
  const r = await listInPages(s.get, {}, 2);
  t.same(names(r), ['a', 'b', 'c']);
  t.equal(r.resourceVersion, '9');
  t.same(s.asked, ['limit=2']);
  t.end();
});

t.test('a token that expired between pages: the list read again whole, without a limit', async (t) => {
  const s = scripted([page(['a', 'b'], '7', 'tok1'), expired(), page(['a', 'c', 'd'], '12')]);
  const r = await listInPages(s.get, { fieldSelector: 'f=1' }, 2);
  t.same(names(r), ['a', 'c', 'd'], 'only the whole list: nothing of the expired snapshot');
  t.equal(r.resourceVersion, '12');
  t.same(s.asked, ['fieldSelector=f%3D1&limit=2', 'fieldSelector=f%3D1&limit=2&continue=tok1', 'fieldSelector=f%3D1']);
  t.end();
});

t.test('failures the pager does not handle reach the caller', async (t) => {
  await t.rejects(
    listInPages(scripted([expired()]).get, {}, 2),
    { code: 410 },
    'a 410 on the first page: the version asked for',
  );
  const forbidden = new KubeApiError(403, { kind: 'Status', reason: 'Forbidden' }, 1);
  await t.rejects(
    listInPages(scripted([page(['a'], '7', 'tok1'), forbidden]).get, {}, 1),
    { code: 403 },
    'a 403 between pages',
  );
  await t.rejects(
    listInPages(scripted([page(['a'], '7', 'tok1'), page(['b'], '7', 'tok1')]).get, {}, 1),
    /answered a list page with the token that asked for it/,
    'a server that hands the same token back',
  );
  for (const size of [0, -1, 1.5, Number.NaN])
    await t.rejects(listInPages(scripted([]).get, {}, size), RangeError, `page size ${size}`);
  t.end();
});
