// Which peers get series of their own in /metrics (src/daemon/peer-series-limit.ts): all of them up to the limit,
// else the failing ones, at most the limit, the first by name.
import t from 'tap';
import { DEFAULT_PEER_METRICS_LIMIT, peersWithSeries } from '../../src/daemon/peer-series-limit.js';

t.test('all up to the limit, then only the failing ones, at most the limit', (t) => {
  const peers = Array.from({ length: 10 }, (_, i) => ({ name: `p${i}`, failing: i % 4 === 1 }));
  const failing = (p: { failing: boolean }) => p.failing;
  t.equal(peersWithSeries(peers, 10, failing), peers, 'at the limit: the very list');
  t.same(
    peersWithSeries(peers, 9, failing).map((p) => p.name),
    ['p1', 'p5', 'p9'],
    'over it: the failing ones',
  );
  t.same(
    peersWithSeries(peers, 2, failing).map((p) => p.name),
    ['p1', 'p5'],
    'no more than the limit, the first in order',
  );
  t.same(peersWithSeries(peers, 0, failing), [], '0: none');
  t.same(peersWithSeries([], 0, failing), [], 'no peers: none');
  t.equal(DEFAULT_PEER_METRICS_LIMIT, 100);
  t.end();
});
