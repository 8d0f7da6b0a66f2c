// The contract between FakeDatapath (test/fakes/fake-datapath.ts) and BpfDatapath: one script of Datapath calls
// run through both against the same interfaces; every call's outcome (its value, or its error's message, errno
// and code) and the attachments after it must be the same. Attach semantics (auto/tcx/clsact, idempotence,
// mode changes, by name or index, missing devices, detach, a device that disappears), map difference results,
// stats and the state before load / after uninstall. test/host/datapath-contract.test.ts runs it on the host
// kernel (TCX), the VM datapath suite on 6.1 (clsact only) and 6.12 as well.
import type { Attachment, Datapath } from '../../src/datapath/datapath.js';

/** Where the script runs: a namespace holding interfaces a0 and a1, and a way to delete one. */
export interface ContractEnv {
  netns: string;
  bpffsRoot: string;
  /** Where the BPF objects are (the checkout's build-bpf). */
  objDir: string;
  /** Index of an interface in the namespace. */
  ifindex(name: string): number;
  /** Deletes the interface (for the fake: tells it the device went away). */
  removeInterface(name: string): Promise<void>;
}

export interface ContractStep {
  what: string;
  call: (dp: Datapath, env: ContractEnv) => Promise<unknown>;
}

/** One step's outcome as compared: the call's value or error, then the attachments (or why they cannot be read). */
export interface ContractOutcome {
  what: string;
  outcome: unknown;
  attachments: unknown;
}

const NO_DEVICE_INDEX = 9999;

const on = (e: ContractEnv): { netns: string } => ({ netns: e.netns });
const PEERS: [string, number][] = [
  ['198.18.0.2', 1],
  ['fd00:198:18::2', 1],
  ['198.18.0.3', 2],
];
const CIDRS = ['10.244.2.0/24', '10.244.3.0/24', 'fd00:10:244:2::/64'];
/** 10,000 /24s from 10.<second>.0.0 on: two disjoint sets fit km_nodeinfo (16,384) one after the other, not at once. */
const tenThousand = (second: number): string[] =>
  Array.from({ length: 10000 }, (_, i) => `10.${second + (i >> 8)}.${i & 255}.0/24`);

export const DATAPATH_STEPS: readonly ContractStep[] = [
  { what: 'attach before load', call: (dp, e) => dp.attach('encrypt', 'a0', on(e)) },
  { what: 'attachments before load', call: (dp) => dp.attachments() },
  { what: 'load', call: (dp, e) => dp.load({ bpffsRoot: e.bpffsRoot, objDir: e.objDir }) },
  { what: 'load again at the same root', call: (dp, e) => dp.load({ bpffsRoot: e.bpffsRoot, objDir: e.objDir }) },
  { what: 'load at another root', call: (dp, e) => dp.load({ bpffsRoot: `${e.bpffsRoot}-other`, objDir: e.objDir }) },
  { what: 'attach encrypt to a0 (auto)', call: (dp, e) => dp.attach('encrypt', 'a0', on(e)) },
  { what: 'attach encrypt to a0 again: the same attachment', call: (dp, e) => dp.attach('encrypt', 'a0', on(e)) },
  { what: 'attach decrypt to a0 beside it', call: (dp, e) => dp.attach('decrypt', 'a0', on(e)) },
  {
    what: 'attach encrypt to a1 as clsact',
    call: (dp, e) => dp.attach('encrypt', 'a1', { ...on(e), mode: 'clsact' }),
  },
  { what: 'attach encrypt to a1 (auto) keeps clsact', call: (dp, e) => dp.attach('encrypt', 'a1', on(e)) },
  {
    what: 'attach encrypt to a1 as tcx: moves it (or EINVAL without TCX)',
    call: (dp, e) => dp.attach('encrypt', 'a1', { ...on(e), mode: 'tcx' }),
  },
  { what: 'attach decrypt to a1 by index', call: (dp, e) => dp.attach('decrypt', e.ifindex('a1'), on(e)) },
  { what: 'attach to a missing device', call: (dp, e) => dp.attach('encrypt', 'nope0', on(e)) },
  { what: 'attach to a missing index', call: (dp, e) => dp.attach('encrypt', NO_DEVICE_INDEX, on(e)) },
  { what: 'attach to index 0', call: (dp, e) => dp.attach('encrypt', 0, on(e)) },
  { what: 'detach encrypt from a0', call: (dp, e) => dp.detach('encrypt', 'a0', on(e)) },
  { what: 'detach encrypt from a0 again', call: (dp, e) => dp.detach('encrypt', 'a0', on(e)) },
  { what: 'detach decrypt from a1 by index', call: (dp, e) => dp.detach('decrypt', e.ifindex('a1'), on(e)) },
  { what: 'detach from a missing device', call: (dp, e) => dp.detach('decrypt', 'nope0', on(e)) },
  { what: 'set peers', call: (dp) => dp.setPeers(new Map(PEERS)) },
  { what: 'set the same peers: nothing changes', call: (dp) => dp.setPeers(new Map(PEERS)) },
  {
    what: 'change one id, drop one peer',
    call: (dp) =>
      dp.setPeers(
        new Map([
          ['198.18.0.2', 1],
          ['198.18.0.3', 3],
        ]),
      ),
  },
  { what: 'refuse a bad peer id', call: (dp) => dp.setPeers(new Map([['198.18.0.4', 0]])) },
  { what: 'refuse a bad peer address', call: (dp) => dp.setPeers(new Map([['198.18.0', 4]])) },
  { what: 'set remote CIDRs', call: (dp) => dp.setRemoteCidrs(CIDRS) },
  { what: 'set the same CIDRs: nothing changes', call: (dp) => dp.setRemoteCidrs(CIDRS) },
  { what: 'refuse a CIDR with host bits', call: (dp) => dp.setRemoteCidrs(['10.244.4.1/24']) },
  { what: 'set 10,000 remote CIDRs', call: (dp) => dp.setRemoteCidrs(tenThousand(0)) },
  { what: 'replace them by 10,000 disjoint ones', call: (dp) => dp.setRemoteCidrs(tenThousand(100)) },
  {
    what: 'refuse more CIDRs than km_nodeinfo holds',
    call: (dp) => dp.setRemoteCidrs([...tenThousand(0), ...tenThousand(100)]),
  },
  { what: 'back to the small set', call: (dp) => dp.setRemoteCidrs(CIDRS) },
  { what: 'the installed CIDR index', call: (dp) => dp.cidrIndexUse() },
  { what: 'MSS clamp on fresh maps: none', call: (dp) => dp.mssClamp() },
  { what: 'set an MSS clamp', call: (dp) => dp.setMssClamp({ ipv4: 1406, ipv6: 1366 }) },
  { what: 'set the same MSS clamp: nothing changes', call: (dp) => dp.setMssClamp({ ipv4: 1406, ipv6: 1366 }) },
  { what: 'refuse an MSS above 65535', call: (dp) => dp.setMssClamp({ ipv4: 70000, ipv6: 0 }) },
  { what: 'the MSS clamp after the refusal', call: (dp) => dp.mssClamp() },
  { what: 'strict mode on fresh maps: off', call: (dp) => dp.strictMode() },
  { what: 'set strict mode audit', call: (dp) => dp.setStrictMode('audit') },
  { what: 'set strict mode audit again: nothing changes', call: (dp) => dp.setStrictMode('audit') },
  { what: 'refuse an unknown strict mode', call: (dp) => dp.setStrictMode('on' as 'off') },
  {
    what: 'strict mode and MSS clamp after both were set',
    call: async (dp) => [await dp.strictMode(), await dp.mssClamp()],
  },
  { what: 'set local pods', call: (dp) => dp.setLocalPods(['10.244.1.5', 'fd00:10:244:1::5']) },
  { what: 'set local pods: one goes', call: (dp) => dp.setLocalPods(['10.244.1.5']) },
  { what: 'refuse a bad local pod address', call: (dp) => dp.setLocalPods(['10.244.1']) },
  {
    what: 'set pod peers',
    call: (dp) =>
      dp.setPodPeers(
        new Map([
          ['10.244.2.0/24', 1],
          ['fd00:10:244:2::/64', 1],
        ]),
      ),
  },
  { what: 'refuse a pod peer id of 0', call: (dp) => dp.setPodPeers(new Map([['10.244.2.0/24', 0]])) },
  { what: 'no plaintext seen', call: (dp) => dp.plaintext() },
  {
    what: 'stats (counters aside: the kernel may count stray packets)',
    call: async (dp) => {
      const s = await dp.stats();
      return {
        remoteCidrEntries: s.remoteCidrEntries,
        cidrIndex: s.cidrIndex,
        peers: s.peers,
        attachments: s.attachments,
      };
    },
  },
  { what: 'a0 disappears: its attachment with it', call: (_dp, e) => e.removeInterface('a0') },
  { what: 'uninstall', call: (dp) => dp.uninstall() },
  { what: 'attach after uninstall', call: (dp, e) => dp.attach('encrypt', 'a1', on(e)) },
];

function errorOf(err: unknown): unknown {
  const e = err as { message?: unknown; errno?: unknown; code?: unknown };
  return { error: String(e.message), errno: e.errno, code: e.code };
}

/** Attachments as compared: program ids become a label per kind (ids differ between kernels and fakes). */
function attachmentsView(list: Attachment[], labels: Map<number, string>): unknown {
  return list
    .map((a) => {
      let label = labels.get(a.progId);
      if (label === undefined) {
        label = `${a.kind} program #${[...labels.values()].filter((l) => l.startsWith(a.kind)).length + 1}`;
        labels.set(a.progId, label);
      }
      return { kind: a.kind, ifname: a.ifname, ifindex: a.ifindex, mode: a.mode, netns: a.netns, program: label };
    })
    .sort((x, y) => `${x.kind}/${x.ifname}`.localeCompare(`${y.kind}/${y.ifname}`));
}

function valueView(value: unknown, labels: Map<number, string>): unknown {
  if (value !== null && typeof value === 'object' && 'progId' in value) {
    return (attachmentsView([value as Attachment], labels) as unknown[])[0];
  }
  return value;
}

/** Runs the steps through a datapath and records every outcome. */
export async function runDatapathScript(
  dp: Datapath,
  env: ContractEnv,
  steps: readonly ContractStep[],
): Promise<ContractOutcome[]> {
  const labels = new Map<number, string>();
  const out: ContractOutcome[] = [];
  for (const step of steps) {
    let outcome: unknown;
    try {
      outcome = valueView(await step.call(dp, env), labels);
    } catch (err) {
      outcome = errorOf(err);
    }
    let attachments: unknown;
    try {
      attachments = attachmentsView(await dp.attachments(), labels);
    } catch (err) {
      attachments = errorOf(err);
    }
    out.push({ what: step.what, outcome, attachments });
  }
  return out;
}
