// The daemon writes its KmeshNodeInfo status (an event on every peer's watch) as status-write-timing.ts decides:
// peers joining one after another change its peer count at every step, and that is written once per reporting
// interval, not once per step; a new key is written at once, inside the interval too.
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { reportIntervalMs } from '../../src/model/node-key-status.js';
import { FakeXfrmKernel } from '../fakes/fake-xfrm-kernel.js';
import { BOOT, KEY, onePeerLoop, writeJson } from '../fixtures/one-peer-loop.js';

const peerInfo = (i: number) => ({
  apiVersion: 'kmesh.net/v1alpha1',
  kind: 'KmeshNodeInfo',
  metadata: { name: `node-${i}`, namespace: 'kmesh-system' },
  spec: { spi: 1, addresses: [`198.18.0.${i}`], bootID: BOOT(i), podCIDRS: [`10.244.${i}.0/24`] },
});

t.test('joins in a row: one report per interval; a new key at once', async (t) => {
  const s = await onePeerLoop(t, new FakeXfrmKernel());
  const own = path.join(s.dir, 'kmeshnodeinfos/node-1.json');
  const published = () =>
    JSON.parse(fs.readFileSync(own, 'utf8')) as { status: { peerCount: number; heldSpis?: number[] } };
  const writes = async (why: string) =>
    (await s.metrics.text()).split('\n').find((l) => l.startsWith(`kmesh_node_status_writes_total{why="${why}"} `));
  s.loop.keyEvent({ kind: 'key', key: KEY });
  await s.loop.idle();
  await s.resync(2);
  t.equal(published().status.peerCount, 1, 'the first status: one peer');
  t.match(await writes('first'), / 1$/);

  // Ten peers join, a step each, with no time passing: each step counts one more peer. The first join comes after
  // a quiet spell (the resyncs above): written at once; the nine after it wait for the interval.
  for (let i = 3; i <= 12; i++) {
    writeJson(path.join(s.dir, `kmeshnodeinfos/node-${i}.json`), peerInfo(i));
    await s.source.rescan();
    s.loop.trigger('change');
    await s.loop.idle();
    t.equal(s.loop.currentStatus().keyReport?.peerCount, i - 1, `step with node-${i}: the report counts it`);
  }
  t.equal(published().status.peerCount, 2, 'the first join written, not the nine after it');
  t.match(await writes('report'), / 1$/, 'one report written');
  const due = s.loop.currentStatus().statusReportDueInMs;
  t.ok(due !== null && due > 0 && due <= reportIntervalMs(11), `/status says when the report is due (${due} ms)`);

  // A new key is what peers act on: written at once, inside the interval (with the peer count of now).
  s.loop.keyEvent({ kind: 'key', key: { ...KEY, spi: 2, key: Buffer.alloc(36, 0x6b) } });
  await s.loop.idle();
  t.same(published().status.heldSpis, [1, 2], 'the new key: written at once');
  t.equal(published().status.peerCount, 11, 'with the peers of now');

  // One more join, then the interval passes: one report.
  writeJson(path.join(s.dir, 'kmeshnodeinfos/node-13.json'), peerInfo(13));
  await s.source.rescan();
  s.loop.trigger('change');
  await s.loop.idle();
  t.equal(published().status.peerCount, 11, 'the join right after: deferred');
  s.advance(reportIntervalMs(12));
  await s.resync(1, 0);
  t.equal(published().status.peerCount, 12, 'the interval passed: the report written');
  t.match(await writes('report'), / 2$/, 'two report writes for the eleven joins');
  t.equal(s.loop.currentStatus().statusReportDueInMs, null, 'nothing waits');
});

t.test('a rotation: the key added and the old SPI dropped at once; the new SPI sent with as a report', async (t) => {
  const kernel = new FakeXfrmKernel();
  const s = await onePeerLoop(t, kernel);
  const own = path.join(s.dir, 'kmeshnodeinfos/node-1.json');
  const published = () =>
    JSON.parse(fs.readFileSync(own, 'utf8')) as { status: { heldSpis: number[]; sendSpis: number[] } };
  const computed = () => s.loop.currentStatus().keyReport?.sendSpis;
  const peerAdvertises = async (i: number, spi: number, boot = BOOT(i)): Promise<void> => {
    writeJson(path.join(s.dir, `kmeshnodeinfos/node-${i}.json`), {
      ...peerInfo(i),
      spec: { ...peerInfo(i).spec, spi, bootID: boot },
    });
    await s.source.rescan();
    s.loop.trigger('change');
    await s.loop.idle();
  };
  writeJson(path.join(s.dir, 'kmeshnodeinfos/node-3.json'), peerInfo(3));
  s.loop.keyEvent({ kind: 'key', key: KEY });
  await s.loop.idle();
  await s.resync(2);
  t.match(published().status, { heldSpis: [1], sendSpis: [1] }, 'SPI 1 in force with two peers');

  // From here on no time passes: what is written now is written at once.
  s.loop.keyEvent({ kind: 'key', key: { ...KEY, spi: 2, key: Buffer.alloc(36, 0x6b) } });
  await s.loop.idle();
  t.same(published().status.heldSpis, [1, 2], 'the new key: at once');
  await peerAdvertises(2, 2);
  t.same(computed(), [1, 2], 'node-2 on SPI 2: sent with 2 and (to node-3) 1');
  t.same(published().status.sendSpis, [1], 'SPI 2, the newest held, added to the SPIs sent with: left for later');

  // node-2 reboots (new boot ID, so new keys) and its new SAs are refused: this node cannot tell what the kernel
  // sends to it with, so the SPIs it sent with stay reported, the one not written yet among them; the first
  // failing peer (worse) writes them at once.
  kernel.injectFailure((op) => op.kind === 'addState' && op.state.dst === '198.18.0.2', 12, { message: 'no memory' });
  await peerAdvertises(2, 2, BOOT(22));
  t.ok(
    s.loop.currentStatus().peers.some((p) => p.name === 'node-2' && p.error !== ''),
    'node-2 is failing',
  );
  t.same(computed(), [1, 2], 'SPI 2, computed before and not written, still reported');
  t.same(published().status.sendSpis, [1, 2], 'and written with the failing peer');
  kernel.clearFailures();
  await peerAdvertises(2, 2, BOOT(22));
  await peerAdvertises(3, 2);
  t.same(computed(), [2], 'every peer on SPI 2');
  t.same(published().status.sendSpis, [2], 'SPI 1 no longer sent with: at once (what peers retire on)');
});
