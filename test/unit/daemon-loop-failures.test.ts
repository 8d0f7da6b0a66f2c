// Failures are loud (the reconcile loop over the fake XFRM kernel and fake datapath, one node and one peer in a
// directory store): a kernel that refuses every SA (as this machine's kernel does: no AEAD) makes the step
// "partial", not ready (/status 503), with each refused object logged once with its errno and the kernel's text,
// no outbound SPI claimed, and "not advertising because ..." in status and log; when the kernel accepts again,
// each clears with one line. An own Node object that is missing or has no InternalIP is logged once per change,
// a problem, a metric and not ready.
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { FakeXfrmKernel, NO_AEAD_REFUSAL } from '../fakes/fake-xfrm-kernel.js';
import { KEY, nodeObject, onePeerLoop as setup, writeJson, type LogLine } from '../fixtures/one-peer-loop.js';

const refusedLines = (lines: LogLine[]) => lines.filter((l) => l.msg === 'XFRM operation refused by the kernel');

t.test('a kernel that refuses every SA: partial, not ready, each object logged once, no SPI claimed', async (t) => {
  const kernel = new FakeXfrmKernel({ crypto: 'none' });
  const s = await setup(t, kernel);
  s.loop.keyEvent({ kind: 'key', key: KEY });
  await s.loop.idle();
  await s.resync(5);

  const status = s.loop.currentStatus();
  t.equal(status.lastStepResult, 'partial', 'the step is not ok');
  t.equal(status.ready, false, 'not ready: /status answers 503');
  t.match(status.notReady, [/^2 XFRM operations failed \(node-2\); first: node-2: addState .*ENOSYS \(errno 38\)/]);
  t.same(
    status.xfrmFailures.map((f) => [f.peer, f.errno, f.code, f.message]),
    [
      ['node-2', 38, 'ENOSYS', 'Requested AEAD algorithm not found'],
      ['node-2', 38, 'ENOSYS', 'Requested AEAD algorithm not found'],
    ],
  );
  t.match(status.problems, [
    /^xfrm: node-2: addState 198\.18\.0\.2->198\.18\.0\.1 spi 0x1 .*: ENOSYS \(errno 38\): Requested AEAD algorithm not found$/,
    /^xfrm: node-2: addState 198\.18\.0\.1->198\.18\.0\.2 spi 0x1 .*: ENOSYS \(errno 38\): Requested AEAD algorithm not found$/,
  ]);
  t.equal(status.peers[0]?.outboundSpi, undefined, 'no outbound SPI: the kernel holds no SA');
  t.equal(status.peers[0]?.plannedSendSpi, 1, 'planned with SPI 1');
  t.equal(status.advertisedSpi, undefined);
  t.equal(
    status.notAdvertising,
    'SPI 1 not advertised yet: inbound SAs missing for node-2 (ENOSYS: Requested AEAD algorithm not found)',
  );
  t.notOk(s.published(), 'no KmeshNodeInfo published');

  t.equal(await s.metric('kmesh_ipsec_peer_outbound_spi{peer="node-2"}'), 0, 'the metric claims no SA');
  t.equal(await s.metric('kmesh_daemon_reconcile_total{result="partial"}'), 6, 'the key step and 5 resyncs: partial');
  t.equal(
    await s.metric('kmesh_daemon_reconcile_total{result="ok"}'),
    status.steps - 6,
    'only the steps before the key were ok',
  );
  t.equal(await s.metric('kmesh_daemon_ready'), 0);
  t.equal(await s.metric('kmesh_xfrm_failed_operations'), 2);
  t.equal(await s.metric('kmesh_ipsec_advertise_pending'), 1);
  t.ok(((await s.metric('kmesh_daemon_problems')) ?? 0) >= 2, 'problems counted');

  const refused = refusedLines(s.log.lines);
  t.equal(refused.length, 2, 'each refused object logged once over 6 steps, not at every resync');
  for (const line of refused) {
    t.equal(line.level, 'error');
    t.match(line.obj, {
      peer: 'node-2',
      object: /^addState 198\.18\.0\.[12]->198\.18\.0\.[12] spi 0x1 reqid 0x6b6d mark /,
      errno: 38,
      code: 'ENOSYS',
      kernel: 'Requested AEAD algorithm not found',
    });
  }
  t.notOk(
    s.log.lines.some((l) => l.msg === 'xfrm reconciled'),
    'never "xfrm reconciled" while operations fail',
  );
  const partly = s.log.lines.filter((l) => l.msg === 'xfrm partly reconciled');
  t.same(
    partly.map((l) => l.obj),
    [{ changes: 3, failed: 2 }],
    'the first step applied the block, in and fwd policies; failed SAs are not changes; later steps change nothing',
  );
  t.equal(
    s.log.lines.filter((l) => l.msg.startsWith('not advertising our SPI: SPI 1 not advertised yet')).length,
    1,
    '"not advertising because" logged once',
  );
  t.equal(s.log.lines.filter((l) => l.msg === 'not ready (/status answers 503)').length, 1);
  t.notOk(
    s.log.lines.some((l) => JSON.stringify(l).includes('5a5a5a')),
    'no key bytes in any log line',
  );

  // Persisting for longer than the reminder interval: one reminder per object, then quiet again.
  s.advance(10 * 60_000);
  await s.resync(3);
  const reminders = s.log.lines.filter((l) => l.msg === 'XFRM operation refused by the kernel (still)');
  t.equal(reminders.length, 2, 'one reminder per object after 10 minutes');
  t.ok(reminders.every((l) => typeof l.obj.sinceSeconds === 'number' && l.obj.sinceSeconds >= 600));

  // The kernel accepts SAs again: everything clears with one line each, ready, advertised, published.
  kernel.crypto = 'full';
  const before = s.log.lines.length;
  await s.resync(2);
  const after = s.log.lines.slice(before);
  t.equal(after.filter((l) => l.msg === 'XFRM operation no longer failing').length, 2);
  t.ok(after.some((l) => l.msg === 'advertising the newest SPI again'));
  t.ok(after.some((l) => l.msg === 'ready (/status answers 200)'));
  t.ok(after.some((l) => l.msg === 'xfrm reconciled' && (l.obj as { changes: number }).changes === 3));
  const healed = s.loop.currentStatus();
  t.match(healed, { lastStepResult: 'ok', ready: true, notReady: [], notAdvertising: '', advertisedSpi: 1 });
  t.same(healed.xfrmFailures, []);
  t.equal(healed.peers[0]?.outboundSpi, 1);
  t.ok(s.published(), 'KmeshNodeInfo published');
  t.equal(await s.metric('kmesh_ipsec_peer_outbound_spi{peer="node-2"}'), 1);
  t.equal(await s.metric('kmesh_daemon_ready'), 1);
  t.equal(await s.metric('kmesh_xfrm_failed_operations'), 0);
  t.equal(await s.metric('kmesh_ipsec_advertise_pending'), 0);
});

t.test('a failure injected with the refusal of a kernel without AEAD is reported the same way', async (t) => {
  const kernel = new FakeXfrmKernel();
  kernel.injectFailure((op) => op.kind === 'addState' && op.state.dst === '198.18.0.2', NO_AEAD_REFUSAL.errno, {
    message: NO_AEAD_REFUSAL.message,
  });
  const s = await setup(t, kernel);
  s.loop.keyEvent({ kind: 'key', key: KEY });
  await s.loop.idle();
  await s.resync(2);
  const status = s.loop.currentStatus();
  t.equal(status.xfrmFailures.length, 1, 'only the outbound SA failed');
  t.equal(status.peers[0]?.outboundSpi, undefined, 'no outbound SPI claimed');
  t.same(status.peers[0]?.inboundSpis, [1], 'the inbound SA is held');
  t.equal(status.advertisedSpi, 1, 'inbound SAs exist: SPI 1 advertised');
  t.equal(status.notAdvertising, '');
  t.equal(status.ready, false, 'cannot encrypt to node-2: not ready');
  t.equal(refusedLines(s.log.lines).length, 1);
});

t.test('own Node object without an InternalIP, then malformed, missing, fixed: logged once per change', async (t) => {
  const kernel = new FakeXfrmKernel();
  const s = await setup(t, kernel, nodeObject(1, []));
  s.loop.keyEvent({ kind: 'key', key: KEY });
  await s.loop.idle();
  await s.resync(4);
  let status = s.loop.currentStatus();
  t.equal(status.nodeProblem, 'no InternalIP in status.addresses');
  t.match(status.problems, ['node node-1: no InternalIP in status.addresses']);
  t.same(status.notReady, ['node node-1: no InternalIP in status.addresses']);
  t.equal(status.ready, false);
  t.equal(status.notAdvertising, 'own Node object unusable: no InternalIP in status.addresses');
  t.equal(await s.metric('kmesh_daemon_node_problem'), 1);
  t.equal(await s.metric('kmesh_daemon_ready'), 0);
  const unusable = () => s.log.lines.filter((l) => l.msg.startsWith('own Node object unusable'));
  t.equal(unusable().length, 1, 'logged once over 6 steps');
  t.match(unusable()[0], { level: 'error', obj: { node: 'node-1' } });

  fs.writeFileSync(path.join(s.dir, 'nodes/node-1.json'), '{"metadata": {"name": "node-1"');
  await s.resync(3);
  status = s.loop.currentStatus();
  t.match(status.nodeProblem, /^missing or unreadable in dir:/);
  t.ok(
    status.problems.some((p) => p.startsWith('nodes/node-1.json: invalid JSON')),
    'the source says what is wrong with the file',
  );
  t.equal(unusable().length, 2, 'the change is logged once');
  t.match(unusable()[1]!.msg, /own Node object unusable: missing or unreadable in dir:/);
  t.equal(await s.metric('kmesh_daemon_node_problem'), 1);
  fs.rmSync(path.join(s.dir, 'nodes/node-1.json'));
  await s.resync(2);
  t.equal(unusable().length, 2, 'malformed, then missing: the same condition, not logged again');

  writeJson(path.join(s.dir, 'nodes/node-1.json'), nodeObject(1));
  await s.resync(2);
  status = s.loop.currentStatus();
  t.match(status, { nodeProblem: '', ready: true, notReady: [], advertisedSpi: 1, lastStepResult: 'ok' });
  t.same(
    s.log.lines.filter((l) => l.msg.startsWith('own Node object usable again')).map((l) => l.obj.node),
    ['node-1'],
    'one line when it is usable again (none when the reason changed)',
  );
  t.equal(await s.metric('kmesh_daemon_node_problem'), 0);
  t.equal(await s.metric('kmesh_daemon_ready'), 1);
});

t.test('no key: not ready, and not advertising because there is no key', async (t) => {
  const s = await setup(t, new FakeXfrmKernel());
  await s.resync(2);
  const status = s.loop.currentStatus();
  t.match(status, { ready: false, lastStepResult: 'ok' });
  t.same(status.notReady, ['no IPsec key (create the secret: kmeshctl secret create)']);
  t.equal(status.notAdvertising, 'no IPsec key (create the secret: kmeshctl secret create)');
  t.equal(s.log.lines.filter((l) => l.msg.startsWith('not advertising our SPI: no IPsec key')).length, 1);
});

t.test('an invalid peer object and an unreadable source file are logged once, and once when they go', async (t) => {
  const s = await setup(t, new FakeXfrmKernel());
  s.loop.keyEvent({ kind: 'key', key: KEY });
  await s.loop.idle();
  writeJson(path.join(s.dir, 'kmeshnodeinfos/node-9.json'), {
    metadata: { name: 'node-9' },
    spec: { spi: 1, addresses: ['not-an-ip'], bootID: 'x', podCIDRS: ['10.244.9.0/24'] },
  });
  fs.mkdirSync(path.join(s.dir, 'pods'), { recursive: true });
  fs.writeFileSync(path.join(s.dir, 'pods/broken.json'), '{');
  await s.resync(4);
  const status = s.loop.currentStatus();
  t.match(status, { ready: true, lastStepResult: 'ok' }, 'neither makes this node unable to encrypt');
  const invalid = s.log.lines.filter((l) => l.msg.startsWith('invalid peer KmeshNodeInfo skipped: '));
  t.equal(invalid.length, 1);
  t.match(invalid[0]!.msg, /node-9.*not-an-ip/);
  const broken = s.log.lines.filter((l) => l.msg.startsWith('pods/broken.json: invalid JSON'));
  t.equal(broken.length, 1);
  fs.rmSync(path.join(s.dir, 'kmeshnodeinfos/node-9.json'));
  fs.rmSync(path.join(s.dir, 'pods/broken.json'));
  await s.resync(2);
  t.equal(s.log.lines.filter((l) => l.msg.startsWith('peer KmeshNodeInfo no longer invalid: ')).length, 1);
  t.equal(s.log.lines.filter((l) => l.msg.startsWith('resolved: pods/broken.json: invalid JSON')).length, 1);
});

t.test('publishing fails: the SPI is not claimed as advertised, the reason is shown, not ready', async (t) => {
  const s = await setup(t, new FakeXfrmKernel());
  s.source.publishNodeInfo = () => Promise.reject(new Error('kmeshnodeinfos "node-1" is forbidden'));
  s.loop.keyEvent({ kind: 'key', key: KEY });
  await s.loop.idle();
  await s.resync(2);
  const status = s.loop.currentStatus();
  t.match(status, {
    advertisedSpi: undefined,
    notAdvertising: 'cannot publish KmeshNodeInfo: kmeshnodeinfos "node-1" is forbidden',
    ready: false,
    lastStepResult: 'partial',
  });
  t.same(status.notReady, ['publish KmeshNodeInfo: kmeshnodeinfos "node-1" is forbidden']);
  t.equal(await s.metric('kmesh_ipsec_advertised_spi'), 0);
  t.equal(await s.metric('kmesh_daemon_reconcile_total{result="partial"}'), 3);
  t.equal(s.log.lines.filter((l) => l.msg === 'publish KmeshNodeInfo: kmeshnodeinfos "node-1" is forbidden').length, 1);
});
