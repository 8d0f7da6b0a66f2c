// Unit tests of the netlink XFRM adapter against a scripted transport (no kernel): batching, per-op results from
// acks (errno + extack text), encoder errors, transport failures, dumps and gets; plus the address and
// ack-reading helpers it is built on.
import t from 'tap';
import { NetlinkXfrmKernel, netnsPath } from '../../src/xfrm/netlink-kernel.js';
import {
  encodePolicy,
  encodeState,
  writePolicy,
  writeState,
  XFRM_MSG_GETPOLICY,
  XFRM_MSG_GETSA,
  XFRM_MSG_NEWSA,
} from '../../src/xfrm/netlink-codec.js';
import { formatAddress, parseAddress, writeCidr } from '../../src/xfrm/netlink-address.js';
import {
  NLM_F_ACK_TLVS,
  NLM_F_CAPPED,
  NLMSG_DONE,
  NLMSG_ERROR,
  NetlinkWriter,
  netlinkAttr,
  netlinkMessage,
  parseAck,
  splitMessages,
  type NetlinkMessage,
} from '../../src/xfrm/netlink-wire.js';
import type { XfrmOp, XfrmPolicy, XfrmState } from '../../src/xfrm/types.js';
import { aead, makeOutboundSa } from '../fakes/xfrm-objects.js';

function ack(seq: number, errno: number, text?: string, capped = true, echoed?: Buffer): Buffer {
  const head = Buffer.alloc(4);
  head.writeInt32LE(-errno, 0);
  const echo = echoed ?? Buffer.alloc(16);
  const parts = [head, capped ? echo.subarray(0, 16) : echo];
  let flags = capped ? NLM_F_CAPPED : 0;
  if (text !== undefined) {
    parts.push(netlinkAttr(1, Buffer.from(`${text}\0`)));
    flags |= NLM_F_ACK_TLVS;
  }
  return netlinkMessage(NLMSG_ERROR, flags, seq, Buffer.concat(parts));
}

/** A transport that answers each message through `answer` and records what it was sent. */
function scripted(answer: (m: NetlinkMessage) => Buffer[] | Error) {
  const calls: { netns: string; messages: NetlinkMessage[] }[] = [];
  const transact = (netns: string, request: Buffer): Promise<Buffer> => {
    const messages = splitMessages(request);
    calls.push({ netns, messages });
    const out: Buffer[] = [];
    for (const m of messages) {
      const r = answer(m);
      if (r instanceof Error) return Promise.reject(r);
      out.push(...r);
    }
    return Promise.resolve(Buffer.concat(out));
  };
  return { calls, transact };
}

const state: XfrmState = makeOutboundSa({ aead: aead(3) });
const policy = (i: number): XfrmPolicy => ({
  dir: 'out',
  selector: { family: 4, src: '0.0.0.0/0', dst: `10.${i >> 8}.${i & 0xff}.0/24`, proto: 0 },
  mark: { value: 0xe0, mask: 0xff },
  priority: 100,
  action: 'allow',
  templates: [{ family: 4, src: '198.18.0.1', dst: '198.18.0.2', proto: 50, mode: 'tunnel', reqid: 1, spi: 1 }],
});

t.test('per-op results in order, with errno and extack text; encoder errors never reach the kernel', async (t) => {
  const { calls, transact } = scripted((m) => {
    const dst = m.payload.readUInt8(2); // third byte of the selector's daddr: our op number
    if (dst === 1) return [ack(m.seq, 17, 'Policy already exists')];
    if (dst === 2) return [ack(m.seq, 2)];
    return [ack(m.seq, 0)];
  });
  const kernel = new NetlinkXfrmKernel({ transact, netns: 'kmt-x' });
  const ops: XfrmOp[] = [
    { kind: 'addPolicy', policy: policy(0) },
    { kind: 'addPolicy', policy: policy(1) },
    { kind: 'deletePolicy', policy: policy(2) },
    { kind: 'addPolicy', policy: { ...policy(3), priority: -1 } },
    { kind: 'updatePolicy', policy: policy(4) },
  ];
  const results = await kernel.apply(ops);
  t.same(
    results.map((r) => [r.errno, r.message]),
    [
      [0, undefined],
      [17, 'Policy already exists'],
      [2, undefined],
      [22, 'policy out 0.0.0.0/0 -> 10.0.3.0/24: priority -1 is not an integer in 0..4294967295'],
      [0, undefined],
    ],
  );
  t.ok(
    results.every((r, i) => r.op === ops[i]),
    'each result carries its op',
  );
  t.equal(calls.length, 1, 'one transport call');
  t.equal(calls[0]?.messages.length, 4, 'the invalid op was not sent');
  t.equal(calls[0]?.netns, '/run/netns/kmt-x');
});

t.test('batches of batchSize; a transport failure marks its batch unknown and later ones unsent', async (t) => {
  let call = 0;
  const { calls, transact } = scripted((m) => {
    if (call === 1) return Object.assign(new Error('sendmsg NETLINK_XFRM: No buffer space'), { errno: 105 });
    return [ack(m.seq, 0)];
  });
  const counting = (netns: string, req: Buffer) => transact(netns, req).finally(() => (call += 1));
  const kernel = new NetlinkXfrmKernel({ transact: counting, batchSize: 500 });
  const ops = Array.from({ length: 1200 }, (_, i): XfrmOp => ({ kind: 'addPolicy', policy: policy(i) }));
  const results = await kernel.apply(ops);
  t.equal(results.length, 1200);
  t.same(
    calls.map((c) => c.messages.length),
    [500, 500],
    'third batch never sent',
  );
  t.ok(results.slice(0, 500).every((r) => r.errno === 0));
  t.ok(results.slice(500, 1000).every((r) => r.errno === 105 && /outcome unknown/.test(r.message ?? '')));
  t.ok(results.slice(1000).every((r) => r.errno === 105 && /not sent/.test(r.message ?? '')));
  t.throws(() => new NetlinkXfrmKernel({ batchSize: 0 }), /batch size 0/);
});

t.test('one batch with the kernel at a time, sent in the order of their ops', async (t) => {
  let inFlight = 0;
  let most = 0;
  const firstSeqs: number[] = [];
  const { transact } = scripted((m) => [ack(m.seq, 0)]);
  const slow = async (netns: string, req: Buffer): Promise<Buffer> => {
    inFlight += 1;
    most = Math.max(most, inFlight);
    firstSeqs.push(splitMessages(req)[0]!.seq);
    await new Promise((r) => setTimeout(r, 5));
    inFlight -= 1;
    return transact(netns, req);
  };
  const kernel = new NetlinkXfrmKernel({ transact: slow, batchSize: 100 });
  const ops = Array.from({ length: 450 }, (_, i): XfrmOp => ({ kind: 'addPolicy', policy: policy(i) }));
  const results = await kernel.apply(ops);
  t.equal(most, 1, 'never two batches with the kernel at once');
  t.equal(firstSeqs.length, 5, 'five batches');
  t.ok(
    firstSeqs.every((s, i) => i === 0 || s > firstSeqs[i - 1]!),
    'batches sent in the order of their ops',
  );
  t.ok(
    results.every((r, i) => r.op === ops[i] && r.errno === 0),
    'every op its own result, in order',
  );
});

t.test('dumps decode data messages, stop at DONE, and reject with the kernel error', async (t) => {
  const sa = splitMessages(encodeState('add', state, 1))[0]!;
  const pol = splitMessages(encodePolicy('add', policy(1), 1))[0]!;
  const { transact } = scripted((m) =>
    m.type === XFRM_MSG_GETSA
      ? [
          netlinkMessage(XFRM_MSG_NEWSA, 2, m.seq, sa.payload),
          netlinkMessage(XFRM_MSG_NEWSA, 2, m.seq, sa.payload.subarray(0, 100)),
          netlinkMessage(XFRM_MSG_NEWSA, 2, m.seq + 1, sa.payload),
          netlinkMessage(NLMSG_DONE, 2, m.seq, Buffer.alloc(4)),
        ]
      : [netlinkMessage(0x13, 2, m.seq, pol.payload), netlinkMessage(NLMSG_DONE, 2, m.seq, Buffer.alloc(4))],
  );
  const kernel = new NetlinkXfrmKernel({ transact });
  t.same(await kernel.dumpStates(), [state], 'truncated and foreign-seq messages dropped');
  t.same(await kernel.dumpPolicies(), [{ ...policy(1), index: 0 }]);
  const denied = scripted((m) => [ack(m.seq, 1, 'no permission')]);
  await t.rejects(new NetlinkXfrmKernel({ transact: denied.transact }).dumpPolicies(), {
    message: 'dump of XFRM policies failed: EPERM: no permission',
  });
  const doneErr = scripted((m) => {
    const p = Buffer.alloc(4);
    p.writeInt32LE(-12, 0);
    return [netlinkMessage(NLMSG_DONE, 2, m.seq, p)];
  });
  await t.rejects(new NetlinkXfrmKernel({ transact: doneErr.transact, netns: '/proc/1/ns/net' }).dumpStates(), {
    message: 'dump of XFRM states in /proc/1/ns/net failed: ENOMEM',
  });
  t.equal(denied.calls[0]?.messages[0]?.type, XFRM_MSG_GETPOLICY);
});

/**
 * A paged-dump API over scripted replies: each `next` hands out whole messages until at least `minBytes` (or the
 * end), as native/xfrm_dump.cc does; it records the calls and refuses a `next` or `close` that breaks its rules.
 */
function scriptedPages(answer: (request: NetlinkMessage) => Buffer[]) {
  const log: string[] = [];
  const open = new Map<number, { seq: number; left: Buffer[]; busy: boolean }>();
  let nextFd = 10;
  const pages = {
    open(netns: string, request: Buffer): number {
      const [m] = splitMessages(request);
      const fd = nextFd++;
      open.set(fd, { seq: m!.seq, left: answer(m!), busy: false });
      log.push(`open ${netns || '(own)'} type ${m!.type}`);
      return fd;
    },
    async next(fd: number, seq: number, minBytes: number): Promise<Buffer> {
      const d = open.get(fd);
      if (d === undefined || d.busy || seq !== d.seq) throw new Error(`bad next on fd ${fd}`);
      d.busy = true;
      await Promise.resolve();
      const page: Buffer[] = [];
      let bytes = 0;
      while (d.left.length > 0 && bytes < minBytes) {
        const m = d.left.shift()!;
        page.push(m);
        bytes += m.length;
      }
      d.busy = false;
      log.push(`next ${fd}: ${page.length} messages`);
      return Buffer.concat(page);
    },
    close(fd: number): void {
      const d = open.get(fd);
      if (d === undefined || d.busy) throw new Error(`bad close on fd ${fd}`);
      open.delete(fd);
      log.push(`close ${fd}`);
    },
  };
  return { pages, log, stillOpen: () => open.size };
}

t.test(
  'paged dumps: decoded page by page to the end, the socket closed after success and after an error',
  async (t) => {
    const pol = (i: number) => splitMessages(encodePolicy('add', policy(i), 1))[0]!;
    const five = scriptedPages((m) => [
      ...[1, 2, 3, 4, 5].map((i) => netlinkMessage(0x13, 2, m.seq, pol(i).payload)),
      netlinkMessage(0x13, 2, m.seq + 7, pol(9).payload),
      netlinkMessage(NLMSG_DONE, 2, m.seq, Buffer.alloc(4)),
    ]);
    const one = pol(1);
    const kernel = new NetlinkXfrmKernel({ dumpPages: five.pages, dumpPageBytes: 2 * (16 + one.payload.length) });
    t.same(
      await kernel.dumpPolicies(),
      [1, 2, 3, 4, 5].map((i) => ({ ...policy(i), index: 0 })),
      'every page decoded, in order; another seq dropped',
    );
    t.same(five.log, [
      `open (own) type ${XFRM_MSG_GETPOLICY}`,
      'next 10: 2 messages',
      'next 10: 2 messages',
      'next 10: 2 messages',
      'next 10: 1 messages',
      'close 10',
    ]);
    const denied = scriptedPages((m) => [
      netlinkMessage(0x13, 2, m.seq, pol(1).payload),
      ack(m.seq, 1, 'no permission'),
    ]);
    await t.rejects(new NetlinkXfrmKernel({ dumpPages: denied.pages, netns: 'kmt-x' }).dumpPolicies(), {
      message: 'dump of XFRM policies in /run/netns/kmt-x failed: EPERM: no permission',
    });
    t.equal(denied.stillOpen(), 0, 'closed after the error');
    t.match(denied.log[0], 'open /run/netns/kmt-x');
    const scriptedTransact = scripted(() => []);
    t.same(
      await new NetlinkXfrmKernel({ transact: scriptedTransact.transact, dumpPages: five.pages }).dumpStates(),
      [],
      'an injected paged-dump API is used even beside an injected transport',
    );
    t.equal(scriptedTransact.calls.length, 0, 'the transport was not asked');
    t.throws(() => new NetlinkXfrmKernel({ dumpPageBytes: 1.5 }), /dump page size 1.5 is not an integer/);
  },
);

t.test('getState: the SA, or undefined for ESRCH, or a clear error', async (t) => {
  const sa = splitMessages(encodeState('add', state, 1))[0]!;
  const found = scripted((m) => [netlinkMessage(XFRM_MSG_NEWSA, 0, m.seq, sa.payload), ack(m.seq, 0)]);
  t.same(await new NetlinkXfrmKernel({ transact: found.transact }).getState(state), state);
  const missing = scripted((m) => [ack(m.seq, 3)]);
  t.equal(await new NetlinkXfrmKernel({ transact: missing.transact }).getState(state), undefined);
  const broken = scripted((m) => [ack(m.seq, 22, 'bad')]);
  await t.rejects(new NetlinkXfrmKernel({ transact: broken.transact }).getState(state), /EINVAL: bad/);
});

t.test('writer: a message that fails halfway leaves no trace; growth keeps earlier bytes', (t) => {
  const w = new NetlinkWriter(64);
  writeState(w, 'add', state, 1);
  const bad = { ...state, src: 'fd00::1' }; // fails after dst, spi and proto were written
  t.throws(() => writeState(w, 'add', bad, 2), /state dst 198.18.0.2 spi 1: src: "fd00::1" is an IPv6 address/);
  writePolicy(w, 'add', policy(7), 3);
  t.equal(
    w.finish().toString('hex'),
    Buffer.concat([encodeState('add', state, 1), encodePolicy('add', policy(7), 3)]).toString('hex'),
  );
  t.end();
});

t.test('netns option: names map under /run/netns, paths pass, junk is refused', (t) => {
  t.equal(netnsPath(undefined), '');
  t.equal(netnsPath('kmt-a_1.x'), '/run/netns/kmt-a_1.x');
  t.equal(netnsPath('/proc/42/ns/net'), '/proc/42/ns/net');
  t.throws(() => netnsPath('a/b'), /netns "a\/b" is neither/);
  t.throws(() => netnsPath('..'), /neither/);
  t.end();
});

t.test('ack reader: capped, echoed request, no TLVs, short', (t) => {
  const echoed = encodePolicy('add', policy(1), 5);
  const [uncapped] = splitMessages(ack(5, 17, 'exists', false, echoed));
  t.same(parseAck(uncapped!), { errno: 17, message: 'exists' }, 'text found after the echoed request');
  const [capped] = splitMessages(ack(5, 22, 'why'));
  t.same(parseAck(capped!), { errno: 22, message: 'why' });
  const [plain] = splitMessages(ack(5, 0));
  t.same(parseAck(plain!), { errno: 0 });
  t.equal(parseAck({ type: NLMSG_ERROR, flags: 0, seq: 1, payload: Buffer.alloc(2) }).errno, 71);
  t.end();
});

t.test('addresses: inet_ntop formatting and strict parsing', (t) => {
  const cases: [string, string][] = [
    ['fd00:0:0:0:0:0:0:1', 'fd00::1'],
    ['::', '::'],
    ['::1', '::1'],
    ['1::', '1::'],
    ['1:0:0:2:0:0:0:3', '1:0:0:2::3'],
    ['1:0:0:2:0:0:3:4', '1::2:0:0:3:4'],
    ['1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7:8'],
    ['1:0:2:3:4:5:6:7', '1:0:2:3:4:5:6:7'],
    ['::ffff:1.2.3.4', '::ffff:1.2.3.4'],
    ['::1.2.3.4', '::1.2.3.4'],
    ['FD00:10:244:2::', 'fd00:10:244:2::'],
    ['10.244.1.7', '10.244.1.7'],
  ];
  for (const [input, want] of cases) {
    const { family, bytes } = parseAddress(input);
    t.equal(formatAddress(bytes, 0, family), want, input);
  }
  for (const bad of ['1.2.3', '1.2.3.256', '01.2.3.4', '1:2:3:4:5:6:7:8:9', '1::2::3', 'g::1', '', '::1.2.3', ':1']) {
    t.throws(() => parseAddress(bad), /is not an IP address/, `refuses "${bad}"`);
  }
  const slot = Buffer.alloc(16);
  t.match(writeCidr('10.244.0.0/16', slot, 0), { family: 4, prefixLen: 16 });
  t.match(writeCidr('fd00::1', slot, 0), { family: 6, prefixLen: 128 }, 'a bare address is a host route');
  t.throws(() => writeCidr('fd00::1/64', slot, 0), /host bits/);
  t.throws(() => writeCidr('10.0.0.0/x', slot, 0), /bad prefix length/);
  t.end();
});

t.test('apply: a transport that reports per-message errnos needs no success acks', async (t) => {
  const sent: NetlinkMessage[] = [];
  const transact = (_netns: string, request: Buffer, errnos?: Int32Array): Promise<Buffer> => {
    const messages = splitMessages(request);
    sent.push(...messages);
    t.ok(errnos, 'the adapter passes errnos');
    t.equal(errnos?.length, messages.length, 'one entry per message');
    const replies: Buffer[] = [];
    messages.forEach((m, i) => {
      // Message 1 fails with text; the delete (message 2) finds nothing; the rest succeed silently.
      const errno = i === 1 ? 17 : i === 2 ? 3 : 0;
      if (errnos) errnos[i] = errno;
      if (errno !== 0) replies.push(ack(m.seq, errno, i === 1 ? 'already there' : undefined));
    });
    return Promise.resolve(Buffer.concat(replies));
  };
  const kernel = new NetlinkXfrmKernel({ transact });
  const sa = makeOutboundSa();
  const ops: XfrmOp[] = [
    { kind: 'addState', state: sa },
    { kind: 'addState', state: { ...sa, spi: 9 } },
    { kind: 'deleteState', state: { ...sa, spi: 10 } },
    { kind: 'addState', state: { ...sa, spi: 0 } },
    { kind: 'addState', state: { ...sa, spi: 11 } },
  ];
  const results = await kernel.apply(ops);
  t.equal(sent.length, 4, 'one message per op, the unencodable op not sent');
  t.same(
    results.map((r) => [r.errno, r.message]),
    [
      [0, undefined],
      [17, 'already there'],
      [3, undefined],
      [22, results[3]?.message],
      [0, undefined],
    ],
  );
  t.match(results[3]?.message, /spi 0 is reserved/);
});
