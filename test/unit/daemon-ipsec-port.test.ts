// The daemon's IPsec adapter: a key that arrives while a step is in flight must survive that step.
import t from 'tap';
import { IpsecAdapter } from '../../src/daemon/ipsec-port.js';
import { createSecretCommand } from '../../src/daemon/wiring.js';
import type { IpsecKey, NodeInfo } from '../../src/model/node.js';
import { FakeXfrmKernel } from '../fakes/fake-xfrm-kernel.js';
import type { XfrmState } from '../../src/xfrm/types.js';

function key(spi: number, fill: number): IpsecKey {
  return { spi, aeadKeyName: 'rfc4106(gcm(aes))', key: Buffer.alloc(36, fill), icvBits: 128 };
}

const local = {
  name: 'node-1',
  addresses: ['198.18.0.1'],
  bootID: '550e8400-e29b-41d4-a716-446655440001',
  podCIDRs: ['10.244.1.0/24'],
};
const peer: NodeInfo = {
  name: 'node-2',
  spi: 1,
  addresses: ['198.18.0.2'],
  bootID: '550e8400-e29b-41d4-a716-446655440002',
  podCIDRs: ['10.244.2.0/24'],
};

/** A fake kernel whose state dump waits until released, so a step can be caught in flight. */
class GatedKernel extends FakeXfrmKernel {
  private release: (() => void) | undefined;
  private gate: Promise<void> | undefined;
  entered: Promise<void>;
  private signalEntered!: () => void;

  constructor() {
    super();
    this.entered = new Promise((resolve) => (this.signalEntered = resolve));
  }

  hold(): void {
    this.gate = new Promise((resolve) => (this.release = resolve));
  }

  open(): void {
    this.release?.();
    this.gate = undefined;
  }

  override async dumpStates(): Promise<XfrmState[]> {
    this.signalEntered();
    if (this.gate) await this.gate;
    return super.dumpStates();
  }
}

t.test('a key added during a step is not lost when the step returns its key history', async (t) => {
  const kernel = new GatedKernel();
  const ipsec = new IpsecAdapter(kernel, { graceMs: 10_000 });
  t.equal(ipsec.addKey(key(1, 1)), undefined);
  kernel.hold();
  const step = ipsec.step({ local, peers: [peer], publishedSpi: 0, now: 0 });
  await kernel.entered;
  t.equal(ipsec.addKey(key(2, 2)), undefined, 'SPI 2 accepted while the step is in flight');
  kernel.open();
  await step;
  t.same(ipsec.keySpis(), [1, 2], 'SPI 2 is still held after the step');
  const next = await ipsec.step({ local, peers: [{ ...peer, spi: 2 }], publishedSpi: 1, now: 1 });
  t.ok(
    next.peers.every((p) => p.inboundSpis.includes(2)),
    'the next step installs inbound SAs for SPI 2',
  );
});

t.test('without a key, every peer says how to create the secret where this daemon reads it', async (t) => {
  const plain = await new IpsecAdapter(new FakeXfrmKernel(), { graceMs: 1000 }).step({
    local,
    peers: [peer],
    publishedSpi: 0,
    now: 0,
  });
  t.same(
    plain.peers.map((p) => p.error),
    ['no IPsec key yet (create the secret: kmeshctl secret create)'],
  );
  const dirConfig = {
    store: { kind: 'dir' as const, root: '/srv/my store' },
    ipsecKeyFile: '/srv/my store/kmesh-ipsec/ipSec',
  };
  const command = createSecretCommand(dirConfig);
  t.equal(command, "kmeshctl --store 'dir:/srv/my store' secret create");
  const dir = await new IpsecAdapter(new FakeXfrmKernel(), { graceMs: 1000, createSecretCommand: command }).step({
    local,
    peers: [peer],
    publishedSpi: 0,
    now: 0,
  });
  t.same(
    dir.peers.map((p) => p.error),
    [`no IPsec key yet (create the secret: ${command})`],
  );
  t.equal(
    createSecretCommand({ store: { kind: 'dir', root: '/srv/k' }, ipsecKeyFile: '/etc/other/ipSec' }),
    'kmeshctl secret create',
    'a key file of its own: the dir store is not where it comes from',
  );
  t.equal(
    createSecretCommand({ store: { kind: 'kubernetes' }, ipsecKeyFile: '/kmesh/kmesh-ipsec/ipSec' }),
    'kmeshctl secret create',
  );
});

t.test(
  'peer rows: an unchanged peer keeps its row object from the last step, a changed one gets a new row',
  async (t) => {
    const ipsec = new IpsecAdapter(new FakeXfrmKernel(), { graceMs: 1000 });
    t.equal(ipsec.addKey(key(1, 1)), undefined);
    const other: NodeInfo = { ...peer, name: 'node-3', addresses: ['198.18.0.3'], podCIDRs: ['10.244.3.0/24'] };
    const first = await ipsec.step({ local, peers: [peer, other], publishedSpi: 1, now: 0 });
    const again = await ipsec.step({ local, peers: [peer, other], publishedSpi: 1, now: 1 });
    t.equal(again.peers[0], first.peers[0], 'node-2: the same row');
    t.equal(again.peers[1], first.peers[1], 'node-3: the same row');
    const changed = await ipsec.step({ local, peers: [peer, { ...other, spi: 2 }], publishedSpi: 1, now: 2 });
    t.equal(changed.peers[0], first.peers[0], 'node-2 unchanged: the same row');
    t.not(changed.peers[1], first.peers[1], 'node-3 advertises SPI 2: a new row');
    t.equal(changed.peers[1]!.advertisedSpi, 2);
    const gone = await ipsec.step({ local, peers: [other], publishedSpi: 1, now: 3 });
    t.same(
      gone.peers.map((p) => p.name),
      ['node-3'],
    );
  },
);
