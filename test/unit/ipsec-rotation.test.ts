import t from 'tap';
import { chooseAdvertisedSpi, chooseSendSpi, EMPTY_RETIREMENT, planRetirement } from '../../src/ipsec/rotation.js';

t.test('send SPI: the peer advertised SPI when held, else the closest sensible one', (t) => {
  t.same(chooseSendSpi(2, [1, 2]), { spi: 2 });
  t.same(chooseSendSpi(1, [1, 2]), { spi: 1 }, 'lagging peer on an old SPI we hold');
  t.same(chooseSendSpi(3, [1, 2]), {
    spi: 2,
    note: 'peer advertises SPI 3, which we do not hold yet; sending with SPI 2',
  });
  t.same(chooseSendSpi(1, [2, 3]), {
    spi: 2,
    note: 'peer advertises SPI 1, which we no longer hold; sending with SPI 2',
  });
  t.same(chooseSendSpi(3, [1, 2, 5]), {
    spi: 5,
    note: 'peer advertises SPI 3, which we no longer hold; sending with SPI 5',
  });
  t.equal(chooseSendSpi(1, []), undefined);
  t.end();
});

t.test('advertised SPI: newest with inbound SAs for all peers, never going back', (t) => {
  t.equal(
    chooseAdvertisedSpi([1, 2], undefined, () => true),
    2,
  );
  t.equal(
    chooseAdvertisedSpi([1, 2], 1, (s) => s === 1),
    1,
    'new SPI not ready: keep the old one',
  );
  t.equal(
    chooseAdvertisedSpi([1, 2], 2, (s) => s === 1),
    2,
    'never back to an older SPI',
  );
  t.equal(
    chooseAdvertisedSpi([1, 2], undefined, () => false),
    undefined,
    'nothing ready: publish nothing',
  );
  t.equal(
    chooseAdvertisedSpi([2, 3], 1, () => false),
    undefined,
    'previous no longer held and nothing ready',
  );
  t.equal(
    chooseAdvertisedSpi([2, 3], 1, (s) => s === 2),
    2,
  );
  t.end();
});

t.test('retirement: every condition must hold, continuously, for the grace period', (t) => {
  const base = { held: [1, 2], localAdvertised: 2, peerAdvertised: [2, 2], sendSpis: [2, 2], graceMs: 100 };
  const d0 = planRetirement(EMPTY_RETIREMENT, { ...base, now: 1000 });
  t.same(d0.retire, []);
  t.same(d0.pending, [{ spi: 1, since: 1000, retireAt: 1100, waitingFor: { clock: 'grace' } }]);
  const d1 = planRetirement(d0.state, { ...base, now: 1099 });
  t.same(d1.retire, []);
  const d2 = planRetirement(d1.state, { ...base, now: 1100 });
  t.same(d2.retire, [1]);
  t.same(d2.pending, []);

  const blockers = [
    { localAdvertised: 1 },
    { localAdvertised: undefined },
    { peerAdvertised: [2, 1] },
    { sendSpis: [2, 1] },
  ];
  for (const blocker of blockers) {
    const d = planRetirement(d1.state, { ...base, ...blocker, now: 5000 });
    t.same(d.retire, [], `not retired with ${JSON.stringify(blocker)}`);
    t.same(d.state.supersededSince.size, 0, 'clock reset');
  }
  t.end();
});

t.test('retirement: the newest SPI is never retired, several old ones can go together, no peers is fine', (t) => {
  const d = planRetirement(EMPTY_RETIREMENT, {
    held: [1, 2, 3],
    localAdvertised: 3,
    peerAdvertised: [],
    sendSpis: [],
    now: 0,
    graceMs: 0,
  });
  t.same(d.retire, [1, 2]);
  const only = planRetirement(EMPTY_RETIREMENT, {
    held: [3],
    localAdvertised: 3,
    peerAdvertised: [4],
    sendSpis: [],
    now: 0,
    graceMs: 0,
  });
  t.same(only.retire, []);
  t.end();
});

t.test('retirement clock restarts when the condition breaks in between', (t) => {
  const base = { held: [1, 2], localAdvertised: 2, sendSpis: [2], graceMs: 100 };
  let state = planRetirement(EMPTY_RETIREMENT, { ...base, peerAdvertised: [2], now: 0 }).state;
  state = planRetirement(state, { ...base, peerAdvertised: [1], now: 50 }).state;
  const again = planRetirement(state, { ...base, peerAdvertised: [2], now: 120 });
  t.same(again.retire, []);
  t.same(again.pending, [{ spi: 1, since: 120, retireAt: 220, waitingFor: { clock: 'grace' } }]);
  t.end();
});

t.test('acknowledged retirement: an old SPI stays while any peer reports sending with it, however long', (t) => {
  const base = { held: [1, 2], localAdvertised: 2, peerAdvertised: [2, 2], sendSpis: [2], graceMs: 100 };
  const lagging = [
    { name: 'b', sending: [2] },
    { name: 'c', sending: [1] },
  ];
  let d = planRetirement(EMPTY_RETIREMENT, { ...base, peerReports: lagging, now: 0, ackTimeoutMs: 10_000 });
  t.same(d.pending, [{ spi: 1, since: 0, retireAt: 10_000, waitingFor: { peers: ['c'] } }]);
  d = planRetirement(d.state, { ...base, peerReports: lagging, now: 5_000, ackTimeoutMs: 10_000 });
  t.same(d.retire, [], 'kept far past the grace period: peer c still sends with it');
  const timer = planRetirement(d.state, { ...base, peerReports: lagging, now: 5_000, rule: 'timer' });
  t.same(timer.retire, [1], 'the old timer rule would have removed it under c');

  const caughtUp = [
    { name: 'b', sending: [2] },
    { name: 'c', sending: [2] },
  ];
  d = planRetirement(d.state, { ...base, peerReports: caughtUp, now: 6_000, ackFloorMs: 50 });
  t.same(d.retire, [], 'acknowledged: the floor starts');
  t.same(d.pending, [{ spi: 1, since: 0, retireAt: 6_050, waitingFor: { clock: 'floor' } }]);
  d = planRetirement(d.state, { ...base, peerReports: caughtUp, now: 6_050, ackFloorMs: 50 });
  t.same(d.retire, [1], 'gone once every peer acknowledged, for the floor');
  t.end();
});

t.test('acknowledged retirement: bounds and peers that report nothing', (t) => {
  const base = { held: [1, 2], localAdvertised: 2, peerAdvertised: [2, 2], sendSpis: [2], graceMs: 100 };
  const stuck = [
    { name: 'b', sending: [2] },
    { name: 'c', sending: [1, 2] },
  ];
  let d = planRetirement(EMPTY_RETIREMENT, { ...base, peerReports: stuck, now: 0, ackTimeoutMs: 1_000 });
  d = planRetirement(d.state, { ...base, peerReports: stuck, now: 999, ackTimeoutMs: 1_000 });
  t.same(d.retire, []);
  d = planRetirement(d.state, { ...base, peerReports: stuck, now: 1_000, ackTimeoutMs: 1_000 });
  t.same(d.retire, [1], 'a peer that never acknowledges is waited for at most the ack timeout');

  const silent = [
    { name: 'b', sending: [2] },
    { name: 'kmesh', sending: undefined },
  ];
  d = planRetirement(EMPTY_RETIREMENT, { ...base, peerReports: silent, now: 0, ackFloorMs: 10 });
  t.same(d.pending, [{ spi: 1, since: 0, retireAt: 100, waitingFor: { clock: 'grace' } }], 'silent peer: grace');
  d = planRetirement(d.state, { ...base, peerReports: silent, now: 100 });
  t.same(d.retire, [1]);

  const acked = [
    { name: 'b', sending: [2] },
    { name: 'c', sending: [2] },
  ];
  d = planRetirement(EMPTY_RETIREMENT, { ...base, graceMs: 20, peerReports: acked, now: 0, ackFloorMs: 5_000 });
  t.same(d.pending[0]?.retireAt, 20, 'the floor is never longer than the grace period');
  const fresh = planRetirement(EMPTY_RETIREMENT, { ...base, peerReports: acked, now: 7_000, ackFloorMs: 10 });
  t.same(fresh.retire, [], 'after a restart (empty clocks) the floor starts again: late, never early');
  t.end();
});
