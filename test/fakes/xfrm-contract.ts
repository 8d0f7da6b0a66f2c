// The contract between FakeXfrmKernel (test/fakes/fake-xfrm-kernel.ts) and NetlinkXfrmKernel, as one script of
// XFRM ops run through both: every op's errno and, after every step, the dumped states and policies must be the
// same. test/host/xfrm-contract.test.ts runs the policy steps on the host kernel (no ESP there);
// test/vm/suites/xfrm-contract.test.ts runs every step in the VM. The steps cover what the reconciler relies on:
// identities and collisions (marks, masks, the wildcard state), deletes by lookup, replace/insert of policies,
// and what each refuses (the codec before sending, the kernel after).
import { execFileSync } from 'node:child_process';
import type { Test } from 'tap';
import { NetlinkXfrmKernel } from '../../src/xfrm/netlink-kernel.js';
import type { XfrmKernel, XfrmOp, XfrmPolicy, XfrmState } from '../../src/xfrm/types.js';
import { canonical } from '../host/xfrm-oracle.js';
import { FakeXfrmKernel } from './fake-xfrm-kernel.js';
import {
  aead,
  aeadKey,
  AEAD_NAME,
  espTemplate,
  makeBlockPolicy,
  makeInboundSa,
  makeInPolicy,
  makeOutboundSa,
  makeOutPolicy,
} from './xfrm-objects.js';

export interface ScriptStep {
  what: string;
  ops: XfrmOp[];
}

/**
 * What one step did: each op's errno, then the whole dump in an order-independent form, and whether the change
 * feed saw only the step's own accepted writes (refused ones change nothing and are announced by nobody).
 */
export interface StepOutcome {
  what: string;
  errnos: number[];
  states: string[];
  policies: string[];
  quiet: boolean;
}

const inbound = (peerId: number, src: string, over: Partial<XfrmState> = {}): XfrmState =>
  makeInboundSa({ src, mark: { value: ((peerId << 16) | 0xd0) >>> 0, mask: 0xffff00ff }, ...over });
const add = (state: XfrmState): XfrmOp => ({ kind: 'addState', state });
const del = (state: XfrmState): XfrmOp => ({ kind: 'deleteState', state });
const addP = (policy: XfrmPolicy): XfrmOp => ({ kind: 'addPolicy', policy });
const updP = (policy: XfrmPolicy): XfrmOp => ({ kind: 'updatePolicy', policy });
const delP = (policy: XfrmPolicy): XfrmOp => ({ kind: 'deletePolicy', policy });

const out2 = makeOutboundSa();
const in2 = inbound(1, '198.18.0.2');
const in3 = inbound(2, '198.18.0.3', { aead: aead(0x33) });
const out6 = makeOutboundSa({ family: 6, src: 'fd00:198:18::1', dst: 'fd00:198:18::2', aead: aead(0x61) });
/** Another tool's SA in our inbound bucket (dst 198.18.0.1, spi 1) with no mark: every lookup there hits it. */
const wildcard = makeInboundSa({ src: '192.0.2.1', reqid: 7, mark: undefined, outputMark: undefined, esn: false });

export const STATE_STEPS: ScriptStep[] = [
  { what: 'add SAs: outbound, two peers sharing (dst, spi) apart by mark, IPv6', ops: [out2, in2, in3, out6].map(add) },
  {
    what: 'collisions: same identity, same mark with another key, another peer id',
    ops: [
      add(out2),
      add({ ...in2, aead: aead(0x29) }),
      add(inbound(3, '198.18.0.4')),
      add({ ...out2, mark: { value: 0xe0, mask: 0xffff } }),
    ],
  },
  {
    what: 'an unmarked SA beside marked ones; after it every marked add in that bucket hits it',
    ops: [add(wildcard), add(inbound(4, '198.18.0.5'))],
  },
  {
    what: 'deletes go by lookup: a mark that hits, a miss, and a lookup hitting two SAs takes the newest',
    ops: [
      del({ ...out2, mark: { value: 0x1e0, mask: 0xfff } }),
      del(out2),
      del({ ...out6, mark: undefined }),
      del(in2),
      del(in2),
    ],
  },
  {
    what: 'a mark value with bits outside its mask: how it is stored, and which lookups find it',
    ops: [
      add(makeOutboundSa({ dst: '198.18.0.10', mark: { value: 0x1e0, mask: 0xff } })),
      add(makeOutboundSa({ dst: '198.18.0.10' })),
      del(makeOutboundSa({ dst: '198.18.0.10', mark: { value: 0x2e0, mask: 0xff } })),
      del(makeOutboundSa({ dst: '198.18.0.10', mark: { value: 0x1e0, mask: 0xff } })),
    ],
  },
  {
    what: 'refused: unknown AEAD, ICV length, key length, ESN without a window; by the codec: SPI 0, mixed families',
    ops: [
      add(makeOutboundSa({ dst: '198.18.0.7', aead: { name: 'rfc4106(gcm(nope))', key: aeadKey(1), icvBits: 128 } })),
      add(makeOutboundSa({ dst: '198.18.0.7', aead: { name: AEAD_NAME, key: aeadKey(1), icvBits: 100 } })),
      add(makeOutboundSa({ dst: '198.18.0.7', aead: { name: AEAD_NAME, key: Buffer.alloc(35, 1), icvBits: 128 } })),
      add(makeOutboundSa({ dst: '198.18.0.7', spi: 0 })),
      add(makeOutboundSa({ dst: 'fd00::7' })),
      add(makeOutboundSa({ dst: '198.18.0.7', replayWindow: 0 })),
    ],
  },
  {
    what: 'the other ICV lengths and key sizes rfc4106 has are accepted',
    ops: [
      add(makeOutboundSa({ dst: '198.18.0.8', aead: { name: AEAD_NAME, key: aeadKey(2), icvBits: 64 } })),
      add(makeOutboundSa({ dst: '198.18.0.9', aead: { name: AEAD_NAME, key: Buffer.alloc(20, 3), icvBits: 96 } })),
    ],
  },
];

const outA = makeOutPolicy();
const outB = makeOutPolicy({ selector: { family: 4, src: '0.0.0.0/0', dst: '10.244.3.0/24', proto: 0 } });
const inA = makeInPolicy();
const fwdA = makeInPolicy({ dir: 'fwd' });
const block4 = makeBlockPolicy();
const block6 = makeBlockPolicy({ selector: { family: 6, src: '::/0', dst: '::/0', proto: 0 } });
const out6P = makeOutPolicy({
  selector: { family: 6, src: '::/0', dst: 'fd00:10:244:2::/64', proto: 0 },
  templates: [espTemplate('fd00:198:18::1', 'fd00:198:18::2', 1, 6)],
});

export const POLICY_STEPS: ScriptStep[] = [
  {
    what: 'add policies: out, in, fwd, block per family, IPv6',
    ops: [outA, outB, inA, fwdA, block4, block6, out6P].map(addP),
  },
  {
    what: 'identity is (dir, selector, mark value & mask, mask): priority and templates do not make a new one',
    ops: [
      addP(outA),
      addP({ ...outA, priority: 50 }),
      addP({ ...outA, mark: { value: 0xe0, mask: 0xfff } }),
      addP({ ...outA, mark: { value: 0x1e0, mask: 0xff } }),
      addP({ ...outA, dir: 'fwd' }),
    ],
  },
  {
    what: 'update replaces one of the same identity and inserts one that is new',
    ops: [
      updP({ ...outA, priority: 90, templates: [espTemplate('198.18.0.1', '198.18.0.2', 2)] }),
      updP(makeOutPolicy({ selector: { family: 4, src: '0.0.0.0/0', dst: '10.244.4.0/24', proto: 0 } })),
    ],
  },
  {
    what: 'delete by identity: exact mark, an unmasked value and another mask miss, twice misses',
    ops: [
      delP({ ...outA, mark: { value: 0xe0, mask: 0xfff } }),
      delP({ ...outA, dir: 'fwd', mark: { value: 0x2e0, mask: 0xff } }),
      delP({ ...outB, mark: { value: 0xe0, mask: 0xffff } }),
      delP(outB),
      delP(outB),
    ],
  },
  {
    what: 'refused by the codec: host bits in a selector, mixed families, an unknown direction',
    ops: [
      addP(makeOutPolicy({ selector: { family: 4, src: '0.0.0.0/0', dst: '10.244.5.7/24', proto: 0 } })),
      addP(makeOutPolicy({ selector: { family: 4, src: '0.0.0.0/0', dst: 'fd00::/64', proto: 0 } })),
      addP({ ...outA, dir: 'sideways' as XfrmPolicy['dir'] }),
    ],
  },
];

/** Runs the steps through a kernel: each step's errnos and the dumps after it. */
export async function runScript(kernel: XfrmKernel, steps: readonly ScriptStep[]): Promise<StepOutcome[]> {
  const outcomes: StepOutcome[] = [];
  kernel.touchedSinceLastLook?.();
  for (const step of steps) {
    const results = await kernel.apply(step.ops);
    outcomes.push({
      what: step.what,
      errnos: results.map((r) => r.errno),
      states: canonical(await kernel.dumpStates()),
      policies: canonical(await kernel.dumpPolicies(), (p) => ({ ...p, index: undefined })),
      quiet: kernel.touchedSinceLastLook?.() === '',
    });
  }
  return outcomes;
}

/** Everything the script left behind, as delete ops (run after a script so the next one starts empty). */
export async function cleanupOps(kernel: XfrmKernel): Promise<XfrmOp[]> {
  return [
    ...(await kernel.dumpPolicies()).map((policy): XfrmOp => ({ kind: 'deletePolicy', policy })),
    ...(await kernel.dumpStates()).map((state): XfrmOp => ({ kind: 'deleteState', state })),
  ];
}

/**
 * Runs the steps through NetlinkXfrmKernel in `netns` (empty, ours) and through a fresh FakeXfrmKernel, and
 * asserts they agree step by step; first that the run is worth comparing (a refusal, and some `kept` left).
 */
export async function checkXfrmContract(
  t: Test,
  netns: string,
  steps: readonly ScriptStep[],
  kept: 'states' | 'policies',
): Promise<void> {
  const realKernel = new NetlinkXfrmKernel({ netns, watch: true });
  const fakeKernel = new FakeXfrmKernel();
  const real = await runScript(realKernel, steps);
  const fake = await runScript(fakeKernel, steps);
  t.ok(
    real.some((s) => s.errnos.some((e) => e !== 0)) && real.some((s) => s[kept].length > 0),
    `the script exercises refusals and leaves ${kept} to compare`,
  );
  t.ok(
    real.every((s) => s.quiet),
    'the change feed matches every accepted write of ours to its announcement, whatever else the batch held',
  );
  for (const [i, step] of real.entries()) t.same(fake[i], step, step.what);

  // Another tool's change: `ip xfrm policy add` here, seedPolicy for the fake (its stand-in for another tool).
  const other = makeOutPolicy({
    selector: { family: 4, src: '0.0.0.0/0', dst: '203.0.113.0/24', proto: 0 },
    priority: 4242,
    mark: undefined,
    templates: [],
  });
  execFileSync('ip', [
    '-n',
    netns,
    'xfrm',
    'policy',
    'add',
    'dir',
    'out',
    'src',
    '0.0.0.0/0',
    'dst',
    '203.0.113.0/24',
    'priority',
    '4242',
  ]);
  fakeKernel.seedPolicy(other);
  const realTouched = realKernel.touchedSinceLastLook();
  const fakeTouched = fakeKernel.touchedSinceLastLook();
  t.match(realTouched, /changed by someone else/, `netlink kernel: ${realTouched}`);
  t.match(fakeTouched, /changed by someone else/, `fake kernel: ${fakeTouched}`);
  t.same(
    canonical(await fakeKernel.dumpPolicies(), (p) => ({ ...p, index: undefined })),
    canonical(await realKernel.dumpPolicies(), (p) => ({ ...p, index: undefined })),
    "the fake's stand-in for the other tool's policy is what `ip` added",
  );
  const removed = await realKernel.apply([{ kind: 'deletePolicy', policy: other }]);
  await fakeKernel.apply([{ kind: 'deletePolicy', policy: other }]);
  t.same(
    removed.map((r) => r.errno),
    [0],
  );
  t.equal(realKernel.touchedSinceLastLook(), '', 'quiet again after our own write');
  t.equal(fakeKernel.touchedSinceLastLook(), '');
  execFileSync('ip', ['-n', netns, 'xfrm', 'policy', 'flush']);
  t.match(realKernel.touchedSinceLastLook(), /changed by someone else/, 'a flush by another tool is seen');
  realKernel.close();
}
