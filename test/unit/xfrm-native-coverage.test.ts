// The native encoder (native/xfrm_encode.cc) must cover what the daemon really sends: every add and update the
// planner and the diff produce for an IPv4 cluster, on a first apply and on a rotation. The encoder reads the ops'
// fields by name and silently leaves anything it does not recognise to the TypeScript codec, so a renamed field
// in src/xfrm/types.ts would keep every byte correct while sending everything down the slow path; this test fails
// then. IPv6 ops are the documented exception (the encoder covers IPv4 only). Skips when the addon is not built.
import t from 'tap';
import { KeyHistory } from '../../src/keys/key-history.js';
import type { NodeInfo } from '../../src/model/node.js';
import { planXfrm } from '../../src/ipsec/planner.js';
import { diffXfrm, type KernelXfrm, type XfrmDiff } from '../../src/ipsec/xfrm-diff.js';
import { describeOp } from '../../src/xfrm/identity.js';
import { addonXfrmEncode, NATIVE_ENCODE_ROOM } from '../../src/xfrm/netlink-addon.js';
import type { XfrmOp } from '../../src/xfrm/types.js';
import { makeKey, makeNode } from '../fakes/ipsec-fixtures.js';

const native = addonXfrmEncode();
const skip = native ? false : 'addon not built';

/** Whether the native encoder encodes this op by itself. */
function nativeEncodes(op: XfrmOp): boolean {
  const out = new Uint8Array(2 * NATIVE_ENCODE_ROOM);
  return native?.([op], 0, 1, Uint32Array.of(1), out, new Uint32Array(1)) === 1;
}

/** The adds and updates of a diff (deletions are small messages the TypeScript codec writes). */
function writes(diff: XfrmDiff): XfrmOp[] {
  return [...diff.installs, ...diff.policies].map((d) => d.op).filter((op) => !op.kind.startsWith('delete'));
}

function plan(local: NodeInfo, peers: NodeInfo[], spis: number[]): ReturnType<typeof planXfrm> {
  const peerIds = new Map(peers.map((p, i) => [p.name, i + 1]));
  return planXfrm({ local, peers, keys: KeyHistory.of(spis.map(makeKey)), peerIds });
}

function installed(p: ReturnType<typeof planXfrm>): KernelXfrm {
  return { states: p.states.map((s) => s.state), policies: p.policies.map((x) => x.policy) };
}

t.test('IPv4: every add and update of a first apply and of a rotation is encoded natively', { skip }, (t) => {
  const local = makeNode(1);
  const peers = [2, 3, 4, 5].map((i) => makeNode(i));
  const first = plan(local, peers, [1]);
  const fresh = writes(diffXfrm({ states: [], policies: [] }, first));
  t.equal(fresh.length, first.states.length + first.policies.length, 'a first apply adds every planned object');
  t.same(
    fresh.filter((op) => !nativeEncodes(op)).map(describeOp),
    [],
    `all ${fresh.length} ops of a first apply (addState, addPolicy)`,
  );

  const rotated = plan(
    local,
    peers.map((p) => ({ ...p, spi: 2 })),
    [1, 2],
  );
  const rotation = writes(diffXfrm(installed(first), rotated));
  t.same(
    [...new Set(rotation.map((op) => op.kind))].sort(),
    ['addState', 'updatePolicy'],
    'a rotation adds the new SAs and switches the out policies in place',
  );
  t.same(rotation.filter((op) => !nativeEncodes(op)).map(describeOp), [], `all ${rotation.length} ops of a rotation`);
  t.end();
});

t.test('dual stack: the IPv4 ops go native, the IPv6 ones to the TypeScript codec', { skip }, (t) => {
  const node = (i: number): NodeInfo =>
    makeNode(i, {
      addresses: [`198.18.0.${i}`, `fd00:198::${i}`],
      podCIDRs: [`10.244.${i}.0/24`, `fd00:10:244:${i}::/64`],
    });
  const ops = writes(diffXfrm({ states: [], policies: [] }, plan(node(1), [node(2), node(3)], [1])));
  const family = (op: XfrmOp): number => ('state' in op ? op.state.family : op.policy.selector.family);
  t.ok(ops.some((op) => family(op) === 6) && ops.some((op) => family(op) === 4), 'both families planned');
  t.same(
    ops.filter((op) => nativeEncodes(op) !== (family(op) === 4)).map(describeOp),
    [],
    'native exactly for the IPv4 ops',
  );
  t.end();
});
