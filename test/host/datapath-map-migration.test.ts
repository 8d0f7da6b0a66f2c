// Upgrade over pins of an earlier build whose km_ipsec_peers had another definition (root, private bpffs root, netns
// kmt-dp-mig-<pid> with one veth pair): the objects are built here once more with the old definition (8,192
// entries, preallocated), loaded, filled and attached; then this build loads over the same pins. Its km_ipsec_peers
// replaces the old map with the old entries carried over, one log line says so, no _old pin is left, the other
// maps are reused as they were, the attached decrypt program is the new one and reads the new map; a migration
// interrupted after the set-aside is finished by the next load. Without the migration this build does not load
// (libbpf: the pinned map's parameters differ).
import { existsSync, mkdtempSync, renameSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';

import { BpfDatapath } from '../../src/datapath/bpf-datapath.js';
import { carryOver } from '../../src/datapath/map-migration.js';
import { nativeBpf, withFd } from '../../src/datapath/native-bpf.js';
import { ipFrame, PROTO_ESP } from './lib/packets.js';
import {
  addNetns,
  delNetns,
  kernelSkipReason,
  netnsPath,
  OBJ_DIR,
  privateBpffsRoot,
  REPO_ROOT,
  run,
} from './lib/kernel.js';

const skip = kernelSkipReason();
const root = privateBpffsRoot('mig');
const ns = `kmt-dp-mig-${process.pid}`;
const PEERS = new Map<string, number>([
  ['198.18.0.2', 1],
  ['198.18.0.3', 0x1234],
  ['fd00:198:18::2', 0xffff],
]);

/** The datapath objects with km_ipsec_peers as the previous build defined it. */
function buildOldObjects(dir: string): void {
  for (const prog of ['tc_mark_encrypt', 'tc_mark_decrypt']) {
    run('clang', [
      '-O2',
      '-g',
      '-Wall',
      '-Werror',
      '-target',
      'bpf',
      '-I/usr/include/x86_64-linux-gnu',
      `-I${path.join(REPO_ROOT, 'bpf')}`,
      '-DKM_IPSEC_PEERS_MAX=8192',
      '-DKM_IPSEC_PEERS_FLAGS=0',
      '-c',
      path.join(REPO_ROOT, 'bpf', `${prog}.c`),
      '-o',
      path.join(dir, `${prog}.o`),
    ]);
  }
}

t.test('pinned maps of an earlier definition are migrated at load', { skip }, async (t) => {
  const bpf = nativeBpf();
  const oldDir = mkdtempSync(path.join(os.tmpdir(), 'kmt-dp-mig-'));
  const dps: BpfDatapath[] = [];
  t.teardown(async () => {
    for (const dp of dps) dp.close();
    const last = new BpfDatapath();
    await last
      .load({ bpffsRoot: root, objDir: OBJ_DIR })
      .then(() => last.uninstall())
      .catch(() => undefined);
    rmSync(root, { recursive: true, force: true });
    delNetns(ns);
    rmSync(oldDir, { recursive: true, force: true });
  });
  addNetns(ns);
  run('ip', ['link', 'add', 'kmd0', 'type', 'veth', 'peer', 'name', 'kmd1'], ns);
  run('ip', ['link', 'set', 'kmd0', 'up'], ns);
  buildOldObjects(oldDir);
  const pinInfo = (name: string) => withFd(bpf.getPinned(`${root}/map/${name}`), (fd) => bpf.mapInfo(fd));
  const esp = (src: string) => ipFrame(src, src.includes(':') ? 'fd00:198:18::1' : '198.18.0.1', PROTO_ESP);

  const old = new BpfDatapath();
  dps.push(old);
  await old.load({ bpffsRoot: root, objDir: oldDir });
  await old.setPeers(PEERS);
  await old.setRemoteCidrs(['10.244.2.0/24']);
  const attached = await old.attach('decrypt', 'kmd0', { netns: netnsPath(ns) });
  const before = { peers: await pinInfo('km_ipsec_peers'), nodeinfo: await pinInfo('km_nodeinfo') };
  t.equal(before.peers.maxEntries, 8192, 'the old definition');
  t.equal(before.peers.flags, 0);
  t.equal(attached.progId, old.programIds().decrypt);
  old.close();

  const lines: { msg: string; fields: Record<string, unknown> }[] = [];
  const dp = new BpfDatapath();
  dps.push(dp);
  await dp.load({ bpffsRoot: root, objDir: OBJ_DIR, log: (msg, fields) => lines.push({ msg, fields }) });
  const after = { peers: await pinInfo('km_ipsec_peers'), nodeinfo: await pinInfo('km_nodeinfo') };
  t.same(
    lines.map((l) => l.msg),
    [
      'pinned BPF map km_ipsec_peers has a different definition in this build (max_entries 8192 -> 32768, ' +
        'flags 0x0 -> 0x1): replaced by a new map, 3 entries carried over',
    ],
  );
  t.match(lines[0]?.fields, { map: 'km_ipsec_peers', carried: 3, oldMapId: before.peers.id, newMapId: after.peers.id });
  t.equal(after.peers.maxEntries, 32768);
  t.equal(after.peers.flags, 1, 'BPF_F_NO_PREALLOC');
  t.not(after.peers.id, before.peers.id, 'a new map');
  t.equal(after.nodeinfo.id, before.nodeinfo.id, 'unchanged definitions: the same map, reused');
  t.notOk(existsSync(`${root}/map/km_ipsec_peers_old`), 'no old pin left');
  t.same((await dp.stats()).peers, 3);

  const newDecrypt = dp.programIds().decrypt;
  t.not(newDecrypt, attached.progId, 'same code, but a new program: the pinned one read the old map');
  const live = await dp.attachments();
  t.same(
    live.map((a) => [a.kind, a.ifname, a.progId]),
    [['decrypt', 'kmd0', newDecrypt]],
    'the attachment follows the new program',
  );
  const progMaps = JSON.parse(run('bpftool', ['-j', 'prog', 'show', 'id', String(newDecrypt)])) as {
    map_ids: number[];
  };
  t.ok(progMaps.map_ids.includes(after.peers.id), 'the attached program reads the new km_ipsec_peers');
  t.notOk(progMaps.map_ids.includes(before.peers.id));
  t.equal((await dp.testRun('tc_mark_decrypt', esp('198.18.0.3'))).mark, 0x123400d0, 'carried entry answers');
  t.equal((await dp.testRun('tc_mark_decrypt', esp('fd00:198:18::2'))).mark, 0xffff00d0, 'and the IPv6 one');

  // Loading again over pins of this build: nothing to migrate, the programs are adopted.
  dp.close();
  const again = new BpfDatapath();
  dps.push(again);
  const quiet: string[] = [];
  await again.load({ bpffsRoot: root, objDir: OBJ_DIR, log: (msg) => quiet.push(msg) });
  t.same(quiet, [], 'no migration the second time');
  t.equal(again.programIds().decrypt, newDecrypt, 'the pinned program adopted');

  // An interrupted migration: the old map set aside as _old, no new pin yet. The next load finishes it.
  again.close();
  const peersPin = `${root}/map/km_ipsec_peers`;
  renameSync(peersPin, `${peersPin}_old`);
  const resumed = new BpfDatapath();
  dps.push(resumed);
  const resumedLines: string[] = [];
  await resumed.load({ bpffsRoot: root, objDir: OBJ_DIR, log: (msg) => resumedLines.push(msg) });
  t.same(resumedLines, [
    'pinned BPF map km_ipsec_peers has a different definition in this build (interrupted migration): replaced by ' +
      'a new map, 3 entries carried over',
  ]);
  t.notOk(existsSync(`${peersPin}_old`));
  t.equal((await resumed.stats()).peers, 3);
});

t.test('per-CPU maps are carried with every CPU value (mapApply takes what mapDump gives)', { skip }, async (t) => {
  const bpf = nativeBpf();
  const stats = { type: 6, name: 'kmt_mig_stats', keySize: 4, valueSize: 8 };
  const from = await bpf.mapCreate({ ...stats, maxEntries: 4 });
  const to = await bpf.mapCreate({ ...stats, maxEntries: 16 });
  t.teardown(() => {
    from.close();
    to.close();
  });
  const value = Buffer.alloc(8 * bpf.possibleCpus);
  for (let cpu = 0; cpu < bpf.possibleCpus; cpu++) value.writeBigUInt64LE(BigInt(100 + cpu), cpu * 8);
  const key = Buffer.from([2, 0, 0, 0]);
  await bpf.mapApply(from, [{ key, value }]);
  const lines: string[] = [];
  await carryOver(
    bpf,
    {
      name: 'kmt_mig_stats',
      oldPin: `${root}-percpu-never-pinned`,
      fd: from,
      change: 'max_entries 4 -> 16',
      pinned: { ...bpf.mapInfo(from) },
    },
    to,
    (msg) => lines.push(msg),
  );
  t.same(await bpf.mapLookup(to, key), value, 'every CPU value carried');
  t.same(lines, [
    'pinned BPF map kmt_mig_stats has a different definition in this build (max_entries 4 -> 16): replaced by a ' +
      'new map, 4 entries carried over',
  ]);
});
