// VM suite: strict ingress and plaintext evidence (issue 13 items 3 and 4) on the dual-stack ESP mesh of
// lib/dual-stack-esp.ts: two nodes, pod 0 of each managed (tc_mark_encrypt, km_local_pods), pod 1 not. A spoofer
// on the underlay sends plaintext ICMP echo from an address in node 0's pod CIDR (both families) to node 1's
// managed pod, which node 1's XFRM policies do not stop (no policy matches an unmarked packet):
//   - audit: the pod gets it, tc_mark_decrypt counts it for peer 1 (node 0) under "audit";
//   - enforce: the pod gets nothing, it is counted under "enforce" and as dropped;
//   - in every mode encrypted traffic between the managed pods and plaintext between unmanaged pods keep
//     working, and encrypted traffic adds nothing to the plaintext counters;
//   - with node 0's outbound policies removed (encryption gone) its managed pod's traffic arrives in clear and
//     node 1's counter for peer 1 rises (mode off: counted, passed).
// Runs in the VM (npm run test:vm); on a host kernel without ESP it skips with the reason.
import t from 'tap';

import type { PlaintextCount } from '../../../src/datapath/datapath.js';
import { kernelSkipReason } from '../../host/lib/kernel.js';
import { ipAddEspStateArgs } from '../../fakes/xfrm-objects.js';
import { buildDualStackEsp } from '../lib/dual-stack-esp.js';
import { exec, execOk, ping, UNDERLAY_BRIDGE } from '../lib/topology.js';

const inVm = process.env.KMESH_VM === '1';
const SPOOF4 = '10.244.0.77';
const SPOOF6 = 'fd00:10:244:0::77';

async function missingPrerequisite(): Promise<string | undefined> {
  const bpf = kernelSkipReason();
  if (bpf !== false) return bpf;
  const ns = 'kmt-strict-probe';
  await exec(undefined, ['ip', 'netns', 'del', ns]);
  await execOk(undefined, ['ip', 'netns', 'add', ns]);
  try {
    const r = await exec(ns, ipAddEspStateArgs('198.18.0.1', '198.18.0.2', 1, 0x11));
    return r.code === 0 ? undefined : `kernel cannot create an ESP state (${r.stderr.trim()}); run it in the VM`;
  } finally {
    await exec(undefined, ['ip', 'netns', 'del', ns]);
  }
}

/** Echo requests a namespace has received so far (IPv4 and IPv6 ICMP MIB counters). */
async function inEchos(netns: string): Promise<{ v4: number; v6: number }> {
  const snmp = await execOk(netns, ['cat', '/proc/net/snmp']);
  const [head, values] = snmp.split('\n').filter((l) => l.startsWith('Icmp:'));
  const v4 = Number(values!.split(/\s+/)[head!.split(/\s+/).indexOf('InEchos')]);
  const v6 = Number(/^Icmp6InEchos\s+(\d+)/m.exec(await execOk(netns, ['cat', '/proc/net/snmp6']))?.[1]);
  return { v4, v6 };
}

const total = (counts: PlaintextCount[], mode: string, peer = 1): number =>
  counts.filter((c) => c.peer === peer && c.mode === mode).reduce((s, c) => s + c.packets, 0);

const missing = await missingPrerequisite();
if (missing !== undefined && inVm) {
  t.fail(`the VM kernel must run this suite: ${missing}`);
} else {
  t.test(
    'strict ingress: audit counts, enforce drops spoofed plaintext; evidence when encryption is removed',
    { skip: missing ?? false },
    async (t) => {
      const mesh = await buildDualStackEsp({
        prefix: 'kmt-str-',
        nodes: 2,
        podsPerNode: 2,
        managed: (pod) => pod.index === 0,
        tag: 'strict',
      });
      t.teardown(() => mesh.destroy());
      const { v4, v6, datapaths } = mesh;
      const [n0, n1] = v4.nodes;
      const [m0, m1] = v6.nodes;
      const dp1 = datapaths[1]!;
      // The spoofer: the underlay namespace with an address on the bridge and one in node 0's pod CIDR.
      const ul = v4.underlayNetns;
      await execOk(undefined, ['ip', '-n', ul, '-batch', '-'], {
        input:
          [
            `addr add 198.18.0.254/24 dev ${UNDERLAY_BRIDGE}`,
            `addr add fd00:198:18::fe/64 dev ${UNDERLAY_BRIDGE} nodad`,
            `addr add ${SPOOF4}/32 dev lo`,
            `addr add ${SPOOF6}/128 dev lo nodad`,
            `route add ${n1!.podCidr} via ${n1!.underlayIp}`,
            `route add ${m1!.podCidr} via ${m1!.underlayIp}`,
          ].join('\n') + '\n',
      });
      const target4 = n1!.pods[0]!;
      const target6 = m1!.pods[0]!;
      const spoof = async (): Promise<void> => {
        await exec(ul, ['ping', '-n', '-c', '4', '-i', '0.2', '-W', '1', '-I', SPOOF4, target4.ip], {
          timeoutMs: 30000,
        });
        await exec(ul, ['ping', '-n', '-c', '4', '-i', '0.2', '-W', '1', '-I', SPOOF6, target6.ip], {
          timeoutMs: 30000,
        });
      };
      const trafficWorks = async (what: string): Promise<void> => {
        for (const [from, to, fam] of [
          [n0!.pods[0]!, target4, 'IPv4'],
          [m0!.pods[0]!, target6, 'IPv6'],
        ] as const) {
          t.equal((await ping(from.netns, to.ip, { count: 3 })).received, 3, `${what}: ${fam} managed pods, encrypted`);
        }
        for (const [from, to, fam] of [
          [n0!.pods[1]!, n1!.pods[1]!, 'IPv4'],
          [m0!.pods[1]!, m1!.pods[1]!, 'IPv6'],
        ] as const) {
          t.equal(
            (await ping(from.netns, to.ip, { count: 3 })).received,
            3,
            `${what}: ${fam} unmanaged pods, in clear`,
          );
        }
      };

      await trafficWorks('mode off');
      t.same(await dp1.plaintext(), [], 'encrypted and unmanaged traffic add nothing to the plaintext counters');

      await dp1.setStrictMode('audit');
      let echos = await inEchos(target4.netns);
      await spoof();
      let after = await inEchos(target4.netns);
      t.equal(after.v4 - echos.v4, 4, 'audit: the managed pod received the 4 spoofed IPv4 echoes');
      t.equal(after.v6 - echos.v6, 4, 'audit: and the 4 IPv6 ones');
      t.equal(total(await dp1.plaintext(), 'audit'), 8, 'audit: all 8 counted for peer 1 (node 0)');
      await trafficWorks('mode audit');

      await dp1.setStrictMode('enforce');
      const dropsBefore = (await dp1.stats()).counters.decryptPlaintextDropped;
      echos = await inEchos(target4.netns);
      await spoof();
      after = await inEchos(target4.netns);
      t.equal(after.v4 - echos.v4, 0, 'enforce: no spoofed IPv4 echo reached the pod');
      t.equal(after.v6 - echos.v6, 0, 'enforce: no spoofed IPv6 echo reached the pod');
      t.equal(total(await dp1.plaintext(), 'enforce'), 8, 'enforce: all 8 counted');
      t.equal((await dp1.stats()).counters.decryptPlaintextDropped - dropsBefore, 8, 'enforce: all 8 dropped');
      await trafficWorks('mode enforce');
      t.equal(total(await dp1.plaintext(), 'enforce'), 8, 'enforce: encrypted traffic counted nothing more');

      // Evidence: node 0 stops encrypting to node 1 (its outbound policies go); node 1 counts what arrives.
      await dp1.setStrictMode('off');
      for (const [node, peer] of [
        [n0!, n1!],
        [m0!, m1!],
      ] as const) {
        await execOk(node.netns, [
          'ip',
          'xfrm',
          'policy',
          'delete',
          'src',
          node.podCidr,
          'dst',
          peer.podCidr,
          'dir',
          'out',
          'mark',
          '0xe0',
          'mask',
          '0xff',
        ]);
      }
      const offBefore = total(await dp1.plaintext(), 'off');
      t.equal(offBefore, 0, 'nothing counted in mode off while everything was encrypted');
      t.equal(
        (await ping(n0!.pods[0]!.netns, target4.ip, { count: 3 })).received,
        3,
        'IPv4 now in clear, still delivered (off)',
      );
      t.equal((await ping(m0!.pods[0]!.netns, target6.ip, { count: 3 })).received, 3, 'IPv6 too');
      t.ok(
        total(await dp1.plaintext(), 'off') >= 6,
        `the evidence counter rose: ${total(await dp1.plaintext(), 'off')} packets`,
      );
    },
  );
}
