import t from 'tap';
import type { Test } from 'tap';
import { derivePairKey } from '../../src/keys/derive.js';
import { KeyHistory } from '../../src/keys/key-history.js';
import type { NodeInfo } from '../../src/model/node.js';
import { BLOCK_POLICY_PRIORITY, KMESH_REQID, PEER_POLICY_PRIORITY } from '../../src/ipsec/ownership.js';
import { planXfrm, type XfrmPlan } from '../../src/ipsec/planner.js';
import { lookupMark, policyIdentity, stateBucket } from '../../src/xfrm/identity.js';
import { makeKey, makeNode } from '../fakes/ipsec-fixtures.js';

const keys1 = KeyHistory.of([makeKey(1)]);

function plan(local: NodeInfo, peers: NodeInfo[], keys = keys1): XfrmPlan {
  const peerIds = new Map(peers.map((p, i) => [p.name, i + 1]));
  return planXfrm({ local, peers, keys, peerIds });
}

function row(p: XfrmPlan['policies'][number]): string {
  const pol = p.policy;
  const tmpl = pol.templates.map((x) => `${x.src}>${x.dst}/spi${x.spi}`).join(',');
  return `${pol.dir} ${pol.selector.src}->${pol.selector.dst} mark ${pol.mark!.value.toString(16)}/${pol.mark!.mask.toString(16)} prio ${pol.priority} ${pol.action} ${tmpl}`;
}

function checkDistinct(t: Test, p: XfrmPlan): void {
  const stateIds = p.states.map((s) => `${stateBucket(s.state)}|${lookupMark(s.state.mark)}`);
  t.equal(new Set(stateIds).size, stateIds.length, 'no two SAs share a kernel identity');
  const policyIds = p.policies.map((x) => policyIdentity(x.policy));
  t.equal(new Set(policyIds).size, policyIds.length, 'no two policies share a kernel identity');
}

t.test('2 nodes: the exact table', (t) => {
  const a = makeNode(1);
  const b = makeNode(2);
  const p = plan(a, [b]);
  t.same(p.policies.map(row), [
    `out 0.0.0.0/0->0.0.0.0/0 mark e0/ff prio ${BLOCK_POLICY_PRIORITY} block `,
    `out 0.0.0.0/0->10.244.2.0/24 mark e0/ff prio ${PEER_POLICY_PRIORITY} allow 198.18.0.1>198.18.0.2/spi1`,
    `in 10.244.2.0/24->10.244.1.0/24 mark d0/ff prio ${PEER_POLICY_PRIORITY} allow 198.18.0.2>198.18.0.1/spi0`,
    `fwd 10.244.2.0/24->10.244.1.0/24 mark d0/ff prio ${PEER_POLICY_PRIORITY} allow 198.18.0.2>198.18.0.1/spi0`,
  ]);
  const [inbound, outbound] = p.states;
  t.match(inbound, {
    owner: 'node-02',
    direction: 'inbound',
    state: {
      family: 4,
      src: '198.18.0.2',
      dst: '198.18.0.1',
      spi: 1,
      proto: 50,
      mode: 'tunnel',
      reqid: KMESH_REQID,
      mark: { value: 0x000100d0, mask: 0xffff00ff },
      outputMark: { value: 0xd0, mask: 0xffff00ff },
      esn: true,
      replayWindow: 1024,
      aead: { name: 'rfc4106(gcm(aes))', icvBits: 128 },
    },
  });
  t.match(outbound, {
    direction: 'outbound',
    state: {
      src: '198.18.0.1',
      dst: '198.18.0.2',
      spi: 1,
      mark: { value: 0xe0, mask: 0xff },
      esn: true,
      replayWindow: 1024,
    },
  });
  t.equal(outbound!.state.outputMark, undefined);
  const psk = makeKey(1).key;
  t.same(
    outbound!.state.aead!.key,
    derivePairKey(psk, { ip: '198.18.0.1', bootID: a.bootID }, { ip: '198.18.0.2', bootID: b.bootID }),
  );
  t.same(
    inbound!.state.aead!.key,
    derivePairKey(psk, { ip: '198.18.0.2', bootID: b.bootID }, { ip: '198.18.0.1', bootID: a.bootID }),
  );
  t.same(p.peers, [
    {
      name: 'node-02',
      advertisedSpi: 1,
      planned: true,
      peerId: 1,
      sendSpi: 1,
      tunnels: p.peers[0]!.tunnels,
      reasons: [],
    },
  ]);
  t.same(p.peerAddressIds, [{ address: '198.18.0.2', peerId: 1 }]);
  t.end();
});

t.test("each side's outbound SA is the other side's inbound SA (same key bytes)", (t) => {
  const a = makeNode(1);
  const b = makeNode(2);
  const pa = plan(a, [b]);
  const pb = plan(b, [a]);
  const aOut = pa.states.find((s) => s.direction === 'outbound')!.state;
  const bIn = pb.states.find((s) => s.direction === 'inbound')!.state;
  t.equal(aOut.src, bIn.src);
  t.equal(aOut.dst, bIn.dst);
  t.ok(aOut.aead!.key.equals(bIn.aead!.key));
  t.end();
});

t.test('3 nodes: distinct inbound SAs per peer, per-peer in/fwd selectors, one block policy', (t) => {
  const p = plan(makeNode(1), [makeNode(2), makeNode(3)]);
  const inbound = p.states
    .filter((s) => s.direction === 'inbound')
    .map((s) => [s.state.src, s.state.dst, s.state.spi, s.state.mark!.value]);
  t.same(inbound, [
    ['198.18.0.2', '198.18.0.1', 1, 0x000100d0],
    ['198.18.0.3', '198.18.0.1', 1, 0x000200d0],
  ]);
  t.same(
    p.policies.filter((x) => x.role === 'fwd').map((x) => `${x.policy.selector.src}->${x.policy.selector.dst}`),
    ['10.244.2.0/24->10.244.1.0/24', '10.244.3.0/24->10.244.1.0/24'],
  );
  t.equal(p.policies.filter((x) => x.role === 'block').length, 1);
  checkDistinct(t, p);
  t.end();
});

t.test('10 nodes: 9 peers x (2 SAs, 3 policies) + block, all identities distinct', (t) => {
  const peers = Array.from({ length: 9 }, (_, i) => makeNode(i + 2));
  const p = plan(makeNode(1), peers);
  t.equal(p.states.length, 18);
  t.equal(p.policies.length, 28);
  t.equal(new Set(p.states.filter((s) => s.direction === 'inbound').map((s) => s.state.mark!.value)).size, 9);
  checkDistinct(t, p);
  t.end();
});

t.test('dual stack: one tunnel per family, pairing addresses and CIDRs by family, a block policy per family', (t) => {
  const a = makeNode(1, {
    addresses: ['198.18.0.1', 'fd00:198::1'],
    podCIDRs: ['10.244.1.0/24', 'fd00:10:244:1::/64'],
  });
  const b = makeNode(2, {
    addresses: ['fd00:198::2', '198.18.0.2'],
    podCIDRs: ['fd00:10:244:2::/64', '10.244.2.0/24'],
  });
  const p = plan(a, [b]);
  t.same(p.policies.map(row), [
    `out 0.0.0.0/0->0.0.0.0/0 mark e0/ff prio ${BLOCK_POLICY_PRIORITY} block `,
    `out ::/0->::/0 mark e0/ff prio ${BLOCK_POLICY_PRIORITY} block `,
    `out 0.0.0.0/0->10.244.2.0/24 mark e0/ff prio ${PEER_POLICY_PRIORITY} allow 198.18.0.1>198.18.0.2/spi1`,
    `in 10.244.2.0/24->10.244.1.0/24 mark d0/ff prio ${PEER_POLICY_PRIORITY} allow 198.18.0.2>198.18.0.1/spi0`,
    `fwd 10.244.2.0/24->10.244.1.0/24 mark d0/ff prio ${PEER_POLICY_PRIORITY} allow 198.18.0.2>198.18.0.1/spi0`,
    `out ::/0->fd00:10:244:2::/64 mark e0/ff prio ${PEER_POLICY_PRIORITY} allow fd00:198::1>fd00:198::2/spi1`,
    `in fd00:10:244:2::/64->fd00:10:244:1::/64 mark d0/ff prio ${PEER_POLICY_PRIORITY} allow fd00:198::2>fd00:198::1/spi0`,
    `fwd fd00:10:244:2::/64->fd00:10:244:1::/64 mark d0/ff prio ${PEER_POLICY_PRIORITY} allow fd00:198::2>fd00:198::1/spi0`,
  ]);
  t.same(
    p.states.map((s) => [s.state.family, s.direction, s.state.src, s.state.dst]),
    [
      [4, 'inbound', '198.18.0.2', '198.18.0.1'],
      [4, 'outbound', '198.18.0.1', '198.18.0.2'],
      [6, 'inbound', 'fd00:198::2', 'fd00:198::1'],
      [6, 'outbound', 'fd00:198::1', 'fd00:198::2'],
    ],
  );
  t.same(p.peerAddressIds, [
    { address: '198.18.0.2', peerId: 1 },
    { address: 'fd00:198::2', peerId: 1 },
  ]);
  checkDistinct(t, p);
  t.end();
});

t.test(
  'several pod CIDRs per family: out per peer CIDR, in/fwd per (peer CIDR, local CIDR) pair; extra addresses unused',
  (t) => {
    const a = makeNode(1, { podCIDRs: ['10.244.1.0/24', '10.245.1.0/24'] });
    const b = makeNode(2, { addresses: ['198.18.0.2', '198.18.1.2'], podCIDRs: ['10.244.2.0/24', '10.245.2.0/24'] });
    const p = plan(a, [b]);
    t.equal(p.policies.filter((x) => x.role === 'out').length, 2);
    t.same(
      p.policies.filter((x) => x.role === 'in').map((x) => `${x.policy.selector.src}->${x.policy.selector.dst}`),
      [
        '10.244.2.0/24->10.244.1.0/24',
        '10.244.2.0/24->10.245.1.0/24',
        '10.245.2.0/24->10.244.1.0/24',
        '10.245.2.0/24->10.245.1.0/24',
      ],
    );
    t.notOk(
      p.states.some((s) => s.state.src === '198.18.1.2' || s.state.dst === '198.18.1.2'),
      'first address of the family is the tunnel endpoint',
    );
    checkDistinct(t, p);
    t.end();
  },
);

t.test('families without a tunnel: note for a CIDR family, rejection when nothing is shared', (t) => {
  const a = makeNode(1);
  const v6only = makeNode(2, { addresses: ['fd00:198::2'], podCIDRs: ['fd00:10:244:2::/64'] });
  const mixed = makeNode(3, { podCIDRs: ['10.244.3.0/24', 'fd00:10:244:3::/64'] });
  const p = plan(a, [v6only, mixed]);
  t.same(
    p.peers.map((x) => [x.name, x.planned, x.reasons]),
    [
      ['node-02', false, ['no underlay address family in common with the local node']],
      [
        'node-03',
        true,
        [
          'pod CIDR fd00:10:244:3::/64 is not encrypted: no IPv6 underlay address on the local node (marked traffic to it is blocked)',
        ],
      ],
    ],
  );
  t.end();
});

t.test('two held keys: SAs for both SPIs, out template uses the SPI chosen for the peer', (t) => {
  const keys = KeyHistory.of([makeKey(1), makeKey(2)]);
  const p = plan(makeNode(1), [makeNode(2, { spi: 1 }), makeNode(3, { spi: 2 })], keys);
  t.same(
    p.states.map((s) => `${s.owner} ${s.direction} ${s.state.spi}`),
    [
      'node-02 inbound 1',
      'node-02 outbound 1',
      'node-02 inbound 2',
      'node-02 outbound 2',
      'node-03 inbound 1',
      'node-03 outbound 1',
      'node-03 inbound 2',
      'node-03 outbound 2',
    ],
  );
  t.same(
    p.policies.filter((x) => x.role === 'out').map((x) => [x.owner, x.policy.templates[0]!.spi, x.requires?.state.spi]),
    [
      ['node-02', 1, 1],
      ['node-03', 2, 2],
    ],
  );
  const s1 = p.states.find((s) => s.owner === 'node-02' && s.direction === 'outbound' && s.state.spi === 1)!;
  const s2 = p.states.find((s) => s.owner === 'node-02' && s.direction === 'outbound' && s.state.spi === 2)!;
  t.notOk(s1.state.aead!.key.equals(s2.state.aead!.key), 'each SPI has its own PSK and derived key');
  checkDistinct(t, p);
  t.end();
});

t.test('conflicting peers are skipped with reasons; good peers still planned; self ignored', (t) => {
  const p = plan(makeNode(1), [
    makeNode(1, { name: 'node-01' }),
    makeNode(2),
    makeNode(3, { addresses: ['198.18.0.2'] }),
    makeNode(4, { podCIDRs: ['10.244.0.0/16'] }),
    makeNode(5, { podCIDRs: ['10.244.1.128/25'] }),
    makeNode(6, { addresses: ['198.18.0.1'] }),
    makeNode(7),
    makeNode(7, { addresses: ['198.18.0.77'], podCIDRs: ['10.244.77.0/24'] }),
    makeNode(8, { podCIDRs: ['10.244.8.7/24'] }),
  ]);
  t.same(
    p.peers.map((x) => [x.name, x.planned, x.reasons[0] ?? '']),
    [
      ['node-02', true, ''],
      ['node-03', false, 'underlay address 198.18.0.2 is also used by node node-02'],
      ['node-04', false, 'pod CIDR 10.244.0.0/16 overlaps 10.244.1.0/24 of the local node node-01'],
      ['node-05', false, 'pod CIDR 10.244.1.128/25 overlaps 10.244.1.0/24 of the local node node-01'],
      ['node-06', false, 'underlay address 198.18.0.1 is also used by the local node node-01'],
      ['node-07', false, 'more than one KmeshNodeInfo with this name'],
      ['node-07', true, ''],
      ['node-08', true, ''],
    ],
  );
  t.ok(
    p.policies.some((x) => x.policy.selector.dst === '10.244.8.0/24'),
    'host bits of a pod CIDR are cleared',
  );
  t.end();
});

t.test('a peer pod CIDR spanning a whole address space is turned away, not planned against the block policy', (t) => {
  // The local node has an IPv6 address (so an IPv6 block policy) but no IPv6 pod CIDR to overlap: planned, the peer's
  // out policy to ::/0 would take the block policy's identity and fail the plan of every peer.
  const local = makeNode(1, { addresses: ['198.18.0.1', 'fd00::1'] });
  const greedy = (family: 4 | 6): NodeInfo =>
    family === 4
      ? makeNode(2, { podCIDRs: ['0.0.0.0/0'] })
      : makeNode(2, { addresses: ['198.18.0.2', 'fd00::2'], podCIDRs: ['10.244.2.0/24', '::/0'] });
  for (const family of [4, 6] as const) {
    const p = plan(local, [greedy(family), makeNode(3)]);
    t.same(
      p.peers.map((x) => [x.name, x.planned, x.reasons]),
      [
        [
          'node-02',
          false,
          [`pod CIDR ${family === 4 ? '0.0.0.0/0' : '::/0'} spans the whole IPv${family} address space`],
        ],
        ['node-03', true, []],
      ],
      `IPv${family}`,
    );
    checkDistinct(t, p);
  }
  t.end();
});

t.test('no key: only block policies; no peer id: peer skipped', (t) => {
  const none = plan(makeNode(1), [makeNode(2)], KeyHistory.empty());
  t.same(none.states, []);
  t.same(
    none.policies.map((x) => x.role),
    ['block'],
  );
  t.same(none.peers[0]!.reasons, ['no IPsec key yet']);
  const noId = planXfrm({ local: makeNode(1), peers: [makeNode(2)], keys: keys1, peerIds: new Map() });
  t.same(noId.peers[0]!.reasons, ['no free peer id (all 65535 in use)']);
  t.same(noId.states, []);
  t.end();
});

t.test('options: replay window and reqid are configurable', (t) => {
  const p = planXfrm({
    local: makeNode(1),
    peers: [makeNode(2)],
    keys: keys1,
    peerIds: new Map([['node-02', 1]]),
    options: { replayWindow: 64, reqid: 9 },
  });
  t.same(
    p.states.map((s) => [s.state.replayWindow, s.state.reqid]),
    [
      [64, 9],
      [64, 9],
    ],
  );
  t.same(
    p.policies.filter((x) => x.role !== 'block').map((x) => x.policy.templates[0]!.reqid),
    [9, 9, 9],
  );
  t.end();
});

t.test('invalid local node throws a one-line error', (t) => {
  t.throws(() => plan(makeNode(1, { bootID: '' }), []), /local node: boot ID is empty/);
  t.throws(
    () => plan(makeNode(1, { podCIDRs: ['10.0.0.0/33'] }), []),
    /local node: pod CIDR "10.0.0.0\/33" is not a CIDR/,
  );
  t.throws(() => plan(makeNode(1, { addresses: [] }), []), /local node: no underlay addresses/);
  t.end();
});
