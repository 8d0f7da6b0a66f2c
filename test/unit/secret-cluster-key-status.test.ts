// The cluster-wide verdict of `kmeshctl ipsec status`: converged only when every node advertises the Secret's
// SPI, sends only with it and reports no problem (a node not ready to encrypt lags whatever its SPIs say);
// otherwise each lagging node and why.
import t from 'tap';
import { clusterKeyStatus, clusterKeyStatusJson, formatClusterKeyStatus } from '../../src/secret/cluster-key-status.js';

function node(name: string, spi: number, status?: Record<string, unknown>) {
  return { metadata: { name }, spec: { spi, addresses: [], bootID: 'b', podCIDRS: [] }, ...(status ? { status } : {}) };
}

const done = (held: number[], send: number[]) => ({
  heldSpis: held,
  highestSpi: Math.max(...held),
  sendSpis: send,
  lastRotation: { spi: 7, seenAt: '2026-01-01T00:00:00.000Z', convergedAt: '2026-01-01T00:00:02.000Z' },
  peerCount: 2,
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
  const gone = clusterKeyStatus(7, [node('a', 7, done([7], [7])), node('b', 7, done([7], [7]))]);
  t.equal(gone.verdict, 'converged on SPI 7');
  t.same(gone.oldSpisHeld, []);
  const text = formatClusterKeyStatus(gone, 'Secret kmesh-system/kmesh-ipsec');
  t.match(
    text,
    /^Secret Secret kmesh-system\/kmesh-ipsec: SPI 7\nNODE +ADVERTISED +HELD +SENDING +LAST ROTATION +CONVERGED AT +FAILING PEERS\n/,
  );
  t.match(text, /\na +7 +7 +7 +SPI 7 +2026-01-01T00:00:02.000Z +0\n/);
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
    node('a', 7, done([6, 7], [6, 7])),
    node('b', 6, done([6, 7], [6])),
    node('c', 7),
    node('d', 7, { ...done([7, 8], [7]) }),
    node('e', 7, { ...done([7], [7]), keyProblem: 'secret key refused (SPI 7): ...' }),
    node('f', 7, { ...done([7], [7]), failingPeerCount: 3, failingPeers: [{ name: 'x', reason: 'EEXIST' }] }),
    node('g', 7, { heldSpis: 'bad' }),
    node('h', 7, { ...done([7], [7]), notReady: 'datapath: attach encrypt to vp0: ENOENT (+1 more)' }),
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
