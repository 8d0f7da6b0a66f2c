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
