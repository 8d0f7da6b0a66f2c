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

import { mssClampForMtu, NO_MSS_CLAMP, type MssClamp } from '../../../src/model/esp-overhead.js';
import { kernelSkipReason } from '../../host/lib/kernel.js';
import { ipAddEspStateArgs } from '../../fakes/xfrm-objects.js';
import { buildDualStackEsp } from '../lib/dual-stack-esp.js';
import { tcpTransfer, type TcpTransferResult } from '../lib/tcp-transfer.js';
import { captureLines, exec, execOk, ping, startCapture, UNDERLAY_BRIDGE, type NodePlan } from '../lib/topology.js';

const MTU = 1500;
const BYTES = 4 * 1024 * 1024;
const inVm = process.env.KMESH_VM === '1';
const resultsDir = process.env.KMESH_VM_RESULTS;
const NFT_TABLE = 'kmtmss';

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

/**
 * Bytes the outbound SAs (encrypt mark, SPI 1) from `sender` to `receiver` have carried: `lifetime current` of
 * `ip -s xfrm state` in the sender's namespace.
 */
async function outboundEspBytes(sender: NodePlan, receiver: NodePlan): Promise<number> {
  const out = await execOk(sender.netns, ['ip', '-s', 'xfrm', 'state']);
  let bytes = 0;
  for (const block of out.split(/\n(?=src )/)) {
    if (!block.startsWith(`src ${sender.underlayIp} dst ${receiver.underlayIp}`)) continue;
    if (!/spi 0x00000001\b/.test(block) || !/mark 0xe0\/0xff/.test(block)) continue;
    const m = /lifetime current:\s*\n\s*(\d+)\(bytes\)/.exec(block);
    if (m) bytes += Number(m[1]);
  }
  return bytes;
}

const missing = await missingPrerequisite();
if (missing !== undefined && inVm) {
  t.fail(`the VM kernel must run this suite: ${missing}`);
} else {
  t.test(
    '4 MiB TCP between pods with ICMP filtered: completes with the MSS clamp, stalls without',
    { skip: missing ?? false },
    async (t) => {
      const mesh = await buildDualStackEsp({ prefix: 'kmt-mss-', nodes: 2, podsPerNode: 1, tag: 'mss' });
      const dir = mkdtempSync(path.join(resultsDir ?? os.tmpdir(), 'mss-clamp-'));
      t.teardown(async () => {
        await mesh.destroy();
        if (resultsDir === undefined) rmSync(dir, { recursive: true, force: true });
      });
      const { v4, v6, datapaths } = mesh;
      for (const node of v4.nodes) await dropPmtuIcmp(node);
      const setClamp = async (clamp: MssClamp): Promise<void> => {
        for (const dp of datapaths) await dp.setMssClamp(clamp);
      };
      const [a4, b4] = v4.nodes as [NodePlan, NodePlan];
      const [a6, b6] = v6.nodes as [NodePlan, NodePlan];
      const families = [
        { name: 'IPv4', from: a4.pods[0]!, to: b4.pods[0]!, sender: a4, receiver: b4, mss: mssClampForMtu(MTU).ipv4 },
        { name: 'IPv6', from: a6.pods[0]!, to: b6.pods[0]!, sender: a6, receiver: b6, mss: mssClampForMtu(MTU).ipv6 },
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
          const espBefore = await outboundEspBytes(f.sender, f.receiver);
          const r = await transfer(f, port, 240_000);
          for (const c of [underlay, server, client]) await c.stop();
          const espBytes = (await outboundEspBytes(f.sender, f.receiver)) - espBefore;
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
          // The sender's outbound SA counted the whole transfer (the kernel's own counter). The capture only shows
          // ESP on the wire: block-buffered, it can lose its last block when stopped, and GSO can hand it fewer,
          // larger packets, so its packet count is no measure of the transfer.
          t.ok(
            espBytes >= BYTES,
            `${f.name}: the sender's outbound SA carried ${espBytes} bytes (the transfer: ${BYTES})`,
          );
          const esp = wire.filter((l) => l.includes('ESP(spi=0x00000001'));
          t.ok(esp.length > 0, `${f.name}: the underlay shows it as ESP (${esp.length} packets captured)`);
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
