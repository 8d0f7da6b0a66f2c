// The addon's native encoder (native/xfrm_encode.cc) against the TypeScript codec, which stays the reference:
// for the ops it covers and for every variation it must leave to TypeScript (IPv6, bad values, other kinds,
// odd optional fields), NetlinkXfrmKernel sends the same bytes and reports the same per-op results with and
// without it. Skips when the addon is not built.
import t from 'tap';
import { addonXfrmEncode, NATIVE_ENCODE_ROOM } from '../../src/xfrm/netlink-addon.js';
import { encodeState } from '../../src/xfrm/netlink-codec.js';
import { NetlinkXfrmKernel } from '../../src/xfrm/netlink-kernel.js';
import { NetlinkWriter } from '../../src/xfrm/netlink-wire.js';
import type { XfrmOp, XfrmPolicy, XfrmState } from '../../src/xfrm/types.js';
import {
  makeBlockPolicy,
  makeInboundSa,
  makeInPolicy,
  makeOutboundSa,
  makeOutPolicy,
  espTemplate,
} from '../fakes/xfrm-objects.js';

const native = addonXfrmEncode();

function variations(): XfrmOp[] {
  const ops: XfrmOp[] = [];
  const sas: XfrmState[] = [makeOutboundSa(), makeInboundSa()];
  for (let i = 2; i < 40; i++) {
    sas.push(makeOutboundSa({ dst: `198.18.${i >> 8}.${i & 0xff}`, spi: i }));
    sas.push(makeInboundSa({ src: `198.18.${i >> 8}.${i & 0xff}`, spi: i + 1000 }));
  }
  const base = makeOutboundSa();
  const odd: unknown[] = [
    { ...base, esn: false, replayWindow: 16 },
    { ...base, esn: false, replayWindow: 33 },
    { ...base, replayWindow: 4096 },
    { ...base, replayWindow: 4097 },
    { ...base, mark: undefined, outputMark: undefined },
    { ...base, aead: undefined },
    { ...base, aead: { ...base.aead, key: Buffer.alloc(0) } },
    { ...base, aead: { ...base.aead, key: [1, 2, 3] } },
    { ...base, aead: { ...base.aead, name: '' } },
    { ...base, aead: { ...base.aead, icvBits: -1 } },
    { ...base, spi: 0 },
    { ...base, spi: 2 ** 32 },
    { ...base, spi: 1.5 },
    { ...base, spi: '1' },
    { ...base, proto: 256 },
    { ...base, reqid: -0 },
    { ...base, src: '01.2.3.4' },
    { ...base, src: '1.2.3' },
    { ...base, src: '1.2.3.4 ' },
    { ...base, dst: '256.1.1.1' },
    { ...base, family: 6, src: '2001:db8::1', dst: '2001:db8::2' },
    { ...base, family: 6 },
    { ...base, mode: 'transport', proto: 51 },
    { ...base, mode: 'beet' },
    { ...base, esn: 1 },
    { ...base, mark: null },
    { ...base, mark: { value: 1 } },
    { ...base, outputMark: { value: 0xffffffff, mask: 0 } },
  ];
  for (const s of [...sas, ...(odd as XfrmState[])]) ops.push({ kind: 'addState', state: s });
  ops.push({ kind: 'deleteState', state: base });
  const out = makeOutPolicy();
  const policies: unknown[] = [
    out,
    makeInPolicy(),
    makeBlockPolicy(),
    { ...out, templates: [] },
    { ...out, templates: [...out.templates, ...out.templates] },
    { ...out, templates: Array.from({ length: 9 }, () => out.templates[0]) },
    { ...out, templates: [espTemplate('2001:db8::1', '2001:db8::2', 5, 6)] },
    { ...out, templates: [{ ...out.templates[0], spi: -1 }] },
    { ...out, templates: [null] },
    { ...out, mark: undefined },
    { ...out, action: 'block' },
    { ...out, action: 'drop' },
    { ...out, dir: 'fwd' },
    { ...out, dir: 'up' },
    { ...out, priority: 1.5 },
    { ...out, selector: { ...out.selector, src: '10.0.0.1/24' } },
    { ...out, selector: { ...out.selector, src: '10.0.0.0/024' } },
    { ...out, selector: { ...out.selector, src: '10.0.0.0/33' } },
    { ...out, selector: { ...out.selector, src: '10.0.0.0/' } },
    { ...out, selector: { ...out.selector, dst: '10.1.2.3' } },
    { ...out, selector: { ...out.selector, dst: '0.0.0.0/0' } },
    { ...out, selector: { ...out.selector, proto: 17 } },
    { ...out, selector: { family: 6, src: '::/0', dst: '2001:db8::/64', proto: 0 } },
  ];
  for (const p of policies as XfrmPolicy[]) {
    ops.push({ kind: 'addPolicy', policy: p }, { kind: 'updatePolicy', policy: p });
  }
  ops.push({ kind: 'deletePolicy', policy: out });
  return ops;
}

async function request(ops: XfrmOp[], nativeEncode: boolean): Promise<{ bytes: Buffer; results: string[] }> {
  let bytes = Buffer.alloc(0);
  const kernel = new NetlinkXfrmKernel({
    nativeEncode,
    transact: (_netns, req) => {
      bytes = Buffer.concat([bytes, req]);
      return Promise.resolve(Buffer.alloc(0));
    },
  });
  (kernel as unknown as { seq: number }).seq = 1000;
  const results = (await kernel.apply(ops)).map((r) => `${r.op.kind} ${r.errno} ${r.message ?? ''}`);
  return { bytes, results };
}

t.test(
  'native encoder: same bytes and results as the TypeScript codec',
  { skip: native ? false : 'addon not built' },
  async (t) => {
    const ops = variations();
    const [withNative, tsOnly] = [await request(ops, true), await request(ops, false)];
    t.ok(tsOnly.bytes.length > 0);
    t.ok(withNative.bytes.equals(tsOnly.bytes), `request bytes (${withNative.bytes.length} vs ${tsOnly.bytes.length})`);
    t.same(withNative.results, tsOnly.results);
    t.ok(
      tsOnly.results.some((r) => r.includes('spi 0 is reserved')),
      'encoder errors come through',
    );
  },
);

t.test(
  'native encoder: stops without room, resumes after the writer grows',
  { skip: native ? false : 'addon not built' },
  async (t) => {
    if (!native) return;
    const ops: XfrmOp[] = Array.from({ length: 50 }, (_, i) => ({
      kind: 'addState',
      state: makeOutboundSa({ spi: i + 1 }),
    }));
    const w = new NetlinkWriter(NATIVE_ENCODE_ROOM + 100);
    const cursor = new Uint32Array(1);
    const seqs = Uint32Array.from(ops, (_, i) => i + 1);
    t.equal(native(ops, 0, ops.length, seqs, w.raw, cursor), 1, 'one message, then less than the room left');
    const size = encodeState('add', makeOutboundSa(), 1).length;
    t.equal(cursor[0], size);
    t.ok(w.raw.subarray(0, size).every((b, i) => b === encodeState('add', makeOutboundSa({ spi: 1 }), 1)[i]));
    t.equal(native(ops, 5, 5, seqs, w.raw, cursor), 0, 'empty range');
    t.throws(() => native(ops, 0, 1, seqs, w.raw, new Uint32Array(0)), /xfrmEncode\(ops/);
    // Through the adapter a batch far larger than its first buffer estimate still encodes completely.
    const many = await request(
      Array.from({ length: 300 }, (_, i) => ({ kind: 'addState', state: makeOutboundSa({ spi: i + 1 }) })),
      true,
    );
    t.equal(many.bytes.length, 300 * size);
  },
);
