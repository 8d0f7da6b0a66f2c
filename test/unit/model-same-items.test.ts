// sameItems: the same items by === in the same order, whatever the lists are.
import t from 'tap';
import { sameItems } from '../../src/model/same-items.js';

t.test('same items in the same order', (t) => {
  const o = {};
  t.ok(sameItems([], []));
  t.ok(sameItems(['a', 'b'], ['a', 'b']));
  t.ok(sameItems([1, 2], [1, 2]));
  t.ok(sameItems([o], [o]), 'the same object');
  t.notOk(sameItems([{}], [{}]), 'equal objects are not the same');
  t.notOk(sameItems(['a', 'b'], ['b', 'a']), 'order matters');
  t.notOk(sameItems([1], [1, 1]), 'length matters');
  t.notOk(sameItems([1, 1], [1]));
  t.end();
});
