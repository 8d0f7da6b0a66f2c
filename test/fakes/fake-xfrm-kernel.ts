// An in-memory XfrmKernel that follows the Linux identity rules, for unit tests of everything above the
// netlink adapter (reconciler, controller, daemon):
// - states: lookups hit the newest state in the (family, dst, spi, proto) bucket whose mark matches
//   ((value&mask) & x.mask == x.value); add -> EEXIST on a hit; delete of a miss -> ESRCH (what the kernel
//   returns for SAs).
// - policies: identity (dir, selector, mark value, mark mask); add -> EEXIST; update replaces or inserts
//   (XFRM_MSG_UPDPOLICY semantics); delete of a miss -> ENOENT.
// Every op handed to apply() counts as one write. Failures can be injected per op.

import { parseCidrLenient, parseIp } from '../../src/model/ip-address.js';
import { policyIdentity, StateIndex } from '../../src/xfrm/identity.js';
import type { XfrmKernel, XfrmOp, XfrmOpResult, XfrmPolicy, XfrmState } from '../../src/xfrm/types.js';

export const EINVAL = 22;
export const EEXIST = 17;
export const ENOENT = 2;
export const ESRCH = 3;

/** rfc4106 key lengths the kernel accepts: AES-128/192/256 key + 4-byte salt. */
const RFC4106_KEY_BYTES = [20, 28, 36];

interface InjectedFailure {
  match: (op: XfrmOp) => boolean;
  errno: number;
  message: string | undefined;
  remaining: number;
}

function cloneState(s: XfrmState): XfrmState {
  return {
    ...s,
    ...(s.aead ? { aead: { ...s.aead, key: Buffer.from(s.aead.key) } } : {}),
    ...(s.mark ? { mark: { ...s.mark } } : {}),
    ...(s.outputMark ? { outputMark: { ...s.outputMark } } : {}),
  };
}

function clonePolicy(p: XfrmPolicy): XfrmPolicy {
  return {
    ...p,
    selector: { ...p.selector },
    ...(p.mark ? { mark: { ...p.mark } } : {}),
    templates: p.templates.map((t) => ({ ...t })),
  };
}

function invalidState(s: XfrmState): string | undefined {
  for (const [what, addr] of [
    ['source', s.src],
    ['destination', s.dst],
  ] as const) {
    if (parseIp(addr)?.family !== s.family) return `${what} address ${addr} is not an IPv${s.family} address`;
  }
  if (s.aead) {
    if (s.aead.name !== 'rfc4106(gcm(aes))') return 'Requested AEAD algorithm not found';
    if (!RFC4106_KEY_BYTES.includes(s.aead.key.length)) return 'Invalid key length';
    if (![64, 96, 128].includes(s.aead.icvBits)) return 'Invalid ICV length';
  }
  if (s.esn && s.replayWindow <= 0) return 'ESN requires a replay window';
  return undefined;
}

function invalidPolicy(p: XfrmPolicy): string | undefined {
  for (const cidr of [p.selector.src, p.selector.dst]) {
    if (parseCidrLenient(cidr)?.family !== p.selector.family)
      return `selector ${cidr} is not an IPv${p.selector.family} prefix`;
  }
  for (const t of p.templates) {
    if (parseIp(t.src)?.family !== t.family || parseIp(t.dst)?.family !== t.family) {
      return `template addresses ${t.src}->${t.dst} are not IPv${t.family}`;
    }
  }
  return undefined;
}

export class FakeXfrmKernel implements XfrmKernel {
  /** Lookups return the newest hit first, as the kernel's hash chains put new states at the head. */
  private states = new StateIndex<XfrmState>();
  /** By identity, in insertion order. */
  private policies = new Map<string, XfrmPolicy>();
  private nextPolicyIndex = 1;
  private failures: InjectedFailure[] = [];
  /** Ops received by apply(), in order. */
  readonly received: XfrmOp[] = [];
  writes = 0;
  applyCalls = 0;
  dumpCalls = 0;

  /** Installs a state without counting a write (a foreign tool's, or left by an earlier run); throws on a collision. */
  seedState(state: XfrmState): void {
    const result = this.execute({ kind: 'addState', state });
    if (result.errno !== 0) throw new Error(`seedState: errno ${result.errno} ${result.message ?? ''}`);
  }

  seedPolicy(policy: XfrmPolicy): void {
    const result = this.execute({ kind: 'addPolicy', policy });
    if (result.errno !== 0) throw new Error(`seedPolicy: errno ${result.errno} ${result.message ?? ''}`);
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
      this.received.push(op);
      const failure = this.failures.find((f) => f.remaining > 0 && f.match(op));
      if (failure) {
        failure.remaining--;
        return { op, errno: failure.errno, ...(failure.message ? { message: failure.message } : {}) };
      }
      return this.execute(op);
    });
    return Promise.resolve(results);
  }

  /** The state the kernel's lookup for this (dst, spi, proto, mark) would hit. */
  private findState(s: Pick<XfrmState, 'family' | 'dst' | 'spi' | 'proto' | 'mark'>): XfrmState | undefined {
    return this.states.hits(s)[0];
  }

  private execute(op: XfrmOp): XfrmOpResult {
    const fail = (errno: number, message?: string): XfrmOpResult => ({ op, errno, ...(message ? { message } : {}) });
    switch (op.kind) {
      case 'addState': {
        const invalid = invalidState(op.state);
        if (invalid) return fail(EINVAL, invalid);
        if (this.findState(op.state)) return fail(EEXIST);
        this.states.add(cloneState(op.state));
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
        const invalid = invalidPolicy(op.policy);
        if (invalid) return fail(EINVAL, invalid);
        const id = policyIdentity(op.policy);
        if (op.kind === 'addPolicy' && this.policies.has(id)) return fail(EEXIST);
        this.policies.set(id, { ...clonePolicy(op.policy), index: this.nextPolicyIndex++ });
        return fail(0);
      }
      case 'deletePolicy': {
        if (!this.policies.delete(policyIdentity(op.policy))) return fail(ENOENT);
        return fail(0);
      }
    }
  }
}
