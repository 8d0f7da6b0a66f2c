// Name order (src/util/name-order.ts): the comparator, the in-order check, and a sort that leaves a list in order alone.
import t from 'tap';
import { compareByName, inNameOrder, sortByName } from '../../src/util/name-order.js';

const named = (...names: string[]): { name: string; n: number }[] => names.map((name, n) => ({ name, n }));

t.test('compareByName orders by code units', (t) => {
  t.equal(compareByName({ name: 'a' }, { name: 'b' }), -1);
  t.equal(compareByName({ name: 'b' }, { name: 'a' }), 1);
  t.equal(compareByName({ name: 'a' }, { name: 'a' }), 0);
  t.equal(compareByName({ name: 'B' }, { name: 'a' }), -1, 'upper case first');
  t.end();
});

t.test('inNameOrder: ascending and equal neighbours are in order; any step down is not', (t) => {
  t.ok(inNameOrder([]));
  t.ok(inNameOrder(named('a')));
  t.ok(inNameOrder(named('a', 'b', 'b', 'c')));
  t.notOk(inNameOrder(named('b', 'a')));
  t.notOk(inNameOrder(named('c', 'b', 'a')), 'descending');
  t.notOk(inNameOrder(named('a', 'c', 'b')), 'one step down at the end');
  t.end();
});

t.test('sortByName sorts in place, stably; a list in order is the list as it was', (t) => {
  const list = named('node-3', 'node-1', 'node-2', 'node-1');
  t.equal(sortByName(list), list, 'the same array');
  t.same(
    list.map((x) => [x.name, x.n]),
    [
      ['node-1', 1],
      ['node-1', 3],
      ['node-2', 2],
      ['node-3', 0],
    ],
  );
  const sorted = named('a', 'b', 'b', 'c');
  const before = [...sorted];
  t.equal(sortByName(sorted), sorted);
  t.same(sorted, before, 'left as it was');
  t.same(
    sortByName(named('c', 'b', 'a')).map((x) => x.name),
    ['a', 'b', 'c'],
  );
  t.end();
});
