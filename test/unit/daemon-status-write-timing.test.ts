// When a node writes its KmeshNodeInfo status: what peers act on at once, what the cluster view reports at most once
// per reporting interval (which grows with the cluster), nothing when nothing changed.
import t from 'tap';
import { statusWrite } from '../../src/daemon/status-write-timing.js';
import {
  MAX_REPORT_INTERVAL_MS,
  nodeKeyStatus,
  nodeKeyStatusJson,
  REPORT_MS_PER_PEER,
  reportIntervalMs,
  type NodeKeyStatus,
} from '../../src/model/node-key-status.js';

const base: NodeKeyStatus = nodeKeyStatus({
  heldSpis: [1, 2],
  sendSpis: [2],
  keyProblem: '',
  notReady: [],
  lastRotation: { spi: 2, seenAt: '2026-12-07T08:00:00.000Z' },
  peerCount: 4999,
  failingPeers: [],
});

t.test('the reporting interval grows with the peers, up to its cap', (t) => {
  t.equal(reportIntervalMs(0), 0);
  t.equal(reportIntervalMs(2), 2 * REPORT_MS_PER_PEER, 'a small cluster: at once, or nearly');
  t.equal(reportIntervalMs(4999), 4999 * REPORT_MS_PER_PEER);
  t.equal(reportIntervalMs(1_000_000), MAX_REPORT_INTERVAL_MS);
  t.equal(reportIntervalMs(-3), 0);
  t.end();
});

t.test('nothing published yet, or unchanged', (t) => {
  t.same(statusWrite(undefined, base, undefined, 0, 4999), { kind: 'now', why: 'first' });
  t.same(statusWrite(undefined, base, 1000, 1001, 4999), { kind: 'now', why: 'first' }, 'none that reads: at once');
  t.same(statusWrite(base, { ...base }, 0, 1, 4999), { kind: 'none' });
  t.end();
});

// Every field of the status, changed alone (a list field grown and shrunk), and how it is written. base holds
// SPIs 1 and 2 and sends with 2, its newest.
const changes: [string, Partial<NodeKeyStatus>, 'protocol' | 'worse' | 'report'][] = [
  ['heldSpis', { heldSpis: [1, 2, 3] }, 'protocol'],
  ['heldSpis', { heldSpis: [2] }, 'report'],
  ['highestSpi', { highestSpi: 3 }, 'protocol'],
  ['sendSpis', { sendSpis: [1, 2] }, 'protocol'],
  ['sendSpis', { sendSpis: [] }, 'protocol'],
  ['keyProblem', { keyProblem: 'the secret is unreadable' }, 'protocol'],
  ['lastRotation', { lastRotation: { spi: 2, seenAt: base.lastRotation?.seenAt ?? '', convergedAt: 'x' } }, 'protocol'],
  ['notReady', { notReady: 'xfrm: add state refused' }, 'worse'],
  ['peerCount', { peerCount: 5000 }, 'report'],
  ['failingPeerCount', { failingPeerCount: 1 }, 'worse'],
  ['failingPeers', { failingPeers: [{ name: 'node-7', reason: 'no underlay address family in common' }] }, 'report'],
];

t.test('every field of the status is written at once or as a report', (t) => {
  // base has every field (lastRotation too); what the status is written as has no other.
  const fields = Object.keys(base);
  const written = nodeKeyStatusJson({
    ...base,
    keyProblem: 'k',
    notReady: 'n',
    failingPeers: [{ name: 'a', reason: 'b' }],
  });
  t.same(Object.keys(written).sort(), [...fields].sort(), 'the status is written as these fields');
  t.same(
    [...new Set(changes.map(([f]) => f))].sort(),
    [...fields].sort(),
    'the cases cover every field the status has',
  );
  for (const [field, change, how] of changes) {
    const next = { ...base, ...change };
    if (how !== 'report') {
      t.same(statusWrite(base, next, 1000, 1001, 4999), { kind: 'now', why: how }, `${field}: at once (${how})`);
    } else {
      t.same(statusWrite(base, next, 1000, 1001, 4999), { kind: 'later', inMs: 49_989 }, `${field}: deferred`);
      t.same(statusWrite(base, next, 1000, 50_990, 4999), { kind: 'now', why: 'report' }, `${field}: due`);
      t.same(statusWrite(base, next, undefined, 5, 4999), { kind: 'now', why: 'report' }, `${field}: no write yet`);
    }
  }
  t.same(
    statusWrite(base, { ...base, lastRotation: undefined }, 1000, 1001, 4999),
    { kind: 'now', why: 'protocol' },
    'a rotation dropped',
  );
  t.same(
    statusWrite({ ...base, lastRotation: undefined }, base, 1000, 1001, 4999),
    { kind: 'now', why: 'protocol' },
    'a rotation added',
  );
  // The SPIs sent with: an SPI dropped is the acknowledgement peers retire on; an old SPI added is one a peer may
  // be about to retire; the newest held SPI added is one no peer retires (none advertises above its newest).
  const rotating = { ...base, sendSpis: [1] };
  t.same(
    statusWrite(rotating, { ...rotating, sendSpis: [1, 2] }, 1000, 1001, 4999),
    { kind: 'later', inMs: 49_989 },
    'the newest held SPI added to the SPIs sent with: deferred',
  );
  t.same(
    statusWrite(rotating, { ...rotating, sendSpis: [2] }, 1000, 1001, 4999),
    { kind: 'now', why: 'protocol' },
    'the newest added and the old one dropped: at once',
  );
  t.same(
    statusWrite(
      { ...rotating, heldSpis: [1, 2, 3], highestSpi: 3, sendSpis: [3] },
      { ...rotating, heldSpis: [1, 2, 3], highestSpi: 3, sendSpis: [2, 3] },
      1000,
      1001,
      4999,
    ),
    { kind: 'now', why: 'protocol' },
    'an SPI other than the newest added: at once',
  );
  t.same(
    statusWrite(
      { ...base, sendSpis: [] },
      { ...base, heldSpis: [2, 3], highestSpi: 3, sendSpis: [2] },
      1000,
      1001,
      4999,
    ),
    { kind: 'now', why: 'protocol' },
    'a key added (at once) while the old newest is added to the SPIs sent with',
  );
  t.same(
    statusWrite(base, { ...base, heldSpis: [2], peerCount: 5000 }, 1000, 1001, 4999),
    { kind: 'later', inMs: 49_989 },
    'an old SPI retired, the highest the same: a report',
  );
  t.same(
    statusWrite(base, { ...base, peerCount: 5000, sendSpis: [1, 2] }, 1000, 1001, 4999),
    { kind: 'now', why: 'protocol' },
    'a report with a protocol change goes at once',
  );
  // Worse is at once; better, or other news of a problem, waits (a late one holds the verdict back).
  const unready = { ...base, notReady: 'no IPsec key' };
  const failing = { ...base, failingPeerCount: 1, failingPeers: [{ name: 'node-7', reason: 'r' }] };
  const later = { kind: 'later', inMs: 49_989 };
  t.same(statusWrite(unready, base, 1000, 1001, 4999), later, 'ready again: deferred');
  t.same(statusWrite(unready, { ...base, notReady: 'other' }, 1000, 1001, 4999), later, 'another reason: deferred');
  t.same(statusWrite(failing, base, 1000, 1001, 4999), later, 'no failing peer any more: deferred');
  t.same(
    statusWrite(failing, { ...failing, failingPeerCount: 2 }, 1000, 1001, 4999),
    later,
    'one more failing peer: deferred',
  );
  t.same(
    statusWrite(base, { ...base, peerCount: 3 }, 1000, 1001, 2),
    { kind: 'later', inMs: 19 },
    'two peers: 20 ms apart',
  );
  t.end();
});
