// XFRM netlink codec (pure): XfrmState / XfrmPolicy (src/xfrm/types.ts) <-> NETLINK_XFRM messages.
// Encoding follows the kernel UAPI (linux/xfrm.h) and produces the same bytes as iproute2's `ip xfrm` for the same
// object (golden tests); it throws a one-line Error naming the bad field. Decoding reads dump and get replies and
// never throws: an object of a shape we cannot represent (unknown family, direction or action, sub-policy type,
// truncated struct or attribute) is skipped; shapes we can represent but do not use ourselves (other protocols,
// transport mode, no AEAD, auth/crypt algorithms) decode with those fields absent.
import { formatAddress, parseAddress, parseCidr, type ParsedCidr } from './netlink-address.js';
import type { Family, PolicyDir, XfrmMark, XfrmPolicy, XfrmSelector, XfrmState, XfrmTemplate } from './types.js';
import {
  NLM_F_ACK,
  NLM_F_DUMP,
  NLM_F_REQUEST,
  netlinkAttr,
  netlinkMessage,
  parseAttributes,
  u32Attr,
  type NetlinkMessage,
} from './netlink-wire.js';

export const XFRM_MSG_NEWSA = 0x10;
export const XFRM_MSG_DELSA = 0x11;
export const XFRM_MSG_GETSA = 0x12;
export const XFRM_MSG_NEWPOLICY = 0x13;
export const XFRM_MSG_DELPOLICY = 0x14;
export const XFRM_MSG_GETPOLICY = 0x15;
export const XFRM_MSG_UPDPOLICY = 0x19;
export const XFRM_MSG_UPDSA = 0x1a;

export const XFRMA_TMPL = 5;
export const XFRMA_POLICY_TYPE = 16;
export const XFRMA_ALG_AEAD = 18;
export const XFRMA_MARK = 21;
export const XFRMA_REPLAY_ESN_VAL = 23;
export const XFRMA_SET_MARK = 29;
export const XFRMA_SET_MARK_MASK = 30;

export const XFRM_STATE_ESN = 128;
const XFRM_POLICY_TYPE_MAIN = 0;
const XFRM_INF = 0xffffffffffffffffn;
const AF_INET = 2;
const AF_INET6 = 10;
/** The kernel refuses ESN bitmaps longer than 128 32-bit words (XFRMA_REPLAY_ESN_MAX / 32). */
export const MAX_REPLAY_WINDOW = 128 * 32;
/** Without ESN, iproute2 keeps windows up to the legacy 32-bit bitmap in xfrm_usersa_info; so do we. */
const LEGACY_REPLAY_WINDOW_MAX = 32;

// Sizes and offsets from linux/xfrm.h (x86_64, verified with offsetof).
const USERSA_INFO_BYTES = 224;
const USERPOLICY_INFO_BYTES = 168;
const USER_TMPL_BYTES = 64;
const USERSA_ID_BYTES = 24;
const USERPOLICY_ID_BYTES = 64;
const ALGO_AEAD_HDR_BYTES = 72;
const ALG_NAME_BYTES = 64;
const REPLAY_ESN_HDR_BYTES = 24;

const POLICY_DIRS: readonly PolicyDir[] = ['in', 'out', 'fwd'];
const ACTION_CODES: Record<XfrmPolicy['action'], number> = { allow: 0, block: 1 };

function familyCode(family: Family): number {
  return family === 4 ? AF_INET : AF_INET6;
}

function familyOf(code: number): Family | undefined {
  if (code === AF_INET) return 4;
  if (code === AF_INET6) return 6;
  return undefined;
}

function checkUint(value: number, max: number, what: string): number {
  if (!Number.isInteger(value) || value < 0 || value > max) {
    throw new Error(`${what} ${String(value)} is not an integer in 0..${max}`);
  }
  return value;
}

const u32 = (value: number, what: string): number => checkUint(value, 0xffffffff, what);
const u8 = (value: number, what: string): number => checkUint(value, 0xff, what);

function modeCode(mode: XfrmState['mode'], what: string): number {
  if (mode === 'transport') return 0;
  if (mode === 'tunnel') return 1;
  throw new Error(`${what} mode "${mode}" cannot be installed (tunnel or transport)`);
}

function modeOf(code: number): XfrmState['mode'] {
  if (code === 0) return 'transport';
  if (code === 1) return 'tunnel';
  return 'other';
}

function address(text: string, family: Family, what: string): Buffer {
  try {
    return parseAddress(text, family).bytes;
  } catch (e) {
    throw new Error(`${what}: ${(e as Error).message}`, { cause: e });
  }
}

function cidr(text: string, family: Family, what: string): ParsedCidr {
  try {
    return parseCidr(text, family);
  } catch (e) {
    throw new Error(`${what}: ${(e as Error).message}`, { cause: e });
  }
}

function checkFamily(family: number, what: string): Family {
  if (family !== 4 && family !== 6) throw new Error(`${what} family ${String(family)} is not 4 or 6`);
  return family;
}

/** Writes lifetime limits "infinite" (bytes and packets, soft and hard) as iproute2 does; times stay 0. */
function writeInfiniteLifetime(buf: Buffer, at: number): void {
  for (let i = 0; i < 4; i++) buf.writeBigUInt64LE(XFRM_INF, at + i * 8);
}

function writeSelector(buf: Buffer, sel: XfrmSelector, what: string): void {
  const family = checkFamily(sel.family, `${what} selector`);
  const src = cidr(sel.src, family, `${what} selector src`);
  const dst = cidr(sel.dst, family, `${what} selector dst`);
  dst.bytes.copy(buf, 0);
  src.bytes.copy(buf, 16);
  buf.writeUInt16LE(familyCode(family), 40);
  buf.writeUInt8(dst.prefixLen, 42);
  buf.writeUInt8(src.prefixLen, 43);
  buf.writeUInt8(u8(sel.proto, `${what} selector proto`), 44);
}

function markAttr(type: number, mark: XfrmMark, what: string): Buffer {
  const data = Buffer.alloc(8);
  data.writeUInt32LE(u32(mark.value, `${what} value`), 0);
  data.writeUInt32LE(u32(mark.mask, `${what} mask`), 4);
  return netlinkAttr(type, data);
}

function stateLabel(s: { dst: string; spi: number }): string {
  return `state dst ${s.dst} spi ${String(s.spi)}`;
}

function policyLabel(p: Pick<XfrmPolicy, 'dir' | 'selector'>): string {
  return `policy ${p.dir} ${p.selector.src} -> ${p.selector.dst}`;
}

/** XFRM_MSG_NEWSA (add) or XFRM_MSG_UPDSA (update) carrying a full SA. */
export function encodeState(kind: 'add' | 'update', state: XfrmState, seq: number): Buffer {
  const what = stateLabel(state);
  const family = checkFamily(state.family, what);
  const info = Buffer.alloc(USERSA_INFO_BYTES);
  // Selector stays all-zero (family 0): the kernel fills in the SA's family, as with `ip xfrm state add`.
  address(state.dst, family, `${what} dst`).copy(info, 56);
  const spi = u32(state.spi, `${what} spi`);
  if (spi === 0) throw new Error(`${what}: spi 0 is reserved`);
  info.writeUInt32BE(spi, 72);
  info.writeUInt8(u8(state.proto, `${what} proto`), 76);
  address(state.src, family, `${what} src`).copy(info, 80);
  writeInfiniteLifetime(info, 96);
  info.writeUInt32LE(u32(state.reqid, `${what} reqid`), 208);
  info.writeUInt16LE(familyCode(family), 212);
  info.writeUInt8(modeCode(state.mode, what), 214);
  const window = checkUint(state.replayWindow, MAX_REPLAY_WINDOW, `${what} replay window`);
  const useEsnAttr = state.esn || window > LEGACY_REPLAY_WINDOW_MAX;
  info.writeUInt8(useEsnAttr ? 0 : window, 215);
  info.writeUInt8(state.esn ? XFRM_STATE_ESN : 0, 216);

  const attrs: Buffer[] = [info];
  if (state.aead) {
    const name = Buffer.from(state.aead.name, 'utf8');
    if (name.length === 0 || name.length >= ALG_NAME_BYTES) {
      throw new Error(`${what}: AEAD name "${state.aead.name}" must be 1..${ALG_NAME_BYTES - 1} bytes`);
    }
    const key = state.aead.key;
    if (key.length === 0 || key.length > 512) throw new Error(`${what}: AEAD key of ${key.length} bytes (1..512)`);
    const aead = Buffer.alloc(ALGO_AEAD_HDR_BYTES + key.length);
    name.copy(aead, 0);
    aead.writeUInt32LE(key.length * 8, 64);
    aead.writeUInt32LE(u32(state.aead.icvBits, `${what} AEAD ICV bits`), 68);
    key.copy(aead, ALGO_AEAD_HDR_BYTES);
    attrs.push(netlinkAttr(XFRMA_ALG_AEAD, aead));
  }
  if (useEsnAttr) {
    // Header only (bitmap length in words, window in packets): the kernel allocates the bitmap itself.
    const esn = Buffer.alloc(REPLAY_ESN_HDR_BYTES);
    esn.writeUInt32LE(Math.ceil(window / 32), 0);
    esn.writeUInt32LE(window, 20);
    attrs.push(netlinkAttr(XFRMA_REPLAY_ESN_VAL, esn));
  }
  if (state.mark) attrs.push(markAttr(XFRMA_MARK, state.mark, `${what} mark`));
  if (state.outputMark) {
    attrs.push(u32Attr(XFRMA_SET_MARK, u32(state.outputMark.value, `${what} output-mark value`)));
    attrs.push(u32Attr(XFRMA_SET_MARK_MASK, u32(state.outputMark.mask, `${what} output-mark mask`)));
  }
  const type = kind === 'add' ? XFRM_MSG_NEWSA : XFRM_MSG_UPDSA;
  return netlinkMessage(type, NLM_F_REQUEST | NLM_F_ACK, seq, Buffer.concat(attrs));
}

export type StateId = Pick<XfrmState, 'family' | 'dst' | 'spi' | 'proto' | 'mark'>;
export type PolicyId = Pick<XfrmPolicy, 'dir' | 'selector' | 'mark'>;

function encodeStateId(type: number, id: StateId, seq: number): Buffer {
  const what = stateLabel(id);
  const family = checkFamily(id.family, what);
  const body = Buffer.alloc(USERSA_ID_BYTES);
  address(id.dst, family, `${what} dst`).copy(body, 0);
  body.writeUInt32BE(u32(id.spi, `${what} spi`), 16);
  body.writeUInt16LE(familyCode(family), 20);
  body.writeUInt8(u8(id.proto, `${what} proto`), 22);
  const parts: Buffer[] = [body];
  // The kernel keys SAs by (dst, spi, proto, mark): an SA with a mark is only found with that mark.
  if (id.mark) parts.push(markAttr(XFRMA_MARK, id.mark, `${what} mark`));
  return netlinkMessage(type, NLM_F_REQUEST | NLM_F_ACK, seq, Buffer.concat(parts));
}

/** XFRM_MSG_DELSA for the SA with this (dst, spi, proto, mark). */
export function encodeDeleteState(id: StateId, seq: number): Buffer {
  return encodeStateId(XFRM_MSG_DELSA, id, seq);
}

/** XFRM_MSG_GETSA for one SA; the kernel answers with an XFRM_MSG_NEWSA, then the ack. */
export function encodeGetState(id: StateId, seq: number): Buffer {
  return encodeStateId(XFRM_MSG_GETSA, id, seq);
}

function encodeTemplate(t: XfrmTemplate, what: string): Buffer {
  const family = checkFamily(t.family, what);
  const out = Buffer.alloc(USER_TMPL_BYTES);
  address(t.dst, family, `${what} dst`).copy(out, 0);
  out.writeUInt32BE(u32(t.spi, `${what} spi`), 16);
  out.writeUInt8(u8(t.proto, `${what} proto`), 20);
  out.writeUInt16LE(familyCode(family), 24);
  address(t.src, family, `${what} src`).copy(out, 28);
  out.writeUInt32LE(u32(t.reqid, `${what} reqid`), 44);
  out.writeUInt8(modeCode(t.mode, what), 48);
  // Any algorithm allowed (aalgos/ealgos/calgos all ones), as iproute2 does; the inbound check needs it.
  out.writeUInt32LE(0xffffffff, 52);
  out.writeUInt32LE(0xffffffff, 56);
  out.writeUInt32LE(0xffffffff, 60);
  return out;
}

function dirCode(dir: PolicyDir, what: string): number {
  const code = POLICY_DIRS.indexOf(dir);
  if (code < 0) throw new Error(`${what}: direction "${dir}" is not in, out or fwd`);
  return code;
}

/** XFRM_MSG_NEWPOLICY (add) or XFRM_MSG_UPDPOLICY (update: replace the policy with the same dir/selector/mark). */
export function encodePolicy(kind: 'add' | 'update', policy: XfrmPolicy, seq: number): Buffer {
  const what = policyLabel(policy);
  const info = Buffer.alloc(USERPOLICY_INFO_BYTES);
  writeSelector(info, policy.selector, what);
  writeInfiniteLifetime(info, 56);
  info.writeUInt32LE(u32(policy.priority, `${what} priority`), 152);
  info.writeUInt8(dirCode(policy.dir, what), 160);
  const action = (ACTION_CODES as Partial<Record<string, number>>)[policy.action];
  if (action === undefined) throw new Error(`${what}: action "${policy.action}" is not allow or block`);
  info.writeUInt8(action, 161);
  const attrs: Buffer[] = [info];
  if (policy.templates.length > 0) {
    const tmpls = policy.templates.map((t, i) => encodeTemplate(t, `${what} template ${i}`));
    attrs.push(netlinkAttr(XFRMA_TMPL, Buffer.concat(tmpls)));
  }
  if (policy.mark) attrs.push(markAttr(XFRMA_MARK, policy.mark, `${what} mark`));
  const type = kind === 'add' ? XFRM_MSG_NEWPOLICY : XFRM_MSG_UPDPOLICY;
  return netlinkMessage(type, NLM_F_REQUEST | NLM_F_ACK, seq, Buffer.concat(attrs));
}

/** XFRM_MSG_DELPOLICY for the main-type policy with this direction, selector and mark. */
export function encodeDeletePolicy(id: PolicyId, seq: number): Buffer {
  const what = policyLabel(id);
  const body = Buffer.alloc(USERPOLICY_ID_BYTES);
  writeSelector(body, id.selector, what);
  body.writeUInt8(dirCode(id.dir, what), 60);
  const parts: Buffer[] = [body];
  if (id.mark) parts.push(markAttr(XFRMA_MARK, id.mark, `${what} mark`));
  return netlinkMessage(XFRM_MSG_DELPOLICY, NLM_F_REQUEST | NLM_F_ACK, seq, Buffer.concat(parts));
}

/** Dump request for all SAs (no filter) of the socket's namespace. */
export function encodeDumpStates(seq: number): Buffer {
  return netlinkMessage(XFRM_MSG_GETSA, NLM_F_REQUEST | NLM_F_DUMP, seq, Buffer.alloc(0));
}

/** Dump request for all policies of the socket's namespace. */
export function encodeDumpPolicies(seq: number): Buffer {
  return netlinkMessage(XFRM_MSG_GETPOLICY, NLM_F_REQUEST | NLM_F_DUMP, seq, Buffer.alloc(0));
}

function readMark(data: Buffer | undefined): XfrmMark | undefined | null {
  if (data === undefined) return undefined;
  if (data.length < 8) return null;
  return { value: data.readUInt32LE(0), mask: data.readUInt32LE(4) };
}

/** An XFRM_MSG_NEWSA payload as an XfrmState, or undefined when it is not representable or truncated. */
export function decodeState(msg: NetlinkMessage): XfrmState | undefined {
  if (msg.type !== XFRM_MSG_NEWSA) return undefined;
  const p = msg.payload;
  if (p.length < USERSA_INFO_BYTES) return undefined;
  const family = familyOf(p.readUInt16LE(212));
  if (family === undefined) return undefined;
  const attrs = parseAttributes(p, USERSA_INFO_BYTES);
  if (attrs === undefined) return undefined;
  const flags = p.readUInt8(216);
  const state: XfrmState = {
    family,
    src: formatAddress(p, 80, family),
    dst: formatAddress(p, 56, family),
    spi: p.readUInt32BE(72),
    proto: p.readUInt8(76),
    mode: modeOf(p.readUInt8(214)),
    reqid: p.readUInt32LE(208),
    esn: (flags & XFRM_STATE_ESN) !== 0,
    replayWindow: p.readUInt8(215),
  };
  const aead = attrs.get(XFRMA_ALG_AEAD);
  if (aead !== undefined) {
    if (aead.length < ALGO_AEAD_HDR_BYTES) return undefined;
    const keyBytes = Math.ceil(aead.readUInt32LE(64) / 8);
    if (aead.length < ALGO_AEAD_HDR_BYTES + keyBytes) return undefined;
    const nameEnd = aead.subarray(0, ALG_NAME_BYTES).indexOf(0);
    state.aead = {
      name: aead.subarray(0, nameEnd < 0 ? ALG_NAME_BYTES : nameEnd).toString('utf8'),
      key: Buffer.from(aead.subarray(ALGO_AEAD_HDR_BYTES, ALGO_AEAD_HDR_BYTES + keyBytes)),
      icvBits: aead.readUInt32LE(68),
    };
  }
  const esn = attrs.get(XFRMA_REPLAY_ESN_VAL);
  if (esn !== undefined) {
    if (esn.length < REPLAY_ESN_HDR_BYTES) return undefined;
    state.replayWindow = esn.readUInt32LE(20);
  }
  const mark = readMark(attrs.get(XFRMA_MARK));
  if (mark === null) return undefined;
  if (mark) state.mark = mark;
  const setMark = attrs.get(XFRMA_SET_MARK);
  if (setMark !== undefined) {
    const setMask = attrs.get(XFRMA_SET_MARK_MASK);
    if (setMark.length < 4 || (setMask !== undefined && setMask.length < 4)) return undefined;
    // Without a mask attribute the kernel applies the whole 32-bit mark.
    state.outputMark = { value: setMark.readUInt32LE(0), mask: setMask ? setMask.readUInt32LE(0) : 0xffffffff };
  }
  return state;
}

function decodeTemplate(p: Buffer, at: number): XfrmTemplate | undefined {
  const family = familyOf(p.readUInt16LE(at + 24));
  if (family === undefined) return undefined;
  return {
    family,
    src: formatAddress(p, at + 28, family),
    dst: formatAddress(p, at, family),
    proto: p.readUInt8(at + 20),
    mode: modeOf(p.readUInt8(at + 48)),
    reqid: p.readUInt32LE(at + 44),
    spi: p.readUInt32BE(at + 16),
  };
}

/** An XFRM_MSG_NEWPOLICY payload as an XfrmPolicy, or undefined when it is not representable or truncated. */
export function decodePolicy(msg: NetlinkMessage): XfrmPolicy | undefined {
  if (msg.type !== XFRM_MSG_NEWPOLICY) return undefined;
  const p = msg.payload;
  if (p.length < USERPOLICY_INFO_BYTES) return undefined;
  const family = familyOf(p.readUInt16LE(40));
  const dir = POLICY_DIRS[p.readUInt8(160)];
  const actionCode = p.readUInt8(161);
  if (family === undefined || dir === undefined || actionCode > 1) return undefined;
  const maxLen = family === 4 ? 32 : 128;
  const dstLen = p.readUInt8(42);
  const srcLen = p.readUInt8(43);
  if (dstLen > maxLen || srcLen > maxLen) return undefined;
  const attrs = parseAttributes(p, USERPOLICY_INFO_BYTES);
  if (attrs === undefined) return undefined;
  const ptype = attrs.get(XFRMA_POLICY_TYPE);
  if (ptype !== undefined && (ptype.length < 1 || ptype.readUInt8(0) !== XFRM_POLICY_TYPE_MAIN)) return undefined;
  const templates: XfrmTemplate[] = [];
  const tmpl = attrs.get(XFRMA_TMPL);
  if (tmpl !== undefined) {
    if (tmpl.length % USER_TMPL_BYTES !== 0) return undefined;
    for (let at = 0; at < tmpl.length; at += USER_TMPL_BYTES) {
      const t = decodeTemplate(tmpl, at);
      if (t === undefined) return undefined;
      templates.push(t);
    }
  }
  const policy: XfrmPolicy = {
    dir,
    selector: {
      family,
      src: `${formatAddress(p, 16, family)}/${srcLen}`,
      dst: `${formatAddress(p, 0, family)}/${dstLen}`,
      proto: p.readUInt8(44),
    },
    priority: p.readUInt32LE(152),
    action: actionCode === 1 ? 'block' : 'allow',
    templates,
    index: p.readUInt32LE(156),
  };
  const mark = readMark(attrs.get(XFRMA_MARK));
  if (mark === null) return undefined;
  if (mark) policy.mark = mark;
  return policy;
}
