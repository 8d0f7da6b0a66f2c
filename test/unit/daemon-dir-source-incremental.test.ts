// The directory source scans incrementally (dir-scan.ts): only new or changed files are read, removed ones are
// dropped, an unchanged file keeps its parsed object, bad files give the same problem lines as a full parse,
// and a same-size rewrite the stat cannot show is still seen (racy files at once, a full reread at the latest).
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { DirScanner, RACY_MS } from '../../src/daemon/sources/dir-scan.js';
import { DirSource } from '../../src/daemon/sources/dir-source.js';

const info = (name: string, spi: number) => ({
  apiVersion: 'kmesh.net/v1alpha1',
  kind: 'KmeshNodeInfo',
  metadata: { name, namespace: 'kmesh-system' },
  spec: { spi, addresses: ['198.18.0.9'], bootID: 'b', podCIDRS: ['10.244.9.0/24'] },
});

function writeJson(file: string, obj: unknown): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file + '.tmp', typeof obj === 'string' ? obj : JSON.stringify(obj));
  fs.renameSync(file + '.tmp', file);
}

/** Files as written an hour ago: no longer racy, so a scan rereads them only when their stat changes. */
function age(root: string): void {
  const old = new Date(Date.now() - 3_600_000);
  const walk = (dir: string): void => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else fs.utimesSync(p, old, old);
    }
  };
  walk(root);
}

t.test('changed, added, removed and bad files; unchanged files are neither reread nor replaced', async (t) => {
  const root = t.testdir({
    nodes: { 'node-1.json': JSON.stringify({ metadata: { name: 'node-1', uid: 'u1' } }) },
    namespaces: { 'default.json': JSON.stringify({ metadata: { name: 'default' } }) },
    pods: {},
    kmeshnodeinfos: Object.fromEntries(
      ['node-2', 'node-3', 'node-4'].map((n, i) => [`${n}.json`, JSON.stringify(info(n, i + 1))]),
    ),
  });
  age(root);
  const source = new DirSource(root, 'node-1', { pollMs: 60_000 });
  let changes = 0;
  await source.start(() => (changes += 1));
  t.teardown(() => source.stop());
  const names = () => source.view().nodeInfos.map((i) => i.name);
  t.same(names(), ['node-2', 'node-3', 'node-4']);
  t.equal(source.view().node?.uid, 'u1');
  t.equal(changes, 1);
  const first = source.view().nodeInfos;
  const read0 = source.scanStats().filesRead;
  t.equal(read0, 5, 'the first scan reads every file');

  await source.rescan();
  t.equal(changes, 1, 'nothing changed: no notification');
  t.equal(source.scanStats().filesRead, read0, 'nothing changed: no file read');
  t.equal(source.view().nodeInfos, first, 'and the same view');

  const dir = path.join(root, 'kmeshnodeinfos');
  writeJson(path.join(dir, 'node-3.json'), info('node-3', 7));
  await source.rescan();
  t.equal(changes, 2);
  // fs.watch also asks for a rescan, which may read the just-written (racy) file once more: never another one.
  const read1 = source.scanStats().filesRead - read0;
  t.ok(read1 === 1 || read1 === 2, `only the changed file is read (${read1} reads)`);
  t.equal(source.scanStats().filesChanged, 6, 'five files at the start, then one');
  const second = source.view().nodeInfos;
  t.equal(second[0]?.object, first[0]?.object, 'an unchanged file keeps its parsed object');
  t.equal(second[2]?.object, first[2]?.object);
  t.not(second[1]?.object, first[1]?.object, 'the changed file has a new one');
  t.match(second[1]?.object, { spec: { spi: 7 } });

  writeJson(path.join(dir, 'node-25.json'), info('node-25', 1));
  fs.rmSync(path.join(dir, 'node-2.json'));
  await source.rescan();
  t.equal(changes, 3);
  t.same(names(), ['node-25', 'node-3', 'node-4'], 'added and removed, in file-name order');
  t.equal(source.view().nodeInfos[1]?.object, second[1]?.object);

  fs.rmSync(path.join(dir, 'node-25.json'));
  await source.rescan();
  t.same(names(), ['node-3', 'node-4'], 'a removal alone is seen');
  t.equal(changes, 4);

  writeJson(path.join(dir, 'node-3.json'), '{"metadata":');
  writeJson(path.join(root, 'nodes', 'node-1.json'), '{');
  writeJson(path.join(root, 'namespaces', 'bad.json'), '[');
  writeJson(path.join(root, 'pods', 'default', 'p.json'), { metadata: { name: 'p' } });
  await source.rescan();
  t.same(names(), ['node-4'], 'a file with invalid JSON is skipped');
  t.same(
    source.view().problems.map((p) => p.replace(/ \(.+\)$/, ' (…)')),
    [
      'nodes/node-1.json: invalid JSON (…)',
      'namespaces/bad.json: invalid JSON (…)',
      'pods/default/p.json: Pod object lacks metadata.name/namespace',
      'kmeshnodeinfos/node-3.json: invalid JSON (…)',
    ],
    'one line per bad file, kind by kind, as a full parse gives them',
  );
  t.equal(source.view().node, undefined, 'an unreadable Node file: this node is not known');

  writeJson(path.join(dir, 'node-3.json'), info('node-3', 8));
  await source.rescan();
  t.same(names(), ['node-3', 'node-4'], 'a fixed file is back');
  t.equal(source.view().problems.length, 3);
});

t.test('a rewrite with the same text neither notifies nor replaces the object', async (t) => {
  const root = t.testdir({ kmeshnodeinfos: { 'node-2.json': JSON.stringify(info('node-2', 1)) } });
  const source = new DirSource(root, 'node-1', { pollMs: 60_000 });
  let changes = 0;
  await source.start(() => (changes += 1));
  t.teardown(() => source.stop());
  const object = source.view().nodeInfos[0]?.object;
  writeJson(path.join(root, 'kmeshnodeinfos', 'node-2.json'), info('node-2', 1));
  await source.rescan();
  t.ok(source.scanStats().filesRead >= 2, 'the new inode is read');
  t.equal(changes, 1, 'same text: no notification');
  t.equal(source.view().nodeInfos[0]?.object, object);
});

t.test('a same-size rewrite the stat cannot show: racy files are reread, a full scan catches the rest', async (t) => {
  const root = t.testdir({ kmeshnodeinfos: {} });
  const file = path.join(root, 'kmeshnodeinfos', 'node-2.json');
  // A filesystem whose timestamps did not move between two writes in place (same inode, same size, same
  // mtime and ctime): what a coarse clock gives two writes within one tick.
  let clock = 1_000_000_000;
  const mtimeNs = BigInt(clock) * 1_000_000n;
  const coarseStat = (f: string): fs.BigIntStats | undefined => {
    const st = fs.statSync(f, { bigint: true, throwIfNoEntry: false });
    if (st === undefined) return undefined;
    return Object.assign(st, { mtimeNs, ctimeNs: mtimeNs });
  };
  const scanner = new DirScanner(root, 'kmeshnodeinfos', (_rel, obj) => obj, { now: () => clock, stat: coarseStat });
  const spiNow = () => (scanner.items()[0] as { spec: { spi: number } }).spec.spi;
  fs.writeFileSync(file, JSON.stringify(info('node-2', 1)));
  clock += 1; // the scan runs within the same tick as the write: the file is racy
  t.ok(await scanner.scan());
  t.equal(spiNow(), 1);
  fs.writeFileSync(file, JSON.stringify(info('node-2', 2)));
  t.ok(await scanner.scan(), 'the racy file is reread and its change seen');
  t.equal(spiNow(), 2);

  clock += RACY_MS; // from now on the file is old enough: its stat is trusted
  t.notOk(await scanner.scan(), 'reread once more (still racy at the last scan): same text');
  const read = scanner.stats.filesRead;
  t.notOk(await scanner.scan());
  t.equal(scanner.stats.filesRead, read, 'no longer racy: not reread');
  fs.writeFileSync(file, JSON.stringify(info('node-2', 3)));
  t.notOk(await scanner.scan(), 'an incremental scan cannot see this rewrite');
  t.equal(spiNow(), 2);
  t.ok(await scanner.scan(true), 'the full reread sees it');
  t.equal(spiNow(), 3);
  t.equal(scanner.stats.fullScans, 1);
});

t.test('every fullRescanEvery-th poll rereads every file', async (t) => {
  const root = t.testdir({
    kmeshnodeinfos: { 'node-2.json': JSON.stringify(info('node-2', 1)), 'node-3.json': '{}' },
  });
  age(root);
  const source = new DirSource(root, 'node-1', { pollMs: 15, fullRescanEvery: 3 });
  let changes = 0;
  await source.start(() => (changes += 1));
  t.teardown(() => source.stop());
  while (source.scanStats().fullScans < 2) await new Promise((r) => setTimeout(r, 10));
  await source.stop();
  const stats = source.scanStats();
  t.equal(stats.filesRead, 2 + 2 * 2, 'the first scan and two full rereads read both files; the others none');
  t.ok(stats.scans >= 6, `${stats.scans} scans`);
  t.equal(changes, 1, 'nothing changed: one notification (the first scan)');
  t.throws(() => new DirSource(root, 'node-1', { fullRescanEvery: 0 }), /fullRescanEvery 0 is not a whole number/);
});
