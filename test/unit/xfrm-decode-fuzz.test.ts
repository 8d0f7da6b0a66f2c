// Decoder fuzz: random mutations and truncations of real kernel dump replies (and of encoded SAs) must never make
// the netlink splitter, the ack reader or the XFRM decoders throw, and whatever still decodes must be well formed.
import t from 'tap';
import { readFileSync } from 'node:fs';
import {
  decodePolicy,
  decodeState,
  encodeState,
  XFRM_MSG_NEWPOLICY,
  XFRM_MSG_NEWSA,
} from '../../src/xfrm/netlink-codec.js';
import { parseAddress } from '../../src/xfrm/netlink-address.js';
import { parseAck, splitMessages, type NetlinkMessage } from '../../src/xfrm/netlink-wire.js';
import type { XfrmPolicy, XfrmState } from '../../src/xfrm/types.js';
import { aead, makeInboundSa } from '../fakes/xfrm-objects.js';
import { prng } from '../fakes/prng.js';

const fixture = (name: string): { hex: string } =>
  JSON.parse(readFileSync(new URL(`fixtures/xfrm/${name}`, import.meta.url), 'utf8')) as { hex: string };

const INTERESTING = [0, 1, 3, 4, 7, 8, 0x7f, 0x80, 0xff, 0x100, 0xfff0, 0xffff, 0xffffffff];

function mutate(base: Buffer, rnd: () => number): Buffer {
  const pick = (n: number) => Math.floor(rnd() * n);
  let buf = Buffer.from(base);
  const rounds = 1 + pick(6);
  for (let r = 0; r < rounds && buf.length > 0; r++) {
    switch (pick(5)) {
      case 0: // flip a byte
        buf[pick(buf.length)] = pick(256);
        break;
      case 1: // truncate
        buf = buf.subarray(0, pick(buf.length + 1));
        break;
      case 2: {
        // interesting 16-bit value (lengths, types, families) at a random aligned offset
        const at = pick(Math.max(1, buf.length - 1)) & ~1;
        if (at + 2 <= buf.length) buf.writeUInt16LE((INTERESTING[pick(INTERESTING.length)] ?? 0) & 0xffff, at);
        break;
      }
      case 3: {
        const at = pick(Math.max(1, buf.length - 3)) & ~3;
        if (at + 4 <= buf.length) buf.writeUInt32LE((INTERESTING[pick(INTERESTING.length)] ?? 0) >>> 0, at);
        break;
      }
      default:
        {
          // duplicate a slice somewhere
          const from = pick(buf.length);
          const len = pick(Math.min(256, buf.length - from) + 1);
          buf = Buffer.concat([buf.subarray(0, from), buf.subarray(from, from + len), buf.subarray(from)]);
        }
        break;
    }
  }
  return buf;
}

function wellFormedState(s: XfrmState): boolean {
  parseAddress(s.src, s.family);
  parseAddress(s.dst, s.family);
  return (
    Number.isInteger(s.spi) &&
    s.spi >= 0 &&
    s.spi <= 0xffffffff &&
    (s.aead === undefined || Buffer.isBuffer(s.aead.key))
  );
}

function wellFormedPolicy(p: XfrmPolicy): boolean {
  parseAddress(p.selector.src.split('/')[0] ?? '', p.selector.family);
  parseAddress(p.selector.dst.split('/')[0] ?? '', p.selector.family);
  for (const x of p.templates) {
    parseAddress(x.src, x.family);
    parseAddress(x.dst, x.family);
  }
  return ['in', 'out', 'fwd'].includes(p.dir) && ['allow', 'block'].includes(p.action);
}

const encodedStates = Buffer.concat([
  encodeState('add', makeInboundSa({ aead: aead(1) }), 7),
  encodeState(
    'add',
    {
      family: 6,
      src: 'fd00::2',
      dst: 'fd00::1',
      spi: 9,
      proto: 51,
      mode: 'transport',
      reqid: 0,
      esn: false,
      replayWindow: 4,
    },
    8,
  ),
]);

const corpora: [string, Buffer][] = [
  ['kernel policy dump', Buffer.from(fixture('policy-dump-reply.json').hex, 'hex')],
  ['encoded SAs', encodedStates],
];
try {
  corpora.push(['kernel SA dump', Buffer.from(fixture('state-dump-reply.json').hex, 'hex')]);
} catch {
  // captured in the VM (test/vm/suites/xfrm-netlink.test.ts); absent until then
}

for (const [name, base] of corpora) {
  t.test(`${name}: 20000 mutations never throw`, (t) => {
    const rnd = prng(0x6b6d + base.length);
    let decoded = 0;
    let messages = 0;
    for (let i = 0; i < 20000; i++) {
      const buf = mutate(base, rnd);
      try {
        const msgs: NetlinkMessage[] = splitMessages(buf);
        messages += msgs.length;
        for (const m of msgs) {
          // Decode every payload as both kinds and as an ack: the type field may itself be corrupted.
          const asState = decodeState({ ...m, type: XFRM_MSG_NEWSA });
          const asPolicy = decodePolicy({ ...m, type: XFRM_MSG_NEWPOLICY });
          parseAck(m);
          if (asState && !wellFormedState(asState)) throw new Error('malformed state');
          if (asPolicy && !wellFormedPolicy(asPolicy)) throw new Error('malformed policy');
          decoded += (asState ? 1 : 0) + (asPolicy ? 1 : 0);
        }
      } catch (e) {
        t.fail(`mutation ${i} threw: ${(e as Error).message} (input ${buf.toString('hex').slice(0, 120)}...)`);
        break;
      }
    }
    t.ok(messages > 0, `mutated inputs still held ${messages} messages`);
    t.ok(decoded > 0, `${decoded} objects decoded from mutated input, none threw`);
    t.end();
  });
}

t.test('every truncation of a real reply yields only the complete objects before the cut', (t) => {
  const base = Buffer.from(fixture('policy-dump-reply.json').hex, 'hex');
  const ends: number[] = [];
  for (let off = 0; off < base.length; off += (base.readUInt32LE(off) + 3) & ~3) {
    ends.push(off + base.readUInt32LE(off));
  }
  const full = splitMessages(base).map(decodePolicy);
  const wrong: number[] = [];
  for (let cut = 0; cut <= base.length; cut++) {
    const complete = ends.filter((end) => end <= cut).length;
    const got = splitMessages(base.subarray(0, cut)).map(decodePolicy);
    if (got.length !== complete || got.some((p, i) => JSON.stringify(p) !== JSON.stringify(full[i]))) wrong.push(cut);
  }
  t.same(wrong, [], `all ${base.length + 1} cut points`);
  t.end();
});
