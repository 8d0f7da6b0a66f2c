// Host kernel (root; it has no ESP and no AEAD, so every XFRM_MSG_NEWSA is refused): what the daemon reports
// when the kernel refuses its SAs. The reconcile loop drives NetlinkXfrmKernel in a namespace of our own
// (kmt-loud-*, removed afterwards), with one peer, a directory store and the fake datapath; /status is served
// over a real socket. Also proves the fake kernel's `crypto: 'none'` refuses exactly as this kernel does
// (errno and text of every op of the state contract script), so the unit tests built on it stand for it.
import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { startStatusServer } from '../../src/daemon/status-server.js';
import { NetlinkXfrmKernel } from '../../src/xfrm/netlink-kernel.js';
import { FakeXfrmKernel, NO_AEAD_REFUSAL } from '../fakes/fake-xfrm-kernel.js';
import { STATE_STEPS } from '../fakes/xfrm-contract.js';
import { makeOutboundSa } from '../fakes/xfrm-objects.js';
import { KEY, onePeerLoop } from '../fixtures/one-peer-loop.js';
import { addNetns, delNetns, ip } from './xfrm-oracle.js';

const NS = `kmt-loud-${process.pid}`;

async function kernelRefusesSas(): Promise<boolean> {
  addNetns(NS);
  try {
    const [result] = await new NetlinkXfrmKernel({ netns: NS }).apply([{ kind: 'addState', state: makeOutboundSa() }]);
    return result?.errno === NO_AEAD_REFUSAL.errno;
  } finally {
    delNetns(NS);
  }
}

const skip =
  process.getuid?.() !== 0
    ? 'needs root (netns + NETLINK_XFRM)'
    : (await kernelRefusesSas())
      ? false
      : 'this kernel accepts SAs; the test is about one that refuses them (the host kernel without ESP/AEAD)';

t.test("the fake kernel's crypto 'none' refuses every op as this kernel does", { skip }, async (t) => {
  addNetns(NS);
  t.teardown(() => delNetns(NS));
  const real = new NetlinkXfrmKernel({ netns: NS });
  const fake = new FakeXfrmKernel({ crypto: 'none' });
  let refusals = 0;
  for (const step of STATE_STEPS) {
    const fromReal = (await real.apply(step.ops)).map((r) => [r.errno, r.errno === 0 ? '' : (r.message ?? '')]);
    const fromFake = (await fake.apply(step.ops)).map((r) => [r.errno, r.errno === 0 ? '' : (r.message ?? '')]);
    t.same(fromFake, fromReal, step.what);
    refusals += fromReal.filter(([errno]) => errno === NO_AEAD_REFUSAL.errno).length;
  }
  t.ok(refusals > 10, `the script met the kernel's AEAD refusal (${refusals} times)`);
  t.same(await real.dumpStates(), [], 'the kernel holds no SA');
  t.same(await fake.dumpStates(), []);
});

t.test('the daemon loop over a kernel that refuses its SAs is loud about it', { skip }, async (t) => {
  addNetns(NS);
  t.teardown(() => delNetns(NS));
  const s = await onePeerLoop(t, new NetlinkXfrmKernel({ netns: NS }));
  const server: http.Server = await startStatusServer({ host: '127.0.0.1', port: 0 }, s.metrics, () =>
    s.loop.currentStatus(),
  );
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const statusUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/status`;

  s.loop.keyEvent({ kind: 'key', key: KEY });
  await s.loop.idle();
  await s.resync(4);

  // The log: each refused SA once, with the object, errno and the kernel's text; no "xfrm reconciled".
  const refused = s.log.lines.filter((l) => l.msg === 'XFRM operation refused by the kernel');
  t.equal(refused.length, 2, 'the inbound and the outbound SA, once each over 5 steps');
  for (const line of refused) {
    t.match(line, {
      level: 'error',
      obj: {
        peer: 'node-2',
        object: /^addState 198\.18\.0\.[12]->198\.18\.0\.[12] spi 0x1 reqid 0x6b6d /,
        errno: 38,
        code: 'ENOSYS',
        kernel: 'Requested AEAD algorithm not found',
      },
    });
  }
  t.notOk(
    s.log.lines.some((l) => l.msg === 'xfrm reconciled'),
    'no "xfrm reconciled" while the kernel refuses SAs',
  );
  t.same(
    s.log.lines.filter((l) => l.msg === 'xfrm partly reconciled').map((l) => l.obj),
    [{ changes: 3, failed: 2 }],
    'the policies the kernel took are the changes; the refused SAs are not',
  );
  t.equal(s.log.lines.filter((l) => l.msg.startsWith('not advertising our SPI: SPI 1 not advertised yet')).length, 1);
  t.equal(s.log.lines.filter((l) => l.msg === 'not ready (/status answers 503)').length, 1);

  // /status: 503 (the readiness probe fails), a top-level problem, the reasons, no SPI claimed.
  const res = await fetch(statusUrl);
  t.equal(res.status, 503);
  const status = (await res.json()) as Record<string, unknown> & {
    problems: string[];
    peers: { outboundSpi: number | null }[];
  };
  t.match(status, {
    synced: true,
    ready: false,
    lastStepResult: 'partial',
    advertisedSpi: null,
    notAdvertising:
      'SPI 1 not advertised yet: inbound SAs missing for node-2 (ENOSYS: Requested AEAD algorithm not found)',
    notReady: [
      /^2 XFRM operations failed \(node-2\); first: .*ENOSYS \(errno 38\): Requested AEAD algorithm not found$/,
    ],
  });
  t.ok(
    status.problems.some((p) =>
      /^xfrm: node-2: addState .*: ENOSYS \(errno 38\): Requested AEAD algorithm not found$/.test(p),
    ),
    'a top-level problem names the object, the errno and the kernel text',
  );
  t.equal(status.peers[0]?.outboundSpi, null, 'no outbound SPI: the kernel holds no SA');
  t.notOk(s.published(), 'no KmeshNodeInfo published');

  // Metrics agree with the kernel.
  t.equal(await s.metric('kmesh_ipsec_peer_outbound_spi{peer="node-2"}'), 0);
  t.equal(await s.metric('kmesh_daemon_reconcile_total{result="partial"}'), 5);
  t.equal(await s.metric('kmesh_daemon_ready'), 0);
  t.equal(await s.metric('kmesh_xfrm_failed_operations'), 2);
  t.equal(await s.metric('kmesh_ipsec_advertise_pending'), 1);
  t.ok(((await s.metric('kmesh_daemon_problems')) ?? 0) > 0);

  // What the kernel holds, seen by iproute2: the policies, no SA.
  t.equal(ip(['xfrm', 'state'], NS).trim(), '', 'no SA in the namespace');
  t.match(ip(['xfrm', 'policy'], NS), /action block/, 'the block policy is in place');
});
