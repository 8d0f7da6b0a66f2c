// exactArray and exactWith: the same items in a new array, and built at their exact size (measured on the heap:
// an array grown by push() or made by filter() or by a spread with an extra item holds room for 17 items).
import t from 'tap';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { exactArray, exactWith } from '../../src/util/exact-array.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** Heap bytes per array that `make` builds, over many arrays kept alive at once. */
function bytesPerArray(make: (i: number) => unknown[]): number {
  const n = 20_000;
  const keep: unknown[][] = new Array<unknown[]>(n);
  gc();
  const before = process.memoryUsage().heapUsed;
  for (let i = 0; i < n; i++) keep[i] = make(i);
  gc();
  const after = process.memoryUsage().heapUsed;
  if (keep.length !== n) throw new Error('kept arrays lost'); // and keeps them alive until measured
  return (after - before) / n;
}

const pushed = (i: number): number[] => {
  const a: number[] = [];
  a.push(i, i + 1);
  return a;
};

t.test('the same items, in a new array', (t) => {
  const items = [{ a: 1 }, { a: 2 }];
  const copy = exactArray(items);
  t.not(copy, items);
  t.same(copy, items);
  t.equal(copy[0], items[0]);
  t.same(exactArray([]), []);
  const more = exactWith(items, { a: 3 });
  t.same(more, [{ a: 1 }, { a: 2 }, { a: 3 }]);
  t.equal(items.length, 2, 'the original is left as it was');
  t.same(exactWith([[1]], [2]), [[1], [2]], 'an array item is added as one item, not spread');
  t.end();
});

t.test('built at their exact size, where push, filter and a spread with an extra item are not', (t) => {
  const grown = bytesPerArray(pushed);
  const exact = bytesPerArray((i) => exactArray(pushed(i)));
  const filtered = bytesPerArray((i) => [i, i + 1, i + 2].filter((x) => x !== i + 2));
  const exactFiltered = bytesPerArray((i) => exactArray([i, i + 1, i + 2].filter((x) => x !== i + 2)));
  const base = [0];
  const spread = bytesPerArray((i) => [...base, i]);
  const added = bytesPerArray((i) => exactWith(base, i));
  t.comment(
    `bytes per two-item array: push ${grown.toFixed(0)}, exactArray ${exact.toFixed(0)}; filter ${filtered.toFixed(0)}, ` +
      `exactArray of it ${exactFiltered.toFixed(0)}; [...a, x] ${spread.toFixed(0)}, exactWith ${added.toFixed(0)}`,
  );
  // Two items and an array header fit in well under 100 bytes; 17 slots of 8 bytes alone are 136.
  t.ok(exact < 100, `exactArray: ${exact} bytes`);
  t.ok(exactFiltered < 100, `exactArray of a filter: ${exactFiltered} bytes`);
  t.ok(added < 100, `exactWith: ${added} bytes`);
  t.ok(grown > exact + 80, `push leaves room (${grown} against ${exact} bytes)`);
  t.ok(filtered > exactFiltered + 80, `filter leaves room (${filtered} against ${exactFiltered} bytes)`);
  t.ok(spread > added + 80, `a spread with an extra item leaves room (${spread} against ${added} bytes)`);
  t.end();
});
