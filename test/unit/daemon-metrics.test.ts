// DaemonMetrics (src/daemon/metrics.ts): how one DaemonStatus maps onto the Prometheus series, read back through
// the registry's text format, and that series of peers which went away disappear at the next update.
import t from 'tap';
import { DaemonMetrics } from '../../src/daemon/metrics.js';
import { emptyStatus, type DaemonStatus } from '../../src/daemon/status.js';
import type { NodeKeyStatus } from '../../src/model/node-key-status.js';

function status(over: Partial<DaemonStatus>): DaemonStatus {
  return { ...emptyStatus('node-01', 'dir:/tmp/x', true), ...over };
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
  type Row = DaemonStatus['peers'][number];
  const row = (name: string, spi: number, error = ''): Row => ({
    name,
    advertisedSpi: spi,
    outboundSpi: spi,
    plannedSendSpi: spi,
    inboundSpis: [spi],
    peerId: Number(name.slice(5)),
    error,
  });
  const report = (spi: number, sending: number[]): NodeKeyStatus => ({
    heldSpis: sending,
    highestSpi: spi,
    sendSpis: sending,
    keyProblem: '',
    notReady: '',
    peerCount: 2,
    failingPeerCount: 0,
    failingPeers: [],
  });
  const a = row('node-02', 1);
  const b = row('node-03', 1);
  const c = row('node-04', 2, 'no SA');
  const reports1 = { 'node-02': report(1, [1]), 'node-03': report(1, [1]) };
  const reports2 = { 'node-02': report(2, [1, 2]), 'node-04': report(2, [2]) };
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
