// GaugeSeries (src/daemon/gauge-series.ts) and DaemonMetrics' per-peer series through it: the exposition is what
// reset() and a set() per series gave (new, changed and gone series), and an update that changes nothing writes
// nothing to the gauges.
import t from 'tap';
import { Gauge, Registry } from 'prom-client';
import { GaugeSeries } from '../../src/daemon/gauge-series.js';
import { DaemonMetrics } from '../../src/daemon/metrics.js';
import { emptyStatus, type DaemonStatus } from '../../src/daemon/status.js';
import type { PeerStatus } from '../../src/daemon/ports.js';
import type { NodeKeyStatus } from '../../src/model/node-key-status.js';

/** Counts Gauge#set calls while `fn` runs. */
function gaugeSets(fn: () => void): number {
  // eslint-disable-next-line @typescript-eslint/unbound-method -- restored below, called with its own `this`
  const set = Gauge.prototype.set;
  let calls = 0;
  Gauge.prototype.set = function (this: Gauge, ...args: Parameters<Gauge['set']>) {
    calls++;
    return set.apply(this, args);
  } as Gauge['set'];
  try {
    fn();
  } finally {
    Gauge.prototype.set = set;
  }
  return calls;
}

t.test('GaugeSeries: new, changed, unchanged and gone series', async (t) => {
  const registry = new Registry();
  const a = new Gauge({ name: 'a', help: 'a', labelNames: ['peer'], registers: [registry] });
  const b = new Gauge({ name: 'b', help: 'b', labelNames: ['peer'], registers: [registry] });
  const series = new GaugeSeries([a, b]);
  const write = (rows: [string, number, number][]): number =>
    gaugeSets(() => {
      series.begin();
      for (const [peer, x, y] of rows) series.set(peer, () => ({ peer }), x, y);
      series.end();
    });
  t.equal(
    write([
      ['p1', 1, 2],
      ['p2', 3, 4],
    ]),
    4,
    'new series: every value written',
  );
  t.equal(
    write([
      ['p1', 1, 2],
      ['p2', 3, 4],
    ]),
    0,
    'unchanged: nothing written',
  );
  t.equal(
    write([
      ['p1', 1, 5],
      ['p2', 3, 4],
    ]),
    1,
    'one value changed: one write',
  );
  t.equal(write([['p2', 3, 4]]), 0, 'p1 gone: removed, nothing written');
  const text = await registry.metrics();
  t.notMatch(text, /peer="p1"/, 'no series of p1');
  t.match(text, /^a\{peer="p2"\} 3$/m);
  t.match(text, /^b\{peer="p2"\} 4$/m);
  t.equal(
    write([
      ['p1', 7, 8],
      ['p2', 3, 4],
    ]),
    2,
    'p1 back: written again',
  );
  t.match(await registry.metrics(), /^b\{peer="p1"\} 8$/m);
  t.throws(() => series.set('p3', () => ({ peer: 'p3' }), 1), /gauge series p3: 1 values for 2 gauges/);
});

const peer = (name: string, over: Partial<PeerStatus> = {}): PeerStatus => ({
  name,
  advertisedSpi: 1,
  outboundSpi: 1,
  plannedSendSpi: 1,
  inboundSpis: [1],
  peerId: 1,
  error: '',
  ...over,
});
const report = (highestSpi: number, sendSpis: number[]): NodeKeyStatus => ({
  heldSpis: sendSpis,
  highestSpi,
  sendSpis,
  keyProblem: '',
  notReady: '',
  peerCount: 1,
  failingPeerCount: 0,
  failingPeers: [],
});
const status = (over: Partial<DaemonStatus>): DaemonStatus => ({ ...emptyStatus('n1', 'dir:/tmp/x', true), ...over });

t.test('DaemonMetrics: an unchanged status writes no per-peer series again', async (t) => {
  const m = new DaemonMetrics();
  const peers = Array.from({ length: 50 }, (_, i) => peer(`node-${i}`));
  const reports = { 'node-1': report(2, [1, 2]) };
  const first = gaugeSets(() => m.update(status({ peers, peerReports: reports })));
  const again = gaugeSets(() => m.update(status({ peers, peerReports: reports })));
  t.ok(first - again >= 50 * 4 + 3, `the second update writes none of the per-peer values (${first} -> ${again})`);
  gaugeSets(() =>
    m.update(
      status({
        peers: [peer('node-1', { outboundSpi: 2 })],
        peerReports: { 'node-1': report(2, [2]) },
      }),
    ),
  );
  const text = await m.text();
  t.match(text, /^kmesh_ipsec_peer_outbound_spi\{peer="node-1"\} 2$/m, 'the changed value');
  t.notMatch(text, /peer="node-2"/, 'peers that left: gone');
  t.notMatch(text, /kmesh_ipsec_peer_reported_sending_spi\{peer="node-1",spi="1"\}/, 'an SPI no longer reported: gone');
  t.match(text, /^kmesh_ipsec_peer_reported_sending_spi\{peer="node-1",spi="2"\} 1$/m);
});
