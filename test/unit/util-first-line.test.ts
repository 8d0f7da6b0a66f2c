// firstLine (src/util/first-line.ts): what one-line problem reports show of an error.
import t from 'tap';
import { firstLine } from '../../src/util/first-line.js';

t.test('the first line of an Error message, of a string, of anything else', (t) => {
  t.equal(
    firstLine(new Error('load BPF object x.o: Permission denied\nverifier log:\n 0: r1 = ...')),
    'load BPF object x.o: Permission denied',
  );
  t.equal(firstLine(new Error('one line')), 'one line');
  t.equal(firstLine('stderr first\nsecond'), 'stderr first');
  t.equal(firstLine(42), '42');
  t.equal(firstLine(new Error('')), '');
  t.equal(firstLine('\nstarts with a break'), '');
  t.end();
});
