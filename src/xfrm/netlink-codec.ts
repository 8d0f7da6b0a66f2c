// XFRM netlink codec (pure): XfrmState / XfrmPolicy (src/xfrm/types.ts) <-> NETLINK_XFRM messages.
// Encoding follows the kernel UAPI (linux/xfrm.h) and produces the same bytes as iproute2's `ip xfrm` for the same
// object (golden tests); it throws a one-line Error naming the bad field. Decoding reads dump and get replies and
// never throws: an object of a shape we cannot represent (unknown family, direction or action, sub-policy type,
// truncated struct or attribute) is skipped; shapes we can represent but do not use ourselves (other protocols,
// transport mode, no AEAD, auth/crypt algorithms) decode with those fields absent.
import { formatAddress, writeAddress, writeCidr } from './netlink-address.js';
import type { Family } from '../model/ip-address.js';
import { isValidSpi, SPI_MAX, SPI_MIN } from '../model/ipsec-key.js';
import type { PolicyDir, XfrmMark, XfrmPolicy, XfrmSelector, XfrmState, XfrmTemplate } from './types.js';
import {
  align4,
  NLA_HDRLEN,
  NLM_F_ACK,
  NLM_F_DUMP,
  NLM_F_REQUEST,
  NLMSG_HDRLEN,
  NetlinkWriter,
  netlinkMessage,
  parseAttributes,
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

// Field checks throw with the field's name only; the encoders prefix the object's label when something throws,
// so the hot path builds no strings.
function checkUint(value: number, max: number, field: string): number {
  if (!Number.isInteger(value) || value < 0 || value > max) {
    throw new Error(`${field} ${String(value)} is not an integer in 0..${max}`);
  }
  return value;
}

const u32 = (value: number, field: string): number => checkUint(value, 0xffffffff, field);
const u8 = (value: number, field: string): number => checkUint(value, 0xff, field);

function modeCode(mode: XfrmState['mode'], field: string): number {
  if (mode === 'transport') return 0;
  if (mode === 'tunnel') return 1;
  throw new Error(`${field}mode "${mode}" cannot be installed (tunnel or transport)`);
}

function modeOf(code: number): XfrmState['mode'] {
  if (code === 0) return 'transport';
  if (code === 1) return 'tunnel';
  return 'other';
}

function putAddress(w: NetlinkWriter, at: number, text: string, family: Family, field: string): void {
  try {
    writeAddress(text, w.bytes, at, family);
  } catch (e) {
    throw new Error(`${field}: ${(e as Error).message}`, { cause: e });
  }
}

function putCidr(w: NetlinkWriter, at: number, text: string, family: Family, field: string): number {
  try {
    return writeCidr(text, w.bytes, at, family).prefixLen;
  } catch (e) {
    throw new Error(`${field}: ${(e as Error).message}`, { cause: e });
  }
}

function checkFamily(family: number, field: string): Family {
  if (family !== 4 && family !== 6) throw new Error(`${field}family ${String(family)} is not 4 or 6`);
  return family;
}

/** Undoes a half-written message and rethrows its field error with the object's label in front. */
function fail(w: NetlinkWriter, start: number, label: string, e: unknown): never {
  w.rollback(start);
  throw new Error(`${label}: ${(e as Error).message}`, { cause: e });
}

/** Lifetime limits "infinite" (bytes and packets, soft and hard) as iproute2 sets them; times stay 0. */
function putInfiniteLifetime(w: NetlinkWriter, at: number): void {
  w.fill(at, at + 32, 0xff);
}

function putMarkAttr(w: NetlinkWriter, at: number, type: number, mark: XfrmMark, field: string): number {
  const data = w.attr(at, type, NLA_HDRLEN + 8);
  w.u32(data, u32(mark.value, `${field} value`));
  w.u32(data + 4, u32(mark.mask, `${field} mask`));
  return at + 12;
}

function putU32Attr(w: NetlinkWriter, at: number, type: number, value: number): number {
  w.u32(w.attr(at, type, NLA_HDRLEN + 4), value);
  return at + 8;
}

function putSelector(w: NetlinkWriter, at: number, sel: XfrmSelector): void {
  const family = checkFamily(sel.family, 'selector ');
  const dstLen = putCidr(w, at, sel.dst, family, 'selector dst');
  const srcLen = putCidr(w, at + 16, sel.src, family, 'selector src');
  w.u16(at + 40, familyCode(family));
  w.u8(at + 42, dstLen);
  w.u8(at + 43, srcLen);
  w.u8(at + 44, u8(sel.proto, 'selector proto'));
}

const stateLabel = (s: { dst: string; spi: number }): string => `state dst ${s.dst} spi ${String(s.spi)}`;
const policyLabel = (p: Pick<XfrmPolicy, 'dir' | 'selector'>): string =>
  `policy ${p.dir} ${p.selector.src} -> ${p.selector.dst}`;

// UTF-8 bytes of algorithm names: a batch repeats the same one or two names thousands of times.
const algorithmNames = new Map<string, Uint8Array>();

function algorithmNameBytes(name: string): Uint8Array {
  let bytes = algorithmNames.get(name);
  if (bytes === undefined) {
    bytes = new Uint8Array(Buffer.from(name, 'utf8'));
    if (algorithmNames.size >= 64) algorithmNames.clear();
    algorithmNames.set(name, bytes);
  }
  return bytes;
}

/** Appends XFRM_MSG_NEWSA (add) or XFRM_MSG_UPDSA (update) carrying a full SA. */
export function writeState(w: NetlinkWriter, kind: 'add' | 'update', state: XfrmState, seq: number): void {
  const start = w.length;
  try {
    const family = checkFamily(state.family, '');
    const window = checkUint(state.replayWindow, MAX_REPLAY_WINDOW, 'replay window');
    const useEsnAttr = state.esn || window > LEGACY_REPLAY_WINDOW_MAX;
    const aead = state.aead;
    let aeadLen = 0;
    let aeadName: Uint8Array | undefined;
    if (aead) {
      aeadName = algorithmNameBytes(aead.name);
      if (aeadName.length === 0 || aeadName.length >= ALG_NAME_BYTES) {
        throw new Error(`AEAD name "${aead.name}" must be 1..${ALG_NAME_BYTES - 1} bytes`);
      }
      if (aead.key.length === 0 || aead.key.length > 512) {
        throw new Error(`AEAD key of ${aead.key.length} bytes (1..512)`);
      }
      aeadLen = NLA_HDRLEN + ALGO_AEAD_HDR_BYTES + aead.key.length;
    }
    const total =
      NLMSG_HDRLEN +
      USERSA_INFO_BYTES +
      align4(aeadLen) +
      (useEsnAttr ? NLA_HDRLEN + REPLAY_ESN_HDR_BYTES : 0) +
      (state.mark ? 12 : 0) +
      (state.outputMark ? 16 : 0);
    const at = w.reserve(total);
    w.header(at, total, kind === 'add' ? XFRM_MSG_NEWSA : XFRM_MSG_UPDSA, NLM_F_REQUEST | NLM_F_ACK, seq);
    const info = at + NLMSG_HDRLEN;
    // Selector stays all-zero (family 0): the kernel fills in the SA's family, as with `ip xfrm state add`.
    putAddress(w, info + 56, state.dst, family, 'dst');
    const spi = u32(state.spi, 'spi');
    if (!isValidSpi(spi)) throw new Error(`spi ${spi} is reserved (an SA's SPI is ${SPI_MIN}..${SPI_MAX})`);
    w.u32be(info + 72, spi);
    w.u8(info + 76, u8(state.proto, 'proto'));
    putAddress(w, info + 80, state.src, family, 'src');
    putInfiniteLifetime(w, info + 96);
    w.u32(info + 208, u32(state.reqid, 'reqid'));
    w.u16(info + 212, familyCode(family));
    w.u8(info + 214, modeCode(state.mode, ''));
    w.u8(info + 215, useEsnAttr ? 0 : window);
    w.u8(info + 216, state.esn ? XFRM_STATE_ESN : 0);
    let off = info + USERSA_INFO_BYTES;
    if (aead && aeadName) {
      const data = w.attr(off, XFRMA_ALG_AEAD, aeadLen);
      w.copy(data, aeadName);
      w.u32(data + 64, aead.key.length * 8);
      w.u32(data + 68, u32(aead.icvBits, 'AEAD ICV bits'));
      w.copy(data + ALGO_AEAD_HDR_BYTES, aead.key);
      off += align4(aeadLen);
    }
    if (useEsnAttr) {
      // Header only (bitmap length in words, window in packets): the kernel allocates the bitmap itself.
      const data = w.attr(off, XFRMA_REPLAY_ESN_VAL, NLA_HDRLEN + REPLAY_ESN_HDR_BYTES);
      w.u32(data, Math.ceil(window / 32));
      w.u32(data + 20, window);
      off = data + REPLAY_ESN_HDR_BYTES;
    }
    if (state.mark) off = putMarkAttr(w, off, XFRMA_MARK, state.mark, 'mark');
    if (state.outputMark) {
      off = putU32Attr(w, off, XFRMA_SET_MARK, u32(state.outputMark.value, 'output-mark value'));
      putU32Attr(w, off, XFRMA_SET_MARK_MASK, u32(state.outputMark.mask, 'output-mark mask'));
    }
  } catch (e) {
    fail(w, start, stateLabel(state), e);
  }
}

export type StateId = Pick<XfrmState, 'family' | 'dst' | 'spi' | 'proto' | 'mark'>;
export type PolicyId = Pick<XfrmPolicy, 'dir' | 'selector' | 'mark'>;

function writeStateId(w: NetlinkWriter, type: number, id: StateId, seq: number): void {
  const start = w.length;
  try {
    const family = checkFamily(id.family, '');
    const total = NLMSG_HDRLEN + USERSA_ID_BYTES + (id.mark ? 12 : 0);
    const at = w.reserve(total);
    w.header(at, total, type, NLM_F_REQUEST | NLM_F_ACK, seq);
    const body = at + NLMSG_HDRLEN;
    putAddress(w, body, id.dst, family, 'dst');
    w.u32be(body + 16, u32(id.spi, 'spi'));
    w.u16(body + 20, familyCode(family));
    w.u8(body + 22, u8(id.proto, 'proto'));
    // The kernel keys SAs by (dst, spi, proto, mark): an SA with a mark is only found with that mark.
    if (id.mark) putMarkAttr(w, body + USERSA_ID_BYTES, XFRMA_MARK, id.mark, 'mark');
  } catch (e) {
    fail(w, start, stateLabel(id), e);
  }
}

/** Appends XFRM_MSG_DELSA for the SA with this (dst, spi, proto, mark). */
export function writeDeleteState(w: NetlinkWriter, id: StateId, seq: number): void {
  writeStateId(w, XFRM_MSG_DELSA, id, seq);
}

/** Appends XFRM_MSG_GETSA for one SA; the kernel answers with an XFRM_MSG_NEWSA, then the ack. */
export function writeGetState(w: NetlinkWriter, id: StateId, seq: number): void {
  writeStateId(w, XFRM_MSG_GETSA, id, seq);
}

function putTemplate(w: NetlinkWriter, at: number, t: XfrmTemplate, index: number): void {
  try {
    const family = checkFamily(t.family, '');
    putAddress(w, at, t.dst, family, 'dst');
    w.u32be(at + 16, u32(t.spi, 'spi'));
    w.u8(at + 20, u8(t.proto, 'proto'));
    w.u16(at + 24, familyCode(family));
    putAddress(w, at + 28, t.src, family, 'src');
    w.u32(at + 44, u32(t.reqid, 'reqid'));
    w.u8(at + 48, modeCode(t.mode, ''));
    // Any algorithm allowed (aalgos/ealgos/calgos all ones), as iproute2 does; the inbound check needs it.
    w.fill(at + 52, at + 64, 0xff);
  } catch (e) {
    throw new Error(`template ${index} ${(e as Error).message}`, { cause: e });
  }
}

function dirCode(dir: PolicyDir): number {
  const code = POLICY_DIRS.indexOf(dir);
  if (code < 0) throw new Error(`direction "${dir}" is not in, out or fwd`);
  return code;
}

/** Appends XFRM_MSG_NEWPOLICY (add) or XFRM_MSG_UPDPOLICY (update: replace the one with the same dir/selector/mark). */
export function writePolicy(w: NetlinkWriter, kind: 'add' | 'update', policy: XfrmPolicy, seq: number): void {
  const start = w.length;
  try {
    const tmplLen = policy.templates.length > 0 ? NLA_HDRLEN + policy.templates.length * USER_TMPL_BYTES : 0;
    const total = NLMSG_HDRLEN + USERPOLICY_INFO_BYTES + tmplLen + (policy.mark ? 12 : 0);
    const at = w.reserve(total);
    w.header(at, total, kind === 'add' ? XFRM_MSG_NEWPOLICY : XFRM_MSG_UPDPOLICY, NLM_F_REQUEST | NLM_F_ACK, seq);
    const info = at + NLMSG_HDRLEN;
    putSelector(w, info, policy.selector);
    putInfiniteLifetime(w, info + 56);
    w.u32(info + 152, u32(policy.priority, 'priority'));
    w.u8(info + 160, dirCode(policy.dir));
    const action = (ACTION_CODES as Partial<Record<string, number>>)[policy.action];
    if (action === undefined) throw new Error(`action "${policy.action}" is not allow or block`);
    w.u8(info + 161, action);
    let off = info + USERPOLICY_INFO_BYTES;
    if (tmplLen > 0) {
      off = w.attr(off, XFRMA_TMPL, tmplLen);
      for (let i = 0; i < policy.templates.length; i++) {
        putTemplate(w, off, policy.templates[i] as XfrmTemplate, i);
        off += USER_TMPL_BYTES;
      }
    }
    if (policy.mark) putMarkAttr(w, off, XFRMA_MARK, policy.mark, 'mark');
  } catch (e) {
    fail(w, start, policyLabel(policy), e);
  }
}

/** Appends XFRM_MSG_DELPOLICY for the main-type policy with this direction, selector and mark. */
export function writeDeletePolicy(w: NetlinkWriter, id: PolicyId, seq: number): void {
  const start = w.length;
  try {
    const total = NLMSG_HDRLEN + USERPOLICY_ID_BYTES + (id.mark ? 12 : 0);
    const at = w.reserve(total);
    w.header(at, total, XFRM_MSG_DELPOLICY, NLM_F_REQUEST | NLM_F_ACK, seq);
    putSelector(w, at + NLMSG_HDRLEN, id.selector);
    w.u8(at + NLMSG_HDRLEN + 60, dirCode(id.dir));
    if (id.mark) putMarkAttr(w, at + NLMSG_HDRLEN + USERPOLICY_ID_BYTES, XFRMA_MARK, id.mark, 'mark');
  } catch (e) {
    fail(w, start, policyLabel(id), e);
  }
}

function single(write: (w: NetlinkWriter) => void): Buffer {
  const w = new NetlinkWriter(512);
  write(w);
  return Buffer.from(w.finish());
}

/** One XFRM_MSG_NEWSA / XFRM_MSG_UPDSA message. */
export const encodeState = (kind: 'add' | 'update', state: XfrmState, seq: number): Buffer =>
  single((w) => writeState(w, kind, state, seq));
/** One XFRM_MSG_DELSA message. */
export const encodeDeleteState = (id: StateId, seq: number): Buffer => single((w) => writeDeleteState(w, id, seq));
/** One XFRM_MSG_GETSA message (with NLM_F_ACK). */
export const encodeGetState = (id: StateId, seq: number): Buffer => single((w) => writeGetState(w, id, seq));
/** One XFRM_MSG_NEWPOLICY / XFRM_MSG_UPDPOLICY message. */
export const encodePolicy = (kind: 'add' | 'update', policy: XfrmPolicy, seq: number): Buffer =>
  single((w) => writePolicy(w, kind, policy, seq));
/** One XFRM_MSG_DELPOLICY message. */
export const encodeDeletePolicy = (id: PolicyId, seq: number): Buffer => single((w) => writeDeletePolicy(w, id, seq));

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
