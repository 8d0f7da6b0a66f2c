// The change feed's bookkeeping (src/xfrm/netlink-monitor.ts): announcements of our own accepted writes are
// matched by (type, seq) and pid 0 and leave the tables "untouched"; anything else, a lost announcement, or
// one of ours missing makes them "touched". The monitor opens at the first look, which reports "touched".
import t from 'tap';
import { AnnouncementLedger, XfrmChangeMonitor, type XfrmMonitorApi } from '../../src/xfrm/netlink-monitor.js';

const NEWSA = 0x10;
const DELSA = 0x11;
const NEWPOLICY = 0x13;
const events = (...triples: [number, number, number][]) => Uint32Array.from(triples.flat());

t.test('ledger: ours matched, anything else named', (t) => {
  const l = new AnnouncementLedger();
  l.expect(NEWSA, 7);
  l.expect(NEWPOLICY, 8);
  l.expect(DELSA, 8);
  t.equal(l.settle(events([NEWPOLICY, 8, 0], [NEWSA, 7, 0], [DELSA, 8, 0]), false), '', 'in any order');
  t.equal(l.settle(events(), false), '', 'nothing expected, nothing seen');
  l.expect(NEWSA, 7);
  t.equal(
    l.settle(events([NEWSA, 7, 4321]), false).startsWith('XFRM tables changed by someone else'),
    true,
    'a pid is not ours',
  );
  l.expect(NEWSA, 7);
  t.match(l.settle(events([NEWPOLICY, 7, 0]), false), /message type 19, seq 7/, 'another type under our seq');
  l.expect(NEWSA, 7);
  l.expect(NEWSA, 9);
  t.equal(l.settle(events([NEWSA, 7, 0]), false), '1 of our XFRM writes were not announced');
  t.equal(l.settle(events(), false), '', 'what was expected is forgotten at each settle');
  t.match(l.settle(events(), true), /lost/, 'an overrun');
  t.match(l.settle(events([NEWSA, 1, 0]), false), /someone else/, 'an announcement nobody expected');
  t.end();
});

t.test('monitor: opened at the first look, closed after a failure, opened again', (t) => {
  const calls: string[] = [];
  let queued = events();
  let failDrain = false;
  const api: XfrmMonitorApi = {
    open: (ns) => {
      calls.push(`open ${ns}`);
      return 42;
    },
    drain: () => {
      if (failDrain) throw new Error('recv XFRM monitor fd 42: Bad file descriptor (errno 9)');
      const out = { events: queued, overrun: false };
      queued = events();
      return out;
    },
    close: (fd) => calls.push(`close ${fd}`),
  };
  const m = new XfrmChangeMonitor('/run/netns/x', () => api);
  m.expect(NEWSA, 1);
  t.equal(m.look(), 'first look (monitor just opened)');
  t.equal(m.look(), '', 'what was expected before the monitor opened is not waited for');
  m.expect(NEWSA, 2);
  queued = events([NEWSA, 2, 0]);
  t.equal(m.look(), '');
  failDrain = true;
  t.match(m.look(), /^XFRM monitor failed: recv/);
  failDrain = false;
  t.equal(m.look(), 'first look (monitor just opened)');
  t.same(calls, ['open /run/netns/x', 'close 42', 'open /run/netns/x']);
  const broken = new XfrmChangeMonitor('', () => {
    throw new Error('kmesh_native addon has no xfrmMonitor');
  });
  t.match(broken.look(), /^no XFRM monitor: kmesh_native addon has no xfrmMonitor/);
  t.end();
});
