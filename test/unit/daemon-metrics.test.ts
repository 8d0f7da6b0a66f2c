// DaemonMetrics (src/daemon/metrics.ts): how one DaemonStatus maps onto the Prometheus series, read back through
// the registry's text format, and that series of peers which went away disappear at the next update.
import t from 'tap';
import { DaemonMetrics } from '../../src/daemon/metrics.js';
import { emptyStatus, type DaemonStatus } from '../../src/daemon/status.js';
import type { NodeKeyStatus } from '../../src/model/node-key-status.js';

function status(over: Partial<DaemonStatus>): DaemonStatus {
  return { ...emptyStatus('node-01', 'dir:/tmp/x', true), ...over };
}

type Row = DaemonStatus['peers'][number];

/** A peer's row in the status: on `spi` for everything unless `over` says otherwise. */
function peerRow(name: string, spi: number, over: Partial<Row> = {}): Row {
  return {
    name,
    advertisedSpi: spi,
    outboundSpi: spi,
    plannedSendSpi: spi,
    inboundSpis: [spi],
    peerId: Number(/\d+$/.exec(name)?.[0] ?? 0),
    error: '',
    ...over,
  };
}

/** A peer's published status: holding `held`, sending with `sending`. */
function keyReport(held: number[], sending: number[], peerCount: number): NodeKeyStatus {
  return {
    heldSpis: held,
    highestSpi: Math.max(...held),
    sendSpis: sending,
    keyProblem: '',
    notReady: '',
    peerCount,
    failingPeerCount: 0,
    failingPeers: [],
  };
}

/** The value of one series in the text format, or undefined when it is not there. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

t.test('a status maps onto the gauges', async (t) => {
  const m = new DaemonMetrics();
  m.update(
    status({
      keySpi: 3,
      advertisedSpi: 2,
      peers: [
        {
          name: 'node-02',
          advertisedSpi: 2,
          outboundSpi: 2,
          plannedSendSpi: 2,
          inboundSpis: [1, 2],
          peerId: 1,
          error: '',
        },
        {
          name: 'node-03',
          advertisedSpi: 1,
          outboundSpi: undefined,
          plannedSendSpi: 1,
          inboundSpis: [],
          peerId: 2,
          error: 'no SA',
        },
      ],
      invalidPeers: ['node-09: bad CIDR'],
      managedPods: ['default/a', 'default/b'],
      attachments: [
        { ifname: 'veth1', program: 'encrypt' },
        { ifname: 'veth2', program: 'encrypt' },
        { ifname: 'eth0', program: 'decrypt' },
      ],
      cidrIndex: { nodes: 5, nodeCapacity: 3072, records: 1, recordCapacity: 16384 },
      xfrmStat: { XfrmInNoStates: 4, XfrmOutPolBlock: 0 },
      rotation: { spi: 3, seenAt: 1_000, convergedAt: 3_500 },
      keyProblem: 'file invalid',
      problems: ['one'],
    }),
  );
  const text = await m.text();
  t.equal(sample(text, 'kmesh_ipsec_key_spi'), 3);
  t.equal(sample(text, 'kmesh_ipsec_key_refused'), 0, 'an unreadable key file is a problem, not a refused key');
  t.equal(sample(text, 'kmesh_ipsec_advertised_spi'), 2);
  t.equal(sample(text, 'kmesh_ipsec_peer_advertised_spi{peer="node-03"}'), 1);
  t.equal(sample(text, 'kmesh_ipsec_peer_outbound_spi{peer="node-02"}'), 2);
  t.equal(sample(text, 'kmesh_ipsec_peer_outbound_spi{peer="node-03"}'), 0, 'no outbound SA = 0');
  t.equal(sample(text, 'kmesh_ipsec_peer_inbound_sas{peer="node-02"}'), 2);
  t.equal(sample(text, 'kmesh_ipsec_peer_error{peer="node-02"}'), 0);
  t.equal(sample(text, 'kmesh_ipsec_peer_error{peer="node-03"}'), 1);
  t.equal(sample(text, 'kmesh_ipsec_invalid_peer_objects'), 1);
  t.equal(sample(text, 'kmesh_managed_pods'), 2);
  t.equal(sample(text, 'kmesh_ipsec_tc_attachments{program="encrypt"}'), 2);
  t.equal(sample(text, 'kmesh_ipsec_tc_attachments{program="decrypt"}'), 1);
  t.equal(sample(text, 'kmesh_ipsec_cidr_index_installed'), 1);
  t.equal(sample(text, 'kmesh_ipsec_cidr_index_entries{kind="nodes"}'), 5);
  t.equal(sample(text, 'kmesh_ipsec_cidr_index_entries{kind="records"}'), 1);
  t.equal(sample(text, 'kmesh_xfrm_stat_total{counter="XfrmInNoStates"}'), 4, 'the first step counts from 0');
  t.equal(sample(text, 'kmesh_ipsec_rotation_convergence_seconds'), 2.5);
  t.equal(sample(text, 'kmesh_daemon_problems'), 3, 'problems + invalid peers + the key file problem');
});

t.test('the next update drops peers that went away and reports the trie fallback', async (t) => {
  const m = new DaemonMetrics();
  const peer = {
    name: 'node-02',
    advertisedSpi: 1,
    outboundSpi: 1,
    plannedSendSpi: 1,
    inboundSpis: [1],
    peerId: 1,
    error: '',
  };
  m.update(status({ peers: [peer], cidrIndex: { nodes: 1, nodeCapacity: 3072, records: 0, recordCapacity: 16384 } }));
  m.update(status({ peers: [], cidrIndex: null, rotation: { spi: 2, seenAt: 0, convergedAt: undefined } }));
  const text = await m.text();
  t.notMatch(text, /peer="node-02"/, 'no series of a peer that left');
  t.equal(sample(text, 'kmesh_ipsec_key_spi'), 0, 'no key = 0');
  t.equal(sample(text, 'kmesh_ipsec_cidr_index_installed'), 0);
  t.equal(sample(text, 'kmesh_ipsec_cidr_index_entries{kind="nodes"}'), 0);
  t.equal(sample(text, 'kmesh_ipsec_rotation_convergence_seconds'), 0, 'not converged: never set');
});

t.test('step results and durations are the loop’s to count', async (t) => {
  const m = new DaemonMetrics();
  m.steps.inc({ result: 'ok' });
  m.steps.inc({ result: 'ok' });
  m.steps.inc({ result: 'error' });
  m.stepSeconds.observe(0.02);
  const text = await m.text();
  t.equal(sample(text, 'kmesh_daemon_reconcile_total{result="ok"}'), 2);
  t.equal(sample(text, 'kmesh_daemon_reconcile_total{result="error"}'), 1);
  t.equal(sample(text, 'kmesh_daemon_reconcile_duration_seconds_count'), 1);
  t.equal(sample(text, 'kmesh_daemon_reconcile_duration_seconds_bucket{le="0.05"}'), 1);
  t.equal(sample(text, 'kmesh_daemon_reconcile_duration_seconds_bucket{le="0.01"}'), 0);
});

t.test('per-peer series after a run of updates equal those of one update with the last status', async (t) => {
  const row = (name: string, spi: number, error = ''): Row => peerRow(name, spi, { error });
  const report = (sending: number[]): NodeKeyStatus => keyReport(sending, sending, 2);
  const a = row('node-02', 1);
  const b = row('node-03', 1);
  const c = row('node-04', 2, 'no SA');
  const reports1 = { 'node-02': report([1]), 'node-03': report([1]) };
  const reports2 = { 'node-02': report([1, 2]), 'node-04': report([2]) };
  // Statuses as steps hand them out: the same row objects and report record where nothing changed.
  const run: DaemonStatus[] = [
    status({ peers: [a, b], peerReports: reports1 }),
    status({ peers: [a, b], peerReports: reports1 }),
    status({ peers: [a, row('node-03', 2)], peerReports: reports1 }),
    status({ peers: [a, c], peerReports: reports2 }),
    status({ peers: [a, c], peerReports: reports2 }),
    status({ peers: [c], peerReports: reports2 }),
    status({ peers: [a, c], peerReports: reports1 }),
  ];
  const perPeer = (text: string): string[] =>
    text
      .split('\n')
      .filter((l) => l.startsWith('kmesh_ipsec_peer_'))
      .sort();
  const stepped = new DaemonMetrics();
  for (let i = 0; i < run.length; i++) {
    const s = run[i] as DaemonStatus;
    stepped.update(s);
    const fresh = new DaemonMetrics();
    fresh.update(s);
    t.same(perPeer(await stepped.text()), perPeer(await fresh.text()), `after update ${i + 1}`);
  }
  t.ok(
    perPeer(await stepped.text()).some((l) => l.includes('node-04')),
    'the compared lines name the peers',
  );
  t.end();
});

t.test('beyond --peer-metrics-limit peers: series for failing peers only, every peer counted by SPI', async (t) => {
  const row = (i: number, error = ''): Row =>
    peerRow(`node-${String(i).padStart(4, '0')}`, 2, {
      advertisedSpi: i % 3 === 0 ? 1 : 2,
      outboundSpi: error === '' ? 2 : undefined,
      inboundSpis: [1, 2],
      error,
    });
  const report = (send: number[]): NodeKeyStatus => keyReport([1, 2], send, 150);
  const peers = Array.from({ length: 150 }, (_, k) => row(k + 1, k + 1 === 7 || k + 1 === 120 ? 'refused' : ''));
  const peerReports = Object.fromEntries(peers.map((p, k) => [p.name, report(k < 50 ? [1, 2] : [2])]));
  const m = new DaemonMetrics({ peerSeriesLimit: 100 });
  m.update(status({ peers, peerReports }));
  const text = await m.text();
  const named = [...new Set([...text.matchAll(/peer="([^"]+)"/g)].map((x) => x[1]))].sort();
  t.same(named, ['node-0007', 'node-0120'], 'only the failing peers have series of their own');
  t.equal(sample(text, 'kmesh_ipsec_peer_error{peer="node-0120"}'), 1);
  t.equal(sample(text, 'kmesh_ipsec_peer_reported_sending_spi{peer="node-0007",spi="1"}'), 1);
  t.equal(sample(text, 'kmesh_ipsec_peer_series_omitted'), 148);
  t.equal(sample(text, 'kmesh_ipsec_peers'), 150);
  t.equal(sample(text, 'kmesh_ipsec_peers_by_advertised_spi{spi="1"}'), 50);
  t.equal(sample(text, 'kmesh_ipsec_peers_by_advertised_spi{spi="2"}'), 100);
  t.equal(sample(text, 'kmesh_ipsec_peers_by_outbound_spi{spi="2"}'), 148);
  t.equal(sample(text, 'kmesh_ipsec_peers_by_outbound_spi{spi="0"}'), 2, 'no outbound SAs: counted as 0');
  t.equal(sample(text, 'kmesh_ipsec_peers_by_reported_sending_spi{spi="1"}'), 50);
  t.equal(sample(text, 'kmesh_ipsec_peers_by_reported_sending_spi{spi="2"}'), 150);

  // The failing peers mended, fewer peers than the limit: every peer's series again; then a limit of 0: none.
  const fewer = peers.slice(0, 100).map((p) => ({ ...p, error: '', outboundSpi: 2 }));
  m.update(status({ peers: fewer, peerReports }));
  const all = await m.text();
  t.equal((all.match(/^kmesh_ipsec_peer_error\{/gm) ?? []).length, 100, 'at the limit: every peer');
  t.equal((all.match(/^kmesh_ipsec_peer_reported_highest_spi\{/gm) ?? []).length, 150, 'and every report');
  t.equal(sample(all, 'kmesh_ipsec_peer_series_omitted'), 0);
  t.notOk(sample(all, 'kmesh_ipsec_peers_by_outbound_spi{spi="0"}'), 'a count that fell to nothing is gone');
  const none = new DaemonMetrics({ peerSeriesLimit: 0 });
  none.update(status({ peers, peerReports }));
  const bare = await none.text();
  t.notMatch(bare, /peer="/, 'limit 0: no per-peer series');
  t.equal(sample(bare, 'kmesh_ipsec_peers'), 150);
});
