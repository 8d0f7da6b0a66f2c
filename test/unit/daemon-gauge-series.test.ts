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

/** The same series written into prom-client Gauges (what GaugeSeries stands for): their exposition. */
async function referenceText(defs: { name: string; help: string }[], rows: [string, ...number[]][]): Promise<string> {
  const registry = new Registry();
  const gauges = defs.map((d) => new Gauge({ ...d, labelNames: ['peer'], registers: [registry] }));
  for (const [peer, ...values] of rows) gauges.forEach((g, i) => g.set({ peer }, values[i] as number));
  return registry.metrics();
}

t.test('GaugeSeries: new, changed, unchanged and gone series, exposed as prom-client Gauges expose them', async (t) => {
  const defs = [
    { name: 'a', help: 'first "gauge"\\ of two' },
    { name: 'b', help: 'b' },
  ];
  const registry = new Registry();
  const series = new GaugeSeries<'peer'>(registry, defs);
  const write = async (rows: [string, number, number][]): Promise<string> => {
    series.begin();
    for (const [peer, x, y] of rows) series.set(peer, () => ({ peer }), x, y);
    series.end();
    return registry.metrics();
  };
  const rows1: [string, number, number][] = [
    ['p1', 1, 2],
    ['p2', 3, 4],
  ];
  t.equal(await write(rows1), await referenceText(defs, rows1), 'new series');
  t.equal(await write(rows1), await referenceText(defs, rows1), 'unchanged');
  const rows2: [string, number, number][] = [
    ['p1', 1, 5],
    ['p2', 3, 4],
  ];
  t.equal(await write(rows2), await referenceText(defs, rows2), 'one value changed');
  const rows3: [string, number, number][] = [['p2', 3, 4]];
  const text = await write(rows3);
  t.equal(text, await referenceText(defs, rows3), 'p1 gone');
  t.notMatch(text, /peer="p1"/, 'no series of p1');
  t.equal(series.size, 1);
  const rows4: [string, number, number][] = [
    ['p2', 3, 4],
    ['p1', 7, 8],
  ];
  t.equal(await write(rows4), await referenceText(defs, rows4), 'p1 back, after p2 (the order of first appearance)');
  t.equal(await write([]), await referenceText(defs, []), 'no series: the HELP and TYPE lines alone');
  t.throws(() => series.set('p3', () => ({ peer: 'p3' }), 1), /gauge series p3: 1 values for 2 gauges/);
  await write(rows1);
  const json = (await registry.getMetricsAsJSON()) as unknown as { name: string; values: { value: number }[] }[];
  t.same(
    json.map((m) => [m.name, m.values.map((v) => v.value)]),
    [
      ['a', [1, 3]],
      ['b', [2, 4]],
    ],
    'the JSON form too',
  );
  registry.resetMetrics();
  t.match(await registry.metrics(), /^a\{peer="p1"\} 1$/m, 'resetMetrics leaves the series to the next update');
  t.throws(() => new GaugeSeries(registry, [{ name: 'a', help: 'again' }]), /already been registered/);
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

t.test('DaemonMetrics: per-peer series follow the status: changed, gone, no longer reported', async (t) => {
  const m = new DaemonMetrics();
  const peers = Array.from({ length: 50 }, (_, i) => peer(`node-${i}`));
  const reports = { 'node-1': report(2, [1, 2]) };
  m.update(status({ peers, peerReports: reports }));
  const first = await m.text();
  t.match(first, /^kmesh_ipsec_peer_outbound_spi\{peer="node-49"\} 1$/m);
  t.match(first, /^kmesh_ipsec_peer_inbound_sas\{peer="node-0"\} 1$/m);
  t.match(first, /^kmesh_ipsec_peer_reported_sending_spi\{peer="node-1",spi="1"\} 1$/m);
  m.update(status({ peers, peerReports: reports }));
  t.equal(await m.text(), first, 'the same status: the same exposition');
  m.update(
    status({
      peers: [peer('node-1', { outboundSpi: 2, error: 'refused' })],
      peerReports: { 'node-1': report(2, [2]) },
    }),
  );
  const text = await m.text();
  t.match(text, /^kmesh_ipsec_peer_outbound_spi\{peer="node-1"\} 2$/m, 'the changed value');
  t.match(text, /^kmesh_ipsec_peer_error\{peer="node-1"\} 1$/m);
  t.notMatch(text, /peer="node-2"/, 'peers that left: gone');
  t.notMatch(text, /kmesh_ipsec_peer_reported_sending_spi\{peer="node-1",spi="1"\}/, 'an SPI no longer reported: gone');
  t.match(text, /^kmesh_ipsec_peer_reported_sending_spi\{peer="node-1",spi="2"\} 1$/m);
  t.match(text, /^# TYPE kmesh_ipsec_peer_advertised_spi gauge$/m);
});
