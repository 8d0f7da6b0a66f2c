// The demo's and e2e suites' ping probe reads ping's summary and, when replies are missing, which icmp_seq
// numbers got none (so a loss in a rotation says whether it was at its start, middle or end).
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
  t.end();
});
