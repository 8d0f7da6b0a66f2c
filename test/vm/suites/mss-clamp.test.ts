// VM suite: MSS clamping where ICMP is filtered. Two dual-stack nodes (IPv4 and IPv6 underlay, pod CIDRs of
// both families), a pod on each, ESP tunnel-mode SAs per family installed by hand (lib/manual-esp.ts), and
// the project's own TC programs marking traffic (tc_mark_encrypt on the pod veths, tc_mark_decrypt on the
// underlays). Every node drops the ICMP "fragmentation needed" / ICMPv6 "packet too big" it would send to a
// pod whose full-size segment does not fit the MTU once encrypted (as where ICMP is filtered). Then:
//   - with the clamp (MSS for MTU 1500: 1406 IPv4, 1366 IPv6) a 4 MiB transfer between the pods completes and
//     matches byte for byte in both families; each pod sees its peer's SYN / SYN-ACK with the clamped MSS;
//     the underlay carries it as ESP only; no ICMP had to be dropped;
//   - with the clamp off (km_ipsec_config zero, what --ipsec-mss-clamp=false leads to) the same transfer
//     stalls in both families and the nodes dropped the ICMP that would have rescued it.
// Runs in the VM (npm run test:vm); on a host kernel without ESP it skips with the reason.
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { BpfDatapath } from '../../../src/datapath/bpf-datapath.js';
import { mssClampForMtu, NO_MSS_CLAMP, type MssClamp } from '../../../src/model/esp-overhead.js';
import { kernelSkipReason, OBJ_DIR, privateBpffsRoot } from '../../host/lib/kernel.js';
import { ipAddEspStateArgs } from '../../fakes/xfrm-objects.js';
import { manualXfrmBatch, randomPairKeys } from '../lib/manual-esp.js';
import { tcpTransfer, type TcpTransferResult } from '../lib/tcp-transfer.js';
import {
  captureLines,
  createTopology,
  exec,
  execOk,
  ping,
  startCapture,
  UNDERLAY_BRIDGE,
  type NodePlan,
  type Topology,
  type TopologyPlan,
} from '../lib/topology.js';

const SPI = 1;
const MTU = 1500;
const BYTES = 4 * 1024 * 1024;
const inVm = process.env.KMESH_VM === '1';
const resultsDir = process.env.KMESH_VM_RESULTS;
const NFT_TABLE = 'kmtmss';

/** The IPv6 side of the IPv4 topology plan: same namespaces and devices, fd00: addresses (pure). */
function ipv6Plan(plan: TopologyPlan): TopologyPlan {
  return {
    ...plan,
    nodes: plan.nodes.map((n) => ({
      ...n,
      underlayIp: `fd00:198:18::${n.index + 1}`,
      podCidr: `fd00:10:244:${n.index}::/64`,
      podGateway: `fd00:10:244:${n.index}::1`,
      pods: n.pods.map((p) => ({ ...p, ip: `fd00:10:244:${n.index}::${p.index + 2}` })),
    })),
  };
}

/** Turns IPv6 on in every namespace of the topology and gives nodes and pods their IPv6 addresses and routes. */
async function addIpv6(v6: TopologyPlan): Promise<void> {
  await execOk(v6.underlayNetns, ['sysctl', '-q', '-w', 'net.ipv6.conf.all.disable_ipv6=0']);
  await execOk(undefined, [
    'ip',
    '-n',
    v6.underlayNetns,
    'link',
    'set',
    UNDERLAY_BRIDGE,
    'type',
    'bridge',
    'mcast_snooping',
    '0',
  ]);
  for (const node of v6.nodes) {
    const on = ['net.ipv6.conf.all.disable_ipv6=0', 'net.ipv6.conf.default.disable_ipv6=0'];
    await execOk(node.netns, ['sysctl', '-q', '-w', ...on, 'net.ipv6.conf.all.forwarding=1']);
    const lines = [`addr add ${node.underlayIp}/64 dev ${node.underlayDev} nodad`];
    for (const pod of node.pods) {
      await execOk(pod.netns, ['sysctl', '-q', '-w', ...on]);
      lines.push(
        `addr add ${node.podGateway}/128 dev ${pod.hostVeth} nodad`,
        `route add ${pod.ip}/128 dev ${pod.hostVeth}`,
      );
      await execOk(undefined, ['ip', '-n', pod.netns, '-batch', '-'], {
        input:
          [
            `addr add ${pod.ip}/128 dev eth0 nodad`,
            `route add ${node.podGateway} dev eth0`,
            `route add default via ${node.podGateway} dev eth0`,
          ].join('\n') + '\n',
      });
    }
    for (const peer of v6.nodes) {
      if (peer !== node) lines.push(`route add ${peer.podCidr} via ${peer.underlayIp} dev ${node.underlayDev}`);
    }
    await execOk(undefined, ['ip', '-n', node.netns, '-batch', '-'], { input: `${lines.join('\n')}\n` });
  }
}

/** nftables rules on a node dropping (and counting) the PMTU signals it would send: ICMP frag-needed, PTB. */
async function dropPmtuIcmp(node: NodePlan): Promise<void> {
  const rules =
    'icmp type destination-unreachable icmp code frag-needed counter drop; icmpv6 type packet-too-big counter drop;';
  await execOk(node.netns, ['nft', '-f', '-'], {
    input:
      `table inet ${NFT_TABLE} {\n` +
      `  chain pmtu_out { type filter hook output priority 0; policy accept; ${rules} }\n` +
      `  chain pmtu_forward { type filter hook forward priority 0; policy accept; ${rules} }\n` +
      '}\n',
  });
}

/** ICMP packets the node's rules dropped so far, per family. */
async function droppedIcmp(node: NodePlan): Promise<{ v4: number; v6: number }> {
  const out = await execOk(node.netns, ['nft', 'list', 'table', 'inet', NFT_TABLE]);
  const sum = (re: RegExp): number => [...out.matchAll(re)].reduce((s, m) => s + Number(m[1]), 0);
  return {
    v4: sum(/frag-needed counter packets (\d+)/g),
    v6: sum(/packet-too-big counter packets (\d+)/g),
  };
}

/** Why this kernel cannot run the suite (no root, no ESP/GCM, no BPF), or undefined when it can. */
async function missingPrerequisite(): Promise<string | undefined> {
  const bpf = kernelSkipReason();
  if (bpf !== false) return bpf;
  const ns = 'kmt-mss-probe';
  await exec(undefined, ['ip', 'netns', 'del', ns]);
  await execOk(undefined, ['ip', 'netns', 'add', ns]);
  try {
    const r = await exec(ns, ipAddEspStateArgs('198.18.0.1', '198.18.0.2', 1, 0x11));
    return r.code === 0
      ? undefined
      : `kernel cannot create an ESP state (${r.stderr.trim()}); run it in the VM: npm run test:vm`;
  } finally {
    await exec(undefined, ['ip', 'netns', 'del', ns]);
  }
}

const missing = await missingPrerequisite();
if (missing !== undefined && inVm) {
  t.fail(`the VM kernel must run this suite: ${missing}`);
} else {
  t.test(
    '4 MiB TCP between pods with ICMP filtered: completes with the MSS clamp, stalls without',
    { skip: missing ?? false },
    async (t) => {
      const topo: Topology = await createTopology({ prefix: 'kmt-mss-', nodes: 2, podsPerNode: 1 });
      const dir = mkdtempSync(path.join(resultsDir ?? os.tmpdir(), 'mss-clamp-'));
      const datapaths: BpfDatapath[] = [];
      t.teardown(async () => {
        for (const dp of datapaths) await dp.uninstall().catch(() => undefined);
        await topo.destroy();
        if (resultsDir === undefined) rmSync(dir, { recursive: true, force: true });
      });
      const v4 = topo.plan;
      const v6 = ipv6Plan(v4);
      await addIpv6(v6);
      const keys4 = randomPairKeys(v4);
      const keys6 = randomPairKeys(v6);
      for (const [i, node] of v4.nodes.entries()) {
        const node6 = v6.nodes[i]!;
        const batch = [
          ...manualXfrmBatch(v4, node, { spi: SPI, keys: keys4, decryptMark: true }),
          ...manualXfrmBatch(v6, node6, { spi: SPI, keys: keys6, decryptMark: true }),
        ];
        await execOk(undefined, ['ip', '-n', node.netns, '-batch', '-'], { input: `${batch.join('\n')}\n` });
        const dp = new BpfDatapath();
        datapaths.push(dp);
        await dp.load({ bpffsRoot: privateBpffsRoot(`mss${i}`), objDir: OBJ_DIR });
        const peers = v4.nodes.filter((p) => p !== node);
        await dp.setRemoteCidrs(peers.flatMap((p) => [p.podCidr, v6.nodes[p.index]!.podCidr]));
        // The same peer id for both families: each family has its own inbound SA with that id in its mark.
        await dp.setPeers(
          new Map(
            peers.flatMap((p) => [
              [p.underlayIp, p.index + 1] as const,
              [v6.nodes[p.index]!.underlayIp, p.index + 1] as const,
            ]),
          ),
        );
        const netns = `/run/netns/${node.netns}`;
        await dp.attach('decrypt', node.underlayDev, { netns });
        for (const pod of node.pods) await dp.attach('encrypt', pod.hostVeth, { netns });
        await dropPmtuIcmp(node);
      }
      const setClamp = async (clamp: MssClamp): Promise<void> => {
        for (const dp of datapaths) await dp.setMssClamp(clamp);
      };
      const [a4, b4] = v4.nodes as [NodePlan, NodePlan];
      const [a6, b6] = v6.nodes as [NodePlan, NodePlan];
      const families = [
        { name: 'IPv4', from: a4.pods[0]!, to: b4.pods[0]!, mss: mssClampForMtu(MTU).ipv4 },
        { name: 'IPv6', from: a6.pods[0]!, to: b6.pods[0]!, mss: mssClampForMtu(MTU).ipv6 },
      ];
      for (const f of families) {
        const r = await ping(f.from.netns, f.to.ip, { count: 3 });
        t.equal(r.received, 3, `${f.name}: small packets cross between the pods (through ESP)`);
      }

      const transfer = (f: (typeof families)[number], port: number, timeoutMs: number): Promise<TcpTransferResult> =>
        tcpTransfer({
          from: { netns: f.from.netns, ip: f.from.ip },
          to: { netns: f.to.netns, ip: f.to.ip },
          port,
          bytes: BYTES,
          seed: `${f.name}-${port}-${process.pid}`,
          timeoutMs,
        });

      t.test('with the clamp', async (t) => {
        await setClamp(mssClampForMtu(MTU));
        for (const [k, f] of families.entries()) {
          const port = 5201 + k;
          const icmpBefore = await Promise.all(v4.nodes.map(droppedIcmp));
          const underlay = await startCapture({
            netns: v4.underlayNetns,
            iface: UNDERLAY_BRIDGE,
            file: path.join(dir, `underlay-${f.name}.pcap`),
            filter: `esp or tcp port ${port}`,
          });
          const server = await startCapture({
            netns: f.to.netns,
            iface: 'eth0',
            file: path.join(dir, `server-${f.name}.pcap`),
            filter: `tcp port ${port}`,
          });
          const client = await startCapture({
            netns: f.from.netns,
            iface: 'eth0',
            file: path.join(dir, `client-${f.name}.pcap`),
            filter: `tcp port ${port}`,
          });
          const r = await transfer(f, port, 240_000);
          for (const c of [underlay, server, client]) await c.stop();
          t.ok(r.completed, `${f.name}: 4 MiB arrived (${r.received} bytes in ${r.seconds.toFixed(1)} s)`);
          t.equal(r.mismatchAt, -1, `${f.name}: byte for byte equal`);
          const syn = (await captureLines(server.file)).find((l) => l.includes('Flags [S],'));
          const synAck = (await captureLines(client.file)).find((l) => l.includes('Flags [S.],'));
          t.match(
            syn,
            new RegExp(`mss ${f.mss}[,\\]]`),
            `${f.name}: the server pod sees the client's SYN with MSS ${f.mss}`,
          );
          t.match(
            synAck,
            new RegExp(`mss ${f.mss}[,\\]]`),
            `${f.name}: the client pod sees the SYN-ACK with MSS ${f.mss}`,
          );
          const wire = await captureLines(underlay.file);
          const esp = wire.filter((l) => l.includes('ESP(spi=0x00000001'));
          t.ok(esp.length > BYTES / 1500, `${f.name}: the underlay carried it as ESP (${esp.length} packets)`);
          t.same(
            wire.filter((l) => !l.includes('ESP(')).slice(0, 3),
            [],
            `${f.name}: no TCP of the transfer in clear on the underlay`,
          );
          const icmpAfter = await Promise.all(v4.nodes.map(droppedIcmp));
          t.same(icmpAfter, icmpBefore, `${f.name}: no ICMP "too big" was needed (none dropped)`);
        }
      });

      t.test('without the clamp (km_ipsec_config zero)', async (t) => {
        await setClamp(NO_MSS_CLAMP);
        for (const [k, f] of families.entries()) {
          const port = 5301 + k;
          const icmpBefore = await Promise.all(v4.nodes.map(droppedIcmp));
          const r = await transfer(f, port, 45_000);
          t.notOk(
            r.completed,
            `${f.name}: the transfer stalls (${r.received} of ${BYTES} bytes after ${r.seconds.toFixed(0)} s)`,
          );
          t.ok(r.received < BYTES, `${f.name}: less than 4 MiB arrived`);
          t.equal(r.mismatchAt, -1, `${f.name}: what arrived is intact`);
          const icmpAfter = await Promise.all(v4.nodes.map(droppedIcmp));
          const family = f.name === 'IPv4' ? 'v4' : 'v6';
          const dropped = icmpAfter[0]![family] - icmpBefore[0]![family];
          t.ok(dropped > 0, `${f.name}: the sending node dropped ${dropped} ICMP "too big" for the pod`);
        }
      });
    },
  );
}
