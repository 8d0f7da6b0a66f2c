// VM suite: proves the kernel-test environment end to end without the project's daemon. Three
// namespace "nodes" on an underlay, a pod behind a veth on each, ESP tunnel-mode SAs
// (rfc4106(gcm(aes)), 36-byte keys, ICV 128) and marked policies installed with `ip xfrm`, encrypt and
// decrypt marks set by tc u32/skbedit filters (lib/manual-esp.ts). Checks: pod-to-pod traffic flows
// between every pair of nodes, the underlay carries ESP(spi=0x00000001,...) and never the payload in
// clear, a counted UDP flow loses nothing, and no XFRM error counter moves. Then the same mesh without
// the decrypt mark must fail, and the counter check must name the counter that moved (XfrmInNoStates).
// Runs in the VM (npm run test:vm); on a host kernel without ESP it skips with the reason.
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  assertXfrmCountersUnchanged,
  captureContains,
  captureLines,
  createTopology,
  exec,
  execOk,
  ping,
  readXfrmStat,
  startCapture,
  startUdpFlow,
  UNDERLAY_BRIDGE,
  type Topology,
  type XfrmStat,
} from '../lib/topology.js';
import { AEAD_ALGO, installManualEsp, randomPairKeys } from '../lib/manual-esp.js';
import { ipAddEspStateArgs } from '../../fakes/xfrm-objects.js';

const SPI = 1;
const inVm = process.env.KMESH_VM === '1';
const resultsDir = process.env.KMESH_VM_RESULTS;

/** Why this kernel cannot run the suite (no root, no ESP/GCM), or undefined when it can. */
async function missingPrerequisite(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'needs root (network namespaces, XFRM)';
  const ns = 'kmt-espbase-probe';
  await exec(undefined, ['ip', 'netns', 'del', ns]);
  await execOk(undefined, ['ip', 'netns', 'add', ns]);
  try {
    const r = await exec(ns, ipAddEspStateArgs('198.18.0.1', '198.18.0.2', 1, 0x11));
    return r.code === 0
      ? undefined
      : `kernel cannot create an ESP ${AEAD_ALGO} state (${r.stderr.trim()}); run it in the VM: npm run test:vm`;
  } finally {
    await exec(undefined, ['ip', 'netns', 'del', ns]);
  }
}

async function readAll(topo: Topology): Promise<XfrmStat[]> {
  return Promise.all(topo.plan.nodes.map((n) => readXfrmStat(n.netns)));
}

function scratchDir(): string {
  const base = resultsDir ?? os.tmpdir();
  return mkdtempSync(path.join(base, 'esp-baseline-'));
}

const missing = await missingPrerequisite();
if (missing !== undefined && inVm) {
  t.fail(`the VM kernel must run this suite: ${missing}`);
} else {
  const skip = missing ?? false;
  t.test('ESP mesh of three nodes with marks on both sides', { skip }, async (t) => {
    const topo = await createTopology({ prefix: 'kmt-espbase-', nodes: 3, podsPerNode: 1 });
    const dir = scratchDir();
    t.teardown(async () => {
      await topo.destroy();
      if (resultsDir === undefined) rmSync(dir, { recursive: true, force: true });
    });
    await installManualEsp(topo.plan, { spi: SPI, keys: randomPairKeys(topo.plan), decryptMark: true });
    const [n0, n1, n2] = topo.plan.nodes as [
      (typeof topo.plan.nodes)[0],
      (typeof topo.plan.nodes)[0],
      (typeof topo.plan.nodes)[0],
    ];
    const pod = (n: typeof n0) => n.pods[0]!;
    const before = await readAll(topo);

    const underlay = await startCapture({
      netns: topo.plan.underlayNetns,
      iface: UNDERLAY_BRIDGE,
      file: path.join(dir, 'underlay.pcap'),
    });
    const podSide = await startCapture({
      netns: pod(n1).netns,
      iface: 'eth0',
      file: path.join(dir, 'pod-n1.pcap'),
      filter: 'udp',
    });

    for (const [a, b] of [
      [n0, n1],
      [n1, n2],
      [n2, n0],
    ] as const) {
      const r = await ping(pod(a).netns, pod(b).ip, { count: 3 });
      t.equal(r.received, 3, `pod on node ${a.index} pings pod on node ${b.index} through ESP (${r.transmitted} sent)`);
    }

    const canary = `kmesh-plaintext-canary-${process.pid}-${Date.now()}`;
    const flow = await startUdpFlow({
      from: { netns: pod(n0).netns, ip: pod(n0).ip },
      to: { netns: pod(n1).netns, ip: pod(n1).ip },
      port: 5001,
      payload: canary,
      count: 200,
      intervalMs: 5,
    });
    await flow.waitSent();
    const result = await flow.stop(1000);
    await underlay.stop();
    await podSide.stop();
    t.equal(result.sendErrors, 0, `sender had no send errors ${result.lastSendError}`);
    t.equal(result.lost, 0, `UDP flow lost nothing (${result.sent} sent, ${result.tally.unique} received)`);
    t.equal(result.tally.badPayload, 0, 'no corrupted datagram');

    const lines = await captureLines(underlay.file);
    const esp = lines.filter((l) => /IP 198\.18\.0\.1 > 198\.18\.0\.2: ESP\(spi=0x00000001,seq=0x[0-9a-f]+\)/.test(l));
    t.ok(
      esp.length >= result.sent,
      `underlay shows ESP(spi=0x00000001,...) from node 0 to node 1 (${esp.length} packets), e.g. ${esp[0] ?? 'none'}`,
    );
    const clear = lines.filter((l) => / 10\.244\.\d+\.\d+(\.\d+)? > 10\.244\./.test(l));
    t.same(clear.slice(0, 3), [], 'no pod address appears in clear on the underlay');
    t.ok(captureContains(podSide.file, canary), 'control: the payload is visible in clear inside the receiving pod');
    t.notOk(captureContains(underlay.file, canary), 'the payload never appears in clear on the underlay');

    const states = await execOk(n1.netns, ['ip', '-s', 'xfrm', 'state']);
    t.match(
      states,
      /aead rfc4106\(gcm\(aes\)\) 0x[0-9a-f]{72} \(288 bits\) 128/,
      'SAs use rfc4106(gcm(aes)) with a 36-byte key and ICV 128',
    );

    const after = await readAll(topo);
    topo.plan.nodes.forEach((n, i) => {
      t.doesNotThrow(
        () => assertXfrmCountersUnchanged(before[i]!, after[i]!, n.netns),
        `no XFRM error counter moved on node ${n.index}`,
      );
    });
  });

  t.test(
    'without the decrypt mark the datapath fails and the counter check names XfrmInNoStates',
    { skip },
    async (t) => {
      const topo = await createTopology({ prefix: 'kmt-espbrk-', nodes: 3, podsPerNode: 1 });
      t.teardown(() => topo.destroy());
      await installManualEsp(topo.plan, { spi: SPI, keys: randomPairKeys(topo.plan), decryptMark: false });
      const [n0, n1] = topo.plan.nodes;
      const before = await readXfrmStat(n1!.netns);
      const r = await ping(n0!.pods[0]!.netns, n1!.pods[0]!.ip, { count: 3, waitS: 1 });
      t.equal(r.received, 0, 'no reply crosses a node that cannot match its inbound SA');
      const after = await readXfrmStat(n1!.netns);
      t.throws(
        () => assertXfrmCountersUnchanged(before, after, n1!.netns),
        /XFRM error counters moved in kmt-espbrk-n1: .*XfrmInNoStates moved by [1-9]\d* \(\d+ -> \d+\)/,
        'the failure message names XfrmInNoStates and how far it moved',
      );
    },
  );
}
