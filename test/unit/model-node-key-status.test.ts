// The KmeshNodeInfo status a node publishes: bounded whatever the number of peers, read back exactly, bad
// fields named; and the report the daemon computes from a step (SPIs sent with err on "still sending").
import t from 'tap';
import {
  MAX_FAILING_PEERS,
  nodeKeyStatus,
  nodeKeyStatusJson,
  nodeKeyStatusUpToDate,
  parseNodeKeyStatus,
} from '../../src/model/node-key-status.js';
import { adoptRotation, nodeKeyReport } from '../../src/daemon/node-key-report.js';
import type { PeerStatus } from '../../src/daemon/ports.js';

t.test('bounded: 5,000 peers, 3,000 failing, give the same size as 8 failing', (t) => {
  const failing = (n: number) => Array.from({ length: n }, (_, i) => ({ name: `node-${i}`, reason: 'x'.repeat(500) }));
  const big = nodeKeyStatus({
    heldSpis: [3, 1, 2],
    sendSpis: [2, 2, 3],
    keyProblem: '',
    peerCount: 4999,
    failingPeers: failing(3000),
  });
  const small = nodeKeyStatus({
    heldSpis: [1, 2, 3],
    sendSpis: [2, 3],
    keyProblem: '',
    peerCount: 4999,
    failingPeers: failing(8),
  });
  t.equal(big.failingPeers.length, MAX_FAILING_PEERS);
  t.equal(big.failingPeerCount, 3000, 'the count stays exact');
  t.same(big.heldSpis, [1, 2, 3]);
  t.equal(big.highestSpi, 3);
  t.same(big.sendSpis, [2, 3]);
  t.ok(
    big.failingPeers.every((p) => p.reason.length === 200),
    'reasons cut to 200 characters',
  );
  const size = (x: typeof big) => JSON.stringify(nodeKeyStatusJson(x)).length;
  t.ok(size(big) - size(small) <= 32, `3,000 failing peers: ${size(big)} bytes, 8: ${size(small)} bytes`);
  t.ok(size(big) < 2500);
  t.end();
});

t.test('parse: round trip, absent, and bad fields named', (t) => {
  const s = nodeKeyStatus({
    heldSpis: [1, 2],
    sendSpis: [2],
    keyProblem: 'secret key refused (SPI 2): ...',
    lastRotation: { spi: 2, seenAt: '2026-01-01T00:00:00.000Z' },
    peerCount: 2,
    failingPeers: [{ name: 'b', reason: 'r' }],
  });
  const obj = { spec: { spi: 2 }, status: nodeKeyStatusJson(s) };
  t.same(parseNodeKeyStatus(obj), { ok: s });
  t.ok(nodeKeyStatusUpToDate(obj, s));
  t.notOk(nodeKeyStatusUpToDate(obj, { ...s, sendSpis: [1, 2] }));
  t.equal(parseNodeKeyStatus({ spec: { spi: 1 } }), undefined, 'Kmesh leaves status empty: no report');
  t.equal(parseNodeKeyStatus({ spec: { spi: 1 }, status: {} }), undefined);
  const bad: [unknown, RegExp][] = [
    [{ heldSpis: 'x' }, /status.heldSpis is not a list/],
    [{ heldSpis: [0] }, /status.heldSpis\[0\] is not an SPI/],
    [{ heldSpis: [1], sendSpis: [1.5] }, /status.sendSpis\[0\] is not an SPI/],
    [{ heldSpis: [1], highestSpi: -1 }, /status.highestSpi is not an SPI/],
    [{ heldSpis: [1], lastRotation: { spi: 1, seenAt: 'yesterday' } }, /lastRotation.seenAt is not a time/],
    [{ heldSpis: [1], failingPeers: [{ name: 'a' }] }, /failingPeers\[0\] needs a name and a reason/],
    [{ heldSpis: [1], peerCount: -2 }, /status.peerCount is not a count/],
    [{ heldSpis: [1], notReady: 7 }, /status.notReady is not a string/],
  ];
  for (const [status, msg] of bad) {
    const r = parseNodeKeyStatus({ status });
    t.ok(r !== undefined && 'error' in r && msg.test(r.error), `${JSON.stringify(status)} -> ${msg}`);
  }
  t.end();
});

function peer(name: string, outboundSpi: number | undefined, error = ''): PeerStatus {
  return { name, advertisedSpi: 2, outboundSpi, plannedSendSpi: outboundSpi, inboundSpis: [1, 2], peerId: 1, error };
}

t.test('report: SPIs sent with; a failing peer keeps what was reported before while it is held', (t) => {
  const ok = nodeKeyReport({
    heldSpis: [1, 2],
    peers: [peer('b', 2), peer('c', 2)],
    previousSending: [1],
    keyProblem: '',
    notReady: [],
    rotation: { spi: 2, seenAt: 0, convergedAt: 1500 },
  });
  t.same(ok.sendSpis, [2]);
  t.same(ok.lastRotation, { spi: 2, seenAt: '1970-01-01T00:00:00.000Z', convergedAt: '1970-01-01T00:00:01.500Z' });
  const failing = nodeKeyReport({
    heldSpis: [1, 2],
    peers: [peer('b', 2), peer('c', 2, 'EEXIST: out policy: ...')],
    previousSending: [1, 7],
    keyProblem: '',
    notReady: ['3 XFRM operations failed (c); first: c: out policy: EEXIST', 'datapath: attach encrypt to vp1: ENOENT'],
    rotation: undefined,
  });
  t.same(failing.sendSpis, [1, 2], 'SPI 1 may still be in the kernel: reported; 7 is not held any more');
  t.same(failing.failingPeers, [{ name: 'c', reason: 'EEXIST: out policy: ...' }]);
  t.equal(ok.notReady, '', 'ready: nothing to say (and left out of the JSON)');
  t.notOk('notReady' in nodeKeyStatusJson(ok));
  t.equal(failing.notReady, '3 XFRM operations failed (c); first: c: out policy: EEXIST (+1 more)');
  const long = nodeKeyReport({
    heldSpis: [1],
    peers: [],
    previousSending: undefined,
    keyProblem: '',
    notReady: ['x'.repeat(500), 'y', 'z'],
    rotation: undefined,
  });
  t.equal(long.notReady.length, 200, 'cut to 200 characters with the count kept');
  t.match(long.notReady, /x \(\+2 more\)$/);
  t.same(parseNodeKeyStatus({ status: nodeKeyStatusJson(failing) }), { ok: failing }, 'round trip');
  t.end();
});

t.test('a restarted daemon continues the rotation its published status tells of', (t) => {
  const own = {
    status: nodeKeyStatusJson(
      nodeKeyStatus({
        heldSpis: [2],
        sendSpis: [2],
        keyProblem: '',
        lastRotation: { spi: 2, seenAt: '2026-01-01T00:00:00.000Z', convergedAt: '2026-01-01T00:00:03.000Z' },
        peerCount: 0,
        failingPeers: [],
      }),
    ),
  };
  const fresh = { spi: 2, seenAt: Date.parse('2026-01-01T01:00:00Z'), convergedAt: undefined };
  t.same(adoptRotation(fresh, own), {
    spi: 2,
    seenAt: Date.parse('2026-01-01T00:00:00Z'),
    convergedAt: Date.parse('2026-01-01T00:00:03Z'),
  });
  t.same(adoptRotation({ ...fresh, spi: 3 }, own), { ...fresh, spi: 3 }, 'another rotation: nothing adopted');
  t.same(adoptRotation(fresh, {}), fresh);
  t.end();
});
