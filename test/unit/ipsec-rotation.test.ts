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
  t.same(d0.pending, [{ spi: 1, since: 1000, retireAt: 1100 }]);
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
  t.same(again.pending, [{ spi: 1, since: 120, retireAt: 220 }]);
  t.end();
});
