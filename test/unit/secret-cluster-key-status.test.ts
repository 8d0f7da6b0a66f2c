// The cluster-wide verdict of `kmeshctl ipsec status`: converged only when every node advertises the Secret's
// SPI, sends only with it and reports no problem (a node not ready to encrypt lags whatever its SPIs say);
// otherwise each lagging node and why.
import t from 'tap';
import { clusterKeyStatus, clusterKeyStatusJson, formatClusterKeyStatus } from '../../src/secret/cluster-key-status.js';

function node(name: string, spi: number, status?: Record<string, unknown>) {
  return { metadata: { name }, spec: { spi, addresses: [], bootID: 'b', podCIDRS: [] }, ...(status ? { status } : {}) };
}

const done = (held: number[], send: number[], peerCount = 2) => ({
  heldSpis: held,
  highestSpi: Math.max(...held),
  sendSpis: send,
  lastRotation: { spi: 7, seenAt: '2026-01-01T00:00:00.000Z', convergedAt: '2026-01-01T00:00:02.000Z' },
  peerCount,
  failingPeerCount: 0,
});

t.test('converged, then old SPIs gone', (t) => {
  const s = clusterKeyStatus(7, [
    node('b', 7, done([6, 7], [7])),
    node('a', 7, done([7], [7])),
    node('c', 7, done([7], [7])),
  ]);
  t.ok(s.converged);
  t.equal(s.verdict, 'converged on SPI 7; old SPIs still held (removed once every peer acknowledged): b (SPI 6)');
  t.same(
    s.nodes.map((n) => n.name),
    ['a', 'b', 'c'],
  );
  const gone = clusterKeyStatus(7, [
    node('a', 7, done([7], [7])),
    node('b', 7, done([7], [7])),
    node('c', 7, done([7], [7])),
  ]);
  t.equal(gone.verdict, 'converged on SPI 7');
  t.same(gone.oldSpisHeld, []);
  const text = formatClusterKeyStatus(gone, 'Secret kmesh-system/kmesh-ipsec');
  t.match(
    text,
    /^Secret Secret kmesh-system\/kmesh-ipsec: SPI 7\nNODE +ADVERTISED +HELD +SENDING +LAST ROTATION +CONVERGED AT +PEERS +FAILING PEERS\n/,
  );
  t.match(text, /\na +7 +7 +7 +SPI 7 +2026-01-01T00:00:02.000Z +2 +0\n/);
  t.match(text, /converged on SPI 7\n$/);
  const json = JSON.parse(clusterKeyStatusJson(gone)) as {
    converged: boolean;
    nodes: { status: { sendSpis: number[] } }[];
  };
  t.equal(json.converged, true);
  t.same(json.nodes[0]?.status.sendSpis, [7]);
  t.end();
});

t.test('what is missing and where', (t) => {
  const s = clusterKeyStatus(7, [
    node('a', 7, done([6, 7], [6, 7], 7)),
    node('b', 6, done([6, 7], [6], 7)),
    node('c', 7),
    node('d', 7, { ...done([7, 8], [7], 7) }),
    node('e', 7, { ...done([7], [7], 7), keyProblem: 'secret key refused (SPI 7): ...' }),
    node('f', 7, { ...done([7], [7], 7), failingPeerCount: 3, failingPeers: [{ name: 'x', reason: 'EEXIST' }] }),
    node('g', 7, { heldSpis: 'bad' }),
    node('h', 7, { ...done([7], [7], 7), notReady: 'datapath: attach encrypt to vp0: ENOENT (+1 more)' }),
  ]);

  t.notOk(s.converged);
  t.same(s.lagging, [
    'a: still sends with SPI 6',
    'b: advertises SPI 6; still sends with SPI 6',
    'c: publishes no status',
    "d: holds SPI 8, above the Secret's",
    'e: key problem: secret key refused (SPI 7): ...',
    'f: 3 failing peers: x (EEXIST)',
    'g: status unreadable: status.heldSpis is not a list',
    'h: not ready: datapath: attach encrypt to vp0: ENOENT (+1 more)',
  ]);
  t.match(s.verdict, /^not converged on SPI 7: 8 of 8 nodes lag: a: still sends with SPI 6 \| b: /);
  t.equal(clusterKeyStatus(undefined, []).verdict, 'no IPsec secret: create one with kmeshctl secret create');
  t.match(clusterKeyStatus(1, []).verdict, /^no KmeshNodeInfo objects/);
  t.notOk(clusterKeyStatus(1, []).converged);
  t.end();
});

t.test('a node that has not seen every other node lags, however ready it is', (t) => {
  // The startup case seen in the VM: node-1 published SPI 1, was ready and sent with SPI 1 to every peer it knew
  // (none yet), while node-3 already sent to it; "converged" then was wrong, and node-1 dropped node-3's packets.
  const early = clusterKeyStatus(1, [
    node('node-1', 1, { ...done([1], [], 0), lastRotation: undefined }),
    node('node-2', 1, done([1], [1], 1)),
    node('node-3', 1, done([1], [1])),
  ]);
  t.notOk(early.converged);
  t.same(early.lagging, ['node-1: knows 0 of 2 peers', 'node-2: knows 1 of 2 peers']);
  const stale = clusterKeyStatus(1, [node('a', 1, done([1], [1], 3)), node('b', 1, done([1], [1], 1))]);
  t.same(stale.lagging, ['a: knows 3 peers, 2 more than the cluster has']);
  const text = formatClusterKeyStatus(early, 'dir:/x');
  t.match(text, /\nnode-1 +1 +1 +- +- +0 +0\n/);
  // 300 nodes: a node writes a changed peer count at most every 3 s, which the line says.
  const large = clusterKeyStatus(1, [
    node('n-000', 1, done([1], [1], 298)),
    ...Array.from({ length: 299 }, (_, i) => node(`n-${String(i + 1).padStart(3, '0')}`, 1, done([1], [1], 299))),
  ]);
  t.same(large.lagging, ['n-000: knows 298 of 299 peers (a count a node reports at most every 3 s)']);
  t.end();
});
