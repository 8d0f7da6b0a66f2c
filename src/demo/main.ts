// `npm run demo`: the user guide's IPsec walk-through on one machine, with no cluster. Three nodes with two
// pods each live in network namespaces; the objects and the secret live in a directory store; one
// kmesh-daemon per node runs through start_kmesh.sh. Steps: create the secret, start the daemons with
// --enable-ipsec=true, label the namespace, show ESP spi=0x00000001 on the wire (and no plaintext pod
// traffic), rotate the key under continuous traffic, show spi=0x00000002 with zero loss, print every
// node's SAs and policies. When the host kernel cannot do ESP, it says so and runs itself in the
// kernel-test VM. Exit code 0 only when every check held.
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { packageRoot } from '../native/addon.js';
import { DirClusterStore } from './cluster-store.js';
import { allOnSpi, DaemonRunner } from './daemons.js';
import { espSupport } from './esp-support.js';
import { NetnsCluster, nth, podOf } from './netns-cluster.js';
import { capture, espPackets, ping, xfrmListing, xfrmStat, xfrmErrorDelta, type PingResult } from './probes.js';
import { waitFor } from './shell.js';

const say = (text = ''): void => void process.stdout.write(`${text}\n`);
const step = (n: number, title: string): void => say(`\n=== Step ${n}: ${title}`);

class CheckFailed extends Error {}

function check(ok: boolean, what: string): void {
  if (!ok) throw new CheckFailed(what);
  say(`  ok: ${what}`);
}

async function runInVm(reason: string): Promise<number> {
  say(`The host kernel (${os.release()}) cannot run ESP: ${reason.replace(/\.+$/, '')}.`);
  const kernel = process.env.KMESH_DEMO_KERNEL === '6.1' ? '6.1' : '6.12';
  say(`Running the demo inside the kernel-test VM instead (guest kernel ${kernel}, qemu TCG: slower, same steps).\n`);
  const runner = (await import(
    path.join(packageRoot(), 'dist', 'test', 'vm', 'runner.js')
  )) as typeof import('../../test/vm/runner.js');
  const result = await runner.runInVm({
    kernel,
    command: 'node dist/src/demo/main.js --in-vm',
    timeoutMs: 25 * 60_000,
    memoryMb: 1536,
    onOutput: (text) => process.stdout.write(text),
  });
  say(`\n(demo ran in the VM, guest kernel ${result.release}, ${Math.round(result.durationMs / 1000)} s)`);
  return result.exitCode;
}

async function demo(): Promise<void> {
  const work = await fsp.mkdtemp(path.join(os.tmpdir(), 'kmesh-demo-'));
  const store = new DirClusterStore(path.join(work, 'store'));
  const cluster = new NetnsCluster({ prefix: 'kmd', nodes: 3, podsPerNode: 2 });
  const daemons = new DaemonRunner({ workDir: work, store, rotationGraceSeconds: 5 });
  const statuses = () => Promise.all(cluster.nodes.map((n) => daemons.status(n)));
  const waitSpi = async (spi: number, what: string) => {
    try {
      await waitFor(what, async () => allOnSpi(await statuses(), spi, cluster.nodes.length), 180_000, 500);
    } catch (err) {
      for (const n of cluster.nodes) say(`--- ${n.name} daemon log (tail)\n${await daemons.logTail(n)}`);
      throw err;
    }
  };
  try {
    say(`Three simulated nodes in network namespaces (kmd-*), store ${store.dir}`);
    await cluster.create();
    for (const n of cluster.nodes) {
      say(
        `  ${n.name}: underlay ${n.underlayIp}, pod CIDR ${n.podCidr}, pods ${n.pods.map((p) => `${p.name}=${p.ip}`).join(' ')}`,
      );
      await store.put('nodes', cluster.nodeObject(n));
      for (const p of n.pods) await store.put('pods', cluster.podObject(n, p));
    }
    await store.put('namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'default' } });

    step(1, 'generate the pre-shared key: kmeshctl secret create');
    const created = await store.kmeshctl(['secret', 'create']);
    say(`  $ kmeshctl --store=dir:${store.dir} secret create\n  ${created.stdout.trim()}${created.stderr.trim()}`);
    check(created.code === 0, 'kmeshctl secret create succeeded');
    const got = await store.kmeshctl(['secret', 'get']);
    check(/"spi":\s*1/.test(got.stdout), 'the secret holds SPI 1');

    step(2, 'start one daemon per node: ./start_kmesh.sh --mode=dual-engine --enable-bypass=false --enable-ipsec=true');
    for (const n of cluster.nodes) {
      const pid = await daemons.start(n);
      say(`  ${n.name}: started (pid ${pid}) in netns ${n.netns}, log ${daemons.logFile(n)}`);
    }
    await waitSpi(1, 'every node to advertise SPI 1 and reach both peers with it');
    check(true, 'every node advertises SPI 1 and has SAs to both peers');

    step(3, 'put the pods under Kmesh: label namespace default istio.io/dataplane-mode=Kmesh');
    await store.put('namespaces', {
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: { name: 'default', labels: { 'istio.io/dataplane-mode': 'Kmesh' } },
    });
    await waitFor(
      'tc_mark_encrypt on every pod veth',
      async () =>
        (await statuses()).every(
          (s) => s !== undefined && s.attachments.filter((a) => a.program === 'encrypt').length === 2,
        ),
      120_000,
      500,
    );
    check(true, 'tc_mark_encrypt attached to both pod veths and tc_mark_decrypt to eth0 on every node');

    step(4, 'check the traffic is encrypted: tcpdump on the underlay | grep ESP');
    const pairs = cluster.nodes.flatMap((a) => cluster.nodes.filter((b) => b !== a).map((b) => [a, b] as const));
    const esp = await capture(cluster.underlayNetns, 'br0', 'esp');
    const clear = await capture(cluster.underlayNetns, 'br0', 'net 10.244.0.0/16');
    const pings1 = await Promise.all(pairs.map(([a, b]) => ping(podOf(a, 0).netns, podOf(b, 0).ip, 5, 0.2)));
    const espLines1 = await esp.stop();
    const clearLines1 = await clear.stop();
    for (const l of espLines1.slice(0, 6)) say(`  ${l}`);
    say(`  ... ${espLines1.length} ESP packets captured`);
    check(
      pings1.every((p) => p.received === p.transmitted),
      `pod-to-pod pings all answered (${pings1.map((p) => `${p.received}/${p.transmitted}`).join(' ')})`,
    );
    const packets1 = espPackets(espLines1);
    for (const [a, b] of pairs) {
      check(
        packets1.some((p) => p.src === a.underlayIp && p.dst === b.underlayIp && p.spi === 1),
        `ESP spi=0x00000001 from ${a.name} to ${b.name}`,
      );
    }
    check(clearLines1.length === 0, 'no pod packet crossed the underlay in clear');

    step(5, 'replace the pre-shared key under continuous traffic: kmeshctl secret create');
    const before = await Promise.all(cluster.nodes.map((n) => xfrmStat(n.netns)));
    const esp2 = await capture(cluster.underlayNetns, 'br0', 'esp');
    const continuous: Promise<PingResult>[] = pairs.map(([a, b]) => ping(podOf(a, 1).netns, podOf(b, 1).ip, 300, 0.1));
    await new Promise((r) => setTimeout(r, 2000));
    const rotated = await store.kmeshctl(['secret', 'create']);
    say(`  $ kmeshctl --store=dir:${store.dir} secret create\n  ${rotated.stdout.trim()}${rotated.stderr.trim()}`);
    check(rotated.code === 0, 'key rotated');
    const t0 = Date.now();
    await waitSpi(2, 'every node to move to SPI 2');
    say(`  every node sends with SPI 2 ${((Date.now() - t0) / 1000).toFixed(1)} s after the secret changed`);
    const burst = await Promise.all(pairs.map(([a, b]) => ping(podOf(a, 0).netns, podOf(b, 0).ip, 3, 0.2)));
    const pings2 = [...(await Promise.all(continuous)), ...burst];
    const espLines2 = await esp2.stop();
    for (const l of espPackets(espLines2)
      .filter((p) => p.spi === 2)
      .slice(0, 6))
      say(`  ${l.line}`);
    const packets2 = espPackets(espLines2);
    for (const [a, b] of pairs) {
      check(
        packets2.some((p) => p.src === a.underlayIp && p.dst === b.underlayIp && p.spi === 2),
        `ESP spi=0x00000002 from ${a.name} to ${b.name}`,
      );
    }
    const sent = pings2.reduce((s, p) => s + p.transmitted, 0);
    const lost = pings2.reduce((s, p) => s + p.transmitted - p.received, 0);
    check(lost === 0, `zero packets lost during the rotation (${sent} sent)`);
    const after = await Promise.all(cluster.nodes.map((n) => xfrmStat(n.netns)));
    const errs = cluster.nodes.map((n, i) => xfrmErrorDelta(nth(before, i), nth(after, i)));
    check(
      errs.every((e) => Object.keys(e).length === 0),
      'no XFRM error counter moved',
    );
    await waitFor(
      'SPI 1 SAs removed after the grace period',
      async () =>
        (await Promise.all(cluster.nodes.map((n) => xfrmListing(n.netns)))).every(
          (l) => !/spi 0x00000001 /.test(l.states),
        ),
      120_000,
      1000,
    );
    check(true, 'the SPI 1 SAs are gone after the grace period');

    step(6, "each node's SAs and policies (ip xfrm state / ip xfrm policy; key bytes redacted)");
    for (const n of cluster.nodes) {
      const l = await xfrmListing(n.netns);
      say(
        `--- ${n.name} (${n.underlayIp}) states:\n${l.states.trimEnd()}\n--- ${n.name} policies:\n${l.policies.trimEnd()}`,
      );
    }
    say('\nDemo finished: every check held.');
  } finally {
    await daemons.stopAll();
    for (const n of cluster.nodes) {
      const u = await daemons.uninstall(n);
      if (u.code !== 0) say(`  uninstall on ${n.name}: ${u.stderr.trim()}`);
    }
    await cluster.destroy();
    await fsp.rm(work, { recursive: true, force: true });
  }
}

async function main(): Promise<number> {
  if (process.getuid?.() !== 0) {
    say('The demo needs root (network namespaces, XFRM, eBPF): run it with sudo.');
    return 1;
  }
  const inVm = process.argv.includes('--in-vm');
  if (!inVm) {
    const esp = await espSupport();
    if (!esp.ok) return runInVm(esp.reason);
  }
  try {
    await demo();
    return 0;
  } catch (err) {
    say(`\nDemo FAILED: ${(err as Error).message}`);
    return 1;
  }
}

process.exitCode = await main();
