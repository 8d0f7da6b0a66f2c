// Unit tests of the XFRM netlink codec: encoder output byte-for-byte against iproute2's requests (captured with
// strace), decode(encode(x)) round trips, decoding of a real kernel policy dump, and one-line encoder errors.
import t from 'tap';
import { readFileSync } from 'node:fs';
import {
  decodePolicy,
  decodeState,
  encodeDeletePolicy,
  encodeDeleteState,
  encodeDumpPolicies,
  encodeDumpStates,
  encodeGetState,
  encodePolicy,
  encodeState,
  XFRM_MSG_GETSA,
} from '../../src/xfrm/netlink-codec.js';
import { NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, splitMessages } from '../../src/xfrm/netlink-wire.js';
import type { XfrmPolicy, XfrmState } from '../../src/xfrm/types.js';
import {
  aead,
  aeadKey,
  espTemplate,
  makeBlockPolicy,
  makeInboundSa,
  makeInPolicy,
  makeOutboundSa,
  makeOutPolicy,
} from '../fakes/xfrm-objects.js';

interface Golden {
  requests: Record<string, { command: string; hex: string }>;
}
const golden = JSON.parse(
  readFileSync(new URL('fixtures/xfrm/iproute2-requests.json', import.meta.url), 'utf8'),
) as Golden;
const policyDump = JSON.parse(
  readFileSync(new URL('fixtures/xfrm/policy-dump-reply.json', import.meta.url), 'utf8'),
) as { seq: number; hex: string };

function ipBytes(name: string): Buffer {
  const entry = golden.requests[name];
  if (!entry) throw new Error(`no golden request ${name}`);
  return Buffer.from(entry.hex, 'hex');
}
const stateDump = JSON.parse(readFileSync(new URL('fixtures/xfrm/state-dump-reply.json', import.meta.url), 'utf8')) as {
  seq: number;
  hex: string;
};
const seqOf = (b: Buffer): number => b.readUInt32LE(8);

/** iproute2 also sends XFRMA_SRCADDR on SA deletes/gets; the kernel ignores it when an SPI is given. Drop it. */
function withoutSrcAddrAttr(msg: Buffer): Buffer {
  const head = msg.subarray(0, 16 + 24);
  const rest = msg.subarray(16 + 24);
  const parts: Buffer[] = [head];
  for (let off = 0; off < rest.length;) {
    const len = rest.readUInt16LE(off);
    const aligned = (len + 3) & ~3;
    if (rest.readUInt16LE(off + 2) !== 13) parts.push(rest.subarray(off, off + aligned));
    off += aligned;
  }
  const out = Buffer.concat(parts);
  out.writeUInt32LE(out.length, 0);
  return out;
}

const KEY = aeadKey(0xaa);

const inboundSa = makeInboundSa({ aead: aead(0xaa) });
const outboundSa = makeOutboundSa({ aead: aead(0xaa) });
const outPolicy = makeOutPolicy();
const inPolicy = makeInPolicy();
const blockPolicy = makeBlockPolicy();
const fwdV6: XfrmPolicy = {
  dir: 'fwd',
  selector: { family: 6, src: '::/0', dst: 'fd00:10:244:2::/64', proto: 0 },
  mark: { value: 0xd0, mask: 0xff },
  priority: 100,
  action: 'allow',
  templates: [espTemplate('fd00:198:18::1', 'fd00:198:18::2', 2, 6)],
};

t.test('encoder output equals iproute2 bytes', (t) => {
  const cases: [string, (seq: number) => Buffer][] = [
    ['policy-out-spi', (s) => encodePolicy('add', outPolicy, s)],
    ['policy-in-anyspi', (s) => encodePolicy('add', inPolicy, s)],
    ['policy-update-in', (s) => encodePolicy('update', inPolicy, s)],
    ['policy-block', (s) => encodePolicy('add', blockPolicy, s)],
    ['policy-fwd-v6', (s) => encodePolicy('add', fwdV6, s)],
    ['policy-delete', (s) => encodeDeletePolicy(outPolicy, s)],
    ['state-add-inbound', (s) => encodeState('add', inboundSa, s)],
    ['state-update-outbound', (s) => encodeState('update', outboundSa, s)],
    ['policy-dump', (s) => encodeDumpPolicies(s)],
  ];
  for (const [name, encode] of cases) {
    const expected = ipBytes(name);
    t.equal(encode(seqOf(expected)).toString('hex'), expected.toString('hex'), name);
  }
  const del = withoutSrcAddrAttr(ipBytes('state-delete'));
  t.equal(encodeDeleteState(inboundSa, seqOf(del)).toString('hex'), del.toString('hex'), 'state-delete');
  // `ip xfrm state get` asks without NLM_F_ACK; we always ask for the ack so every message has a terminal reply.
  const get = withoutSrcAddrAttr(ipBytes('state-get'));
  get.writeUInt16LE(NLM_F_REQUEST | NLM_F_ACK, 6);
  t.equal(encodeGetState(inboundSa, seqOf(get)).toString('hex'), get.toString('hex'), 'state-get (+ack)');
  const dump = encodeDumpStates(9);
  t.same([dump.length, dump.readUInt16LE(4), dump.readUInt16LE(6)], [16, XFRM_MSG_GETSA, NLM_F_REQUEST | NLM_F_DUMP]);
  t.end();
});

t.test('decode(encode(x)) gives x back', (t) => {
  const policies = [outPolicy, inPolicy, blockPolicy, fwdV6];
  for (const p of policies) {
    const [msg] = splitMessages(encodePolicy('add', p, 1));
    t.same(decodePolicy(msg!), { ...p, index: 0 }, `${p.dir} ${p.selector.dst}`);
  }
  const legacyWindow: XfrmState = { ...outboundSa, esn: false, replayWindow: 32, mark: undefined };
  delete legacyWindow.mark;
  const bigWindowNoEsn: XfrmState = { ...outboundSa, esn: false, replayWindow: 64 };
  const v6: XfrmState = { ...inboundSa, family: 6, src: 'fd00:198:18::2', dst: 'fd00:198:18::1' };
  const transportNoAead: XfrmState = { ...outboundSa, mode: 'transport', proto: 51, esn: false, replayWindow: 0 };
  delete transportNoAead.aead;
  for (const s of [inboundSa, outboundSa, legacyWindow, bigWindowNoEsn, v6, transportNoAead]) {
    const [msg] = splitMessages(encodeState('add', s, 1));
    t.same(decodeState(msg!), s, `state ${s.dst} ${s.mode} esn=${s.esn} window=${s.replayWindow}`);
  }
  t.end();
});

t.test('a real kernel policy dump decodes; unrepresentable objects are skipped', (t) => {
  const msgs = splitMessages(Buffer.from(policyDump.hex, 'hex'));
  t.ok(
    msgs.every((m) => m.seq === policyDump.seq),
    'all replies carry the dump seq',
  );
  const decoded = msgs.map(decodePolicy).filter((p) => p !== undefined);
  t.equal(msgs.filter((m) => m.type === 0x13).length, 9, '9 policies in the reply');
  t.equal(decoded.length, 8, 'the sub-type policy is skipped, the rest decode');
  const byDst = (dst: string) => decoded.filter((p) => p.selector.dst === dst);
  t.same(
    byDst('10.244.2.0/24').map((p) => ({ ...p, index: undefined })),
    [{ ...outPolicy, index: undefined }],
  );
  t.same(
    byDst('fd00:10:244:2::/64').map((p) => ({ ...p, index: undefined })),
    [{ ...fwdV6, index: undefined }],
  );
  const mixed = byDst('10.8.0.0/16')[0];
  t.same(
    mixed?.templates.map((x) => [x.family, x.proto, x.src]),
    [
      [4, 50, '1.1.1.1'],
      [6, 51, '2001:db8::1'],
    ],
    'two templates of different families',
  );
  t.same(
    byDst('192.0.2.128/25').map((p) => [p.dir, p.action, p.selector.proto, p.templates[0]?.mode]),
    [
      ['in', 'block', 17, undefined],
      ['out', 'allow', 6, 'transport'],
    ],
    'ported selectors and transport templates',
  );
  t.equal(byDst('10.1.0.0/16').length, 0, 'sub policy not reported');
  t.end();
});

t.test('a real kernel SA dump decodes, foreign SAs included', (t) => {
  const msgs = splitMessages(Buffer.from(stateDump.hex, 'hex'));
  const decoded = msgs.map(decodeState).filter((s) => s !== undefined);
  t.equal(decoded.length, 7, 'all 7 SAs decode (3 ours-shaped, AH, ESP enc+auth, IPComp, its IPIP state)');
  const bySpi = (spi: number, dst: string) => decoded.find((s) => s.spi === spi && s.dst === dst);
  t.same(bySpi(1, '198.18.0.1'), inboundSa, 'inbound SA: AEAD key, ICV, reqid, mark, output-mark, ESN 1024');
  t.same(bySpi(1, '198.18.0.2'), outboundSa, 'outbound SA');
  t.same(bySpi(0x10, 'fd00::2'), { ...outboundSa, family: 6, src: 'fd00::1', dst: 'fd00::2', spi: 0x10 }, 'IPv6 SA');
  t.same(
    bySpi(0x200, '192.0.2.2'),
    {
      family: 4,
      src: '192.0.2.1',
      dst: '192.0.2.2',
      spi: 0x200,
      proto: 51,
      mode: 'transport',
      reqid: 0,
      esn: false,
      replayWindow: 0,
    },
    'AH transport SA: no AEAD',
  );
  t.same(
    bySpi(0x300, '192.0.2.3'),
    {
      family: 4,
      src: '192.0.2.1',
      dst: '192.0.2.3',
      spi: 0x300,
      proto: 50,
      mode: 'tunnel',
      reqid: 9,
      esn: false,
      replayWindow: 32,
    },
    'ESP with enc + auth-trunc: no AEAD, legacy window',
  );
  t.same(
    decoded
      .filter((s) => s.dst === '192.0.2.4')
      .map((s) => s.proto)
      .sort((a, b) => a - b),
    [4, 108],
    'IPComp SA and its IPIP tunnel SA',
  );
  t.end();
});

t.test('encoder refuses bad input with a one-line error naming the field', (t) => {
  const bad: [string, () => Buffer, RegExp][] = [
    ['bad address', () => encodeState('add', { ...outboundSa, dst: '198.18.0.300' }, 1), /dst: "198.18.0.300" is not/],
    ['family mismatch', () => encodeState('add', { ...outboundSa, src: 'fd00::1' }, 1), /src: "fd00::1" is an IPv6/],
    ['spi 0', () => encodeState('add', { ...outboundSa, spi: 0 }, 1), /spi 0 is reserved/],
    ['spi too big', () => encodeState('add', { ...outboundSa, spi: 2 ** 32 }, 1), /spi 4294967296 is not an integer/],
    ['mode', () => encodeState('add', { ...outboundSa, mode: 'other' }, 1), /mode "other" cannot be installed/],
    [
      'aead name',
      () => encodeState('add', { ...outboundSa, aead: { name: 'x'.repeat(64), key: KEY, icvBits: 128 } }, 1),
      /AEAD name .* must be 1\.\.63 bytes/,
    ],
    ['window', () => encodeState('add', { ...outboundSa, replayWindow: 5000 }, 1), /replay window 5000/],
    ['mark', () => encodeState('add', { ...outboundSa, mark: { value: -1, mask: 0xff } }, 1), /mark value -1/],
    [
      'host bits',
      () => encodePolicy('add', { ...outPolicy, selector: { ...outPolicy.selector, dst: '10.244.2.1/24' } }, 1),
      /selector dst: "10.244.2.1\/24" has host bits set/,
    ],
    [
      'prefix',
      () => encodePolicy('add', { ...outPolicy, selector: { ...outPolicy.selector, dst: '10.0.0.0/33' } }, 1),
      /bad prefix length/,
    ],
    ['dir', () => encodePolicy('add', { ...outPolicy, dir: 'sideways' as 'in' }, 1), /direction "sideways"/],
    ['action', () => encodePolicy('add', { ...outPolicy, action: 'drop' as 'block' }, 1), /action "drop"/],
    [
      'family',
      () => encodePolicy('add', { ...outPolicy, selector: { ...outPolicy.selector, family: 5 as 4 } }, 1),
      /family 5/,
    ],
    [
      'template',
      () => encodePolicy('add', { ...outPolicy, templates: [{ ...outPolicy.templates[0]!, reqid: 1.5 }] }, 1),
      /template 0 reqid 1.5/,
    ],
  ];
  for (const [name, run, pattern] of bad) {
    t.throws(run, pattern, name);
    try {
      run();
    } catch (e) {
      t.notMatch((e as Error).message, /\n/, `${name}: one line`);
    }
  }
  t.end();
});
