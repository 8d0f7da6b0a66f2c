// The demo's and e2e suites' ping probe reads ping's summary and, when replies are missing, which icmp_seq
// numbers got none (so a loss in a rotation says whether it was at its start, middle or end); requests ping
// sent past the count while waiting for a late reply are not part of the probe.
import t from 'tap';
import { parsePing } from '../../src/demo/probes.js';

t.test('ping output: counts, and the sequence numbers without a reply', (t) => {
  const replies = (seqs: number[]) => seqs.map((s) => `64 bytes from 10.244.2.10: icmp_seq=${s} ttl=63 time=1.2 ms`);
  const all = ['PING 10.244.2.10 56(84) bytes of data.', ...replies([1, 2, 3]), '', '--- ping statistics ---'];
  t.same(parsePing([...all, '3 packets transmitted, 3 received, 0% packet loss, time 402ms'].join('\n')), {
    transmitted: 3,
    received: 3,
  });
  const lossy = [...replies([1, 2, 4, 5, 7]), '8 packets transmitted, 5 received, 37.5% packet loss, time 1s'];
  t.same(parsePing(lossy.join('\n')), { transmitted: 8, received: 5, missing: [3, 6, 8] });
  const many = 'x\n150 packets transmitted, 0 received, 100% packet loss';
  t.equal(parsePing(many).missing?.length, 20, 'at most 20 named');
  t.throws(() => parsePing('ping: connect: Network is unreachable'), /ping printed no summary: ping: connect/);
  // With a deadline, a late reply makes ping send past the count and stop once `count` replies are in.
  const late = [...replies([1, 2, 3, 4]), '5 packets transmitted, 4 received, 20% packet loss'].join('\n');
  t.same(parsePing(late, 4), { transmitted: 4, received: 4 }, 'the extra request is not part of the probe');
  t.same(parsePing(late), { transmitted: 5, received: 4, missing: [5] }, 'without the count it would be');
  const lost = [...replies([1, 2, 4, 5]), '5 packets transmitted, 4 received, 20% packet loss'].join('\n');
  t.same(parsePing(lost, 4), { transmitted: 4, received: 3, missing: [3] }, 'a request within the count lost');
  const allLost = 'x\n12 packets transmitted, 0 received, +12 errors, 100% packet loss';
  t.same(parsePing(allLost, 3), { transmitted: 3, received: 0, missing: [1, 2, 3] });
  t.end();
});
