// An in-memory XfrmKernel standing in for NetlinkXfrmKernel in unit tests of everything above it (reconciler,
// controller, daemon). test/fakes/xfrm-contract.ts runs one op script through both and compares every result
// and dump (host: policies; VM: states too). It follows what the adapter and the kernel behind it do:
// - refusals: an op the adapter's codec cannot encode -> EINVAL with the codec's text (checked by encoding it);
//   an AEAD the kernel has no entry for (name, ICV length) -> ENOSYS; a key rfc4106 cannot take -> EINVAL.
// - marks are stored with the value masked (v & m), for states and policies.
// - states: lookups hit the newest state in the (family, dst, spi, proto) bucket whose mark matches
//   ((value&mask) & x.mask == x.value); add -> EEXIST on a hit; delete of a miss -> ESRCH (what the kernel
//   returns for SAs).
// - policies: identity (dir, selector, mark value & mask, mark mask), the mark stored masked; add -> EEXIST;
//   update replaces or inserts (XFRM_MSG_UPDPOLICY semantics); delete compares the given mark unmasked, a
//   miss -> ENOENT.
// Every op handed to apply() counts as one write. Failures can be injected per op, and `{ crypto: 'none' }`
// stands for a kernel without ESP/AEAD support (this project's host kernel): every SA it is asked to add is
// refused as that kernel refuses it (test/host/xfrm-no-esp.test.ts checks both give the same errno and text).

import { encodeDeletePolicy, encodeDeleteState, encodePolicy, encodeState } from '../../src/xfrm/netlink-codec.js';
import { policyIdentity, StateIndex, storedMark } from '../../src/xfrm/identity.js';
import type {
  XfrmKernel,
  XfrmMark,
  XfrmOp,
  XfrmOpResult,
  XfrmPolicy,
  XfrmState,
  XfrmTemplate,
} from '../../src/xfrm/types.js';

export const EINVAL = 22;
export const EEXIST = 17;
export const ENOENT = 2;
export const ESRCH = 3;

export const ENOSYS = 38;

/** rfc4106 key lengths the kernel accepts: AES-128/192/256 key + 4-byte salt. */
const RFC4106_KEY_BYTES = [20, 28, 36];
/** ICV lengths the kernel has an rfc4106 entry for (net/xfrm/xfrm_algo.c), in bits. */
const RFC4106_ICV_BITS = [64, 96, 128];

interface InjectedFailure {
  match: (op: XfrmOp) => boolean;
  errno: number;
  message: string | undefined;
  remaining: number;
}

// What the fake stores is built to weigh what the kernel's own copy would, not more (a scale bench holds 10,000
// SAs and 15,000 policies in it): clones field by field in one order (spread copies, {...p}, get a hidden class
// of their own per object once V8's clone cache gives up: ~330 of ~660 bytes per policy), keys copied into
// buffers of their own size (Buffer.from takes a slice of Node's shared 8 KiB pool, and a stored key keeps its
// whole pool alive: ~870 bytes per key), policies keyed by a flat identity string.

/** An exact-size copy of key bytes. */
function copyKey(key: Buffer): Buffer {
  const copy = Buffer.allocUnsafeSlow(key.length);
  key.copy(copy);
  return copy;
}

const copyMark = (m: XfrmMark): XfrmMark => ({ value: m.value, mask: m.mask });

function cloneState(s: XfrmState): XfrmState {
  const c: XfrmState = {
    family: s.family,
    src: s.src,
    dst: s.dst,
    spi: s.spi,
    proto: s.proto,
    mode: s.mode,
    reqid: s.reqid,
    esn: s.esn,
    replayWindow: s.replayWindow,
  };
  if (s.aead) c.aead = { name: s.aead.name, key: copyKey(s.aead.key), icvBits: s.aead.icvBits };
  if (s.mark) c.mark = copyMark(s.mark);
  if (s.outputMark) c.outputMark = copyMark(s.outputMark);
  return c;
}

const cloneTemplate = (t: XfrmTemplate): XfrmTemplate => ({
  family: t.family,
  src: t.src,
  dst: t.dst,
  proto: t.proto,
  mode: t.mode,
  reqid: t.reqid,
  spi: t.spi,
});

function clonePolicy(p: XfrmPolicy): XfrmPolicy {
  const { family, src, dst, proto } = p.selector;
  const c: XfrmPolicy = {
    dir: p.dir,
    selector: { family, src, dst, proto },
    priority: p.priority,
    action: p.action,
    templates: p.templates.map(cloneTemplate),
  };
  if (p.mark) c.mark = copyMark(p.mark);
  if (p.index !== undefined) c.index = p.index;
  return c;
}

/** policyIdentity as one flat string: a Map keeps its key as given, and the template's tree of ~10 concatenations weighs 3.5x its text. */
const policyKey = (p: Pick<XfrmPolicy, 'dir' | 'selector' | 'mark'>): string => policyIdentity(p).split('|').join('|');

/**
 * Why NetlinkXfrmKernel would not send this op: its codec's refusal (bad address or family, host bits in a
 * selector, SPI 0, an unknown mode or direction, ...), which the adapter reports as EINVAL with this text.
 */
function codecRefusal(op: XfrmOp): string | undefined {
  try {
    switch (op.kind) {
      case 'addState':
        encodeState('add', op.state, 1);
        break;
      case 'deleteState':
        encodeDeleteState(op.state, 1);
        break;
      case 'addPolicy':
      case 'updatePolicy':
        encodePolicy(op.kind === 'addPolicy' ? 'add' : 'update', op.policy, 1);
        break;
      case 'deletePolicy':
        encodeDeletePolicy(op.policy, 1);
        break;
    }
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}

/** What the kernel refuses of a well-formed SA: an AEAD it has no entry for, a key it cannot set, ESN without a window. */
function kernelRefusal(s: XfrmState): { errno: number; message: string } | undefined {
  if (s.aead) {
    if (s.aead.name !== 'rfc4106(gcm(aes))' || !RFC4106_ICV_BITS.includes(s.aead.icvBits)) {
      return { errno: ENOSYS, message: 'Requested AEAD algorithm not found' };
    }
    if (!RFC4106_KEY_BYTES.includes(s.aead.key.length)) return { errno: EINVAL, message: 'Invalid key length' };
  }
  if (s.esn && s.replayWindow <= 0) return { errno: EINVAL, message: 'ESN requires a replay window' };
  return undefined;
}

/** The kernel's answer to an SA when it has no AEAD algorithm at all (no ESP, no GCM in /proc/crypto). */
export const NO_AEAD_REFUSAL = { errno: ENOSYS, message: 'Requested AEAD algorithm not found' } as const;

export interface FakeXfrmKernelOptions {
  /**
   * 'full' (default): the crypto of the VM's kernels; 'none': no AEAD algorithm, so every SA add carrying one
   * that passes the codec is refused with NO_AEAD_REFUSAL (before any other check of the kernel's).
   */
  crypto?: 'full' | 'none';
  /**
   * The change feed (XfrmKernel.touchedSinceLastLook) as NetlinkXfrmKernel's with `watch`; default true.
   * Changes made through seedState/seedPolicy are another tool's: the next look reports them.
   */
  changeFeed?: boolean;
  /**
   * Keep every op apply() is handed in `received` (default true). The scale bench passes false: over a run of
   * 5,000-peer steps the list would hold every op and every SA (key included) it ever carried.
   */
  recordOps?: boolean;
}

export class FakeXfrmKernel implements XfrmKernel {
  /** What the kernel's crypto can do; tests may change it (e.g. the missing modules got loaded). */
  crypto: 'full' | 'none';
  /** Lookups return the newest hit first, as the kernel's hash chains put new states at the head. */
  private states = new StateIndex<XfrmState>();
  /** By identity, in insertion order. */
  private policies = new Map<string, XfrmPolicy>();
  private nextPolicyIndex = 1;
  private failures: InjectedFailure[] = [];
  /** Ops received by apply(), in order (none kept with `recordOps: false`). */
  readonly received: XfrmOp[] = [];
  private readonly recordOps: boolean;
  writes = 0;
  applyCalls = 0;
  dumpCalls = 0;

  /** Looks at the change feed (touchedSinceLastLook calls). */
  looks = 0;
  private readonly changeFeed: boolean;
  private watching = false;
  private foreignChanges = 0;

  constructor(options: FakeXfrmKernelOptions = {}) {
    this.crypto = options.crypto ?? 'full';
    this.changeFeed = options.changeFeed ?? true;
    this.recordOps = options.recordOps ?? true;
    if (!this.changeFeed) delete (this as { touchedSinceLastLook?: unknown }).touchedSinceLastLook;
  }

  /**
   * As NetlinkXfrmKernel's with `watch`: the first look opens the feed and reports "touched"; later ones report
   * '' unless another tool (seedState/seedPolicy) changed the tables since the previous look.
   */
  touchedSinceLastLook = (): string => {
    this.looks++;
    if (!this.watching) {
      this.watching = true;
      this.foreignChanges = 0;
      return 'first look (monitor just opened)';
    }
    const n = this.foreignChanges;
    this.foreignChanges = 0;
    return n === 0 ? '' : `XFRM tables changed by someone else (${n} changes)`;
  };

  /** Installs a state without counting a write (a foreign tool's, or left by an earlier run); throws on a collision. */
  seedState(state: XfrmState): void {
    const result = this.execute({ kind: 'addState', state }, 'seed');
    if (result.errno !== 0) throw new Error(`seedState: errno ${result.errno} ${result.message ?? ''}`);
    this.foreignChanges++;
  }

  seedPolicy(policy: XfrmPolicy): void {
    const result = this.execute({ kind: 'addPolicy', policy }, 'seed');
    if (result.errno !== 0) throw new Error(`seedPolicy: errno ${result.errno} ${result.message ?? ''}`);
    this.foreignChanges++;
  }

  /** Makes matching ops fail with `errno` (and no effect), `times` times (default: always). */
  injectFailure(match: (op: XfrmOp) => boolean, errno: number, opts: { message?: string; times?: number } = {}): void {
    this.failures.push({ match, errno, message: opts.message, remaining: opts.times ?? Infinity });
  }

  clearFailures(): void {
    this.failures = [];
  }

  /** Current contents without counting a dump. */
  listStates(): XfrmState[] {
    return this.states.all().map(cloneState);
  }

  listPolicies(): XfrmPolicy[] {
    return [...this.policies.values()].map(clonePolicy);
  }

  dumpStates(): Promise<XfrmState[]> {
    this.dumpCalls++;
    return Promise.resolve(this.listStates());
  }

  dumpPolicies(): Promise<XfrmPolicy[]> {
    this.dumpCalls++;
    return Promise.resolve(this.listPolicies());
  }

  apply(ops: readonly XfrmOp[]): Promise<XfrmOpResult[]> {
    this.applyCalls++;
    const results = ops.map((op) => {
      this.writes++;
      if (this.recordOps) this.received.push(op);
      const failure = this.failures.find((f) => f.remaining > 0 && f.match(op));
      if (failure) {
        failure.remaining--;
        return { op, errno: failure.errno, ...(failure.message ? { message: failure.message } : {}) };
      }
      return this.execute(op, 'adapter');
    });
    return Promise.resolve(results);
  }

  /** The state the kernel's lookup for this (dst, spi, proto, mark) would hit. */
  private findState(s: Pick<XfrmState, 'family' | 'dst' | 'spi' | 'proto' | 'mark'>): XfrmState | undefined {
    return this.states.hits(s)[0];
  }

  /**
   * One op as the kernel would take it. Through the adapter, what its codec cannot encode never gets there;
   * a seed is another tool's object, which may be of a shape we never write (any mode, host bits, ...).
   */
  private execute(op: XfrmOp, from: 'adapter' | 'seed'): XfrmOpResult {
    const fail = (errno: number, message?: string): XfrmOpResult => ({ op, errno, ...(message ? { message } : {}) });
    const refused = from === 'adapter' ? codecRefusal(op) : undefined;
    if (refused !== undefined) return fail(EINVAL, refused);
    switch (op.kind) {
      case 'addState': {
        if (from === 'adapter' && this.crypto === 'none' && op.state.aead) {
          return fail(NO_AEAD_REFUSAL.errno, NO_AEAD_REFUSAL.message);
        }
        const invalid = kernelRefusal(op.state);
        if (invalid) return fail(invalid.errno, invalid.message);
        if (this.findState(op.state)) return fail(EEXIST);
        const stored = cloneState(op.state);
        if (op.state.mark) stored.mark = storedMark(op.state.mark);
        this.states.add(stored);
        return fail(0);
      }
      case 'deleteState': {
        const existing = this.findState(op.state);
        if (!existing) return fail(ESRCH);
        this.states.remove(existing);
        return fail(0);
      }
      case 'addPolicy':
      case 'updatePolicy': {
        const id = policyKey(op.policy);
        if (op.kind === 'addPolicy' && this.policies.has(id)) return fail(EEXIST);
        const stored = clonePolicy(op.policy);
        stored.index = this.nextPolicyIndex++;
        if (op.policy.mark) stored.mark = storedMark(op.policy.mark);
        this.policies.set(id, stored);
        return fail(0);
      }
      case 'deletePolicy': {
        // The lookup compares the given mark as is with the stored (masked) one.
        const m = op.policy.mark;
        if (m && (m.value & m.mask) >>> 0 !== m.value >>> 0) return fail(ENOENT);
        if (!this.policies.delete(policyKey(op.policy))) return fail(ENOENT);
        return fail(0);
      }
    }
  }
}

/** A fake kernel's SAs and policies as sorted texts (the kernel's policy index left out), to compare two kernels. */
export function kernelContents(k: FakeXfrmKernel): { states: string[]; policies: string[] } {
  return {
    states: k
      .listStates()
      .map((s) => JSON.stringify(s))
      .sort(),
    policies: k
      .listPolicies()
      .map((p) => JSON.stringify({ ...p, index: undefined }))
      .sort(),
  };
}
