import t from 'tap';
import { allocatePeerIds, peerIdOfInboundState, recoverPeerIds } from '../../src/ipsec/peer-ids.js';
import type { XfrmState } from '../../src/xfrm/types.js';

function inbound(src: string, id: number, extra: Partial<XfrmState> = {}): XfrmState {
  return {
    family: 4,
    src,
    dst: '198.18.0.1',
    spi: 1,
    proto: 50,
    mode: 'tunnel',
    reqid: 0x6b6d,
    esn: true,
    replayWindow: 1024,
    mark: { value: ((id << 16) | 0xd0) >>> 0, mask: 0xffff00ff },
    ...extra,
  };
}

t.test('allocation keeps ids, gives new peers the lowest free id in name order, releases departed peers', (t) => {
  const first = allocatePeerIds(new Map(), ['c', 'a', 'b']);
  t.same(
    [...first.ids],
    [
      ['a', 1],
      ['b', 2],
      ['c', 3],
    ],
  );
  const second = allocatePeerIds(first.ids, ['c', 'd', 'a']);
  t.same([...second.ids].sort(), [
    ['a', 1],
    ['c', 3],
    ['d', 2],
  ]);
  t.same(allocatePeerIds(second.ids, ['c', 'd', 'a']).ids, second.ids, 'stable for the same peers');
  t.end();
});

t.test('allocation repairs bad previous data and reports exhaustion', (t) => {
  const repaired = allocatePeerIds(
    new Map([
      ['a', 5],
      ['b', 5],
      ['c', 0],
      ['d', 70000],
    ]),
    ['a', 'b', 'c', 'd'],
  );
  t.same([...repaired.ids].sort(), [
    ['a', 5],
    ['b', 1],
    ['c', 2],
    ['d', 3],
  ]);
  const many = Array.from({ length: 65537 }, (_, i) => `n${String(i).padStart(6, '0')}`);
  const full = allocatePeerIds(new Map(), many);
  t.equal(full.ids.size, 65535);
  t.same(full.unassigned, ['n065535', 'n065536']);
  t.end();
});

t.test('peer id of an inbound SA: only ours with the inbound mark layout', (t) => {
  t.equal(peerIdOfInboundState(inbound('198.18.0.2', 7)), 7);
  t.equal(peerIdOfInboundState(inbound('198.18.0.2', 7, { reqid: 1 })), undefined, 'foreign reqid');
  t.equal(peerIdOfInboundState(inbound('198.18.0.2', 7, { mark: { value: 0xd0, mask: 0xff } })), undefined);
  t.equal(peerIdOfInboundState(inbound('198.18.0.2', 7, { mark: { value: 0xe0, mask: 0xff } })), undefined);
  t.equal(peerIdOfInboundState({ ...inbound('198.18.0.2', 1), mark: { value: 0xd0, mask: 0xffff00ff } }), undefined);
  t.end();
});

t.test('recovery after restart: source address -> id, lowest id wins, one id per peer', (t) => {
  const states = [
    inbound('198.18.0.2', 4),
    inbound('198.18.0.2', 4, { spi: 2 }),
    inbound('198.18.0.3', 9),
    inbound('198.18.0.3', 2, { spi: 2 }),
    inbound('fd00::5', 6, { family: 6, dst: 'fd00::1' }),
    inbound('198.18.0.99', 1),
    inbound('198.18.0.7', 3, { reqid: 12 }),
  ];
  const recovered = recoverPeerIds(states, [
    { name: 'b', addresses: ['198.18.0.2'] },
    { name: 'c', addresses: ['198.18.0.3'] },
    { name: 'e', addresses: ['198.18.0.55', 'fd00:0::5'] },
    { name: 'g', addresses: ['198.18.0.7'] },
  ]);
  t.same(
    [...recovered],
    [
      ['b', 4],
      ['c', 2],
      ['e', 6],
    ],
  );
  const clash = recoverPeerIds(
    [inbound('198.18.0.2', 4)],
    [
      { name: 'x', addresses: ['198.18.0.2'] },
      { name: 'y', addresses: ['198.18.0.2'] },
    ],
  );
  t.same([...clash], [['x', 4]]);
  t.end();
});

t.test('the same peers again: the previous allocation itself; any other set: as if allocated afresh', (t) => {
  const first = allocatePeerIds(new Map(), ['c', 'a', 'b']);
  const again = allocatePeerIds(first.ids, ['b', 'c', 'a']);
  t.equal(again.ids, first.ids, 'the same peers in another order: the very map');
  t.same(again.unassigned, []);
  // The same count with a name twice: a peer left, and its id is released.
  const twice = allocatePeerIds(first.ids, ['a', 'a', 'b']);
  t.not(twice.ids, first.ids);
  t.same([...twice.ids].sort(), [
    ['a', 1],
    ['b', 2],
  ]);
  t.same(allocatePeerIds(first.ids, ['a', 'b', 'd']).ids.get('d'), 3, 'a new peer takes the released id');
  // A map not made by allocatePeerIds (recovered from the kernel, or given by a caller) is checked as always.
  const handMade = new Map([
    ['a', 5],
    ['b', 5],
  ]);
  const repaired = allocatePeerIds(handMade, ['a', 'b']);
  t.not(repaired.ids, handMade);
  t.same([...repaired.ids].sort(), [
    ['a', 5],
    ['b', 1],
  ]);
  // After a check that stopped half way, the scratch it marked is clear: the next check still sees each id once.
  t.equal(allocatePeerIds(first.ids, ['c', 'a', 'b']).ids, first.ids);
  t.end();
});
