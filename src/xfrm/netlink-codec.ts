// XFRM netlink codec (pure): XfrmState / XfrmPolicy (src/xfrm/types.ts) <-> NETLINK_XFRM messages.
// Encoding follows the kernel UAPI (linux/xfrm.h) and produces the same bytes as iproute2's `ip xfrm` for the same
// object (golden tests); it throws a one-line Error naming the bad field. Decoding reads dump and get replies and
// never throws: an object of a shape we cannot represent (unknown family, direction or action, sub-policy type,
// truncated struct or attribute) is skipped; shapes we can represent but do not use ourselves (other protocols,
// transport mode, no AEAD, auth/crypt algorithms) decode with those fields absent.
import { formatAddress, formatCidr, writeAddress, writeCidr } from './netlink-address.js';
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
import {
  XFRM_ALG_NAME_BYTES,
  XFRM_ALGO_AEAD,
  XFRM_ID,
  XFRM_LIFETIME_CFG,
  XFRM_MARK,
  XFRM_REPLAY_STATE_ESN,
  XFRM_SELECTOR,
  XFRM_USER_TMPL,
  XFRM_USERPOLICY_ID,
  XFRM_USERPOLICY_INFO,
  XFRM_USERPOLICY_TYPE,
  XFRM_USERSA_ID,
  XFRM_USERSA_INFO,
} from './netlink-layout.js';

export const XFRM_MSG_NEWSA = 0x10;
export const XFRM_MSG_DELSA = 0x11;
export const XFRM_MSG_GETSA = 0x12;
export const XFRM_MSG_NEWPOLICY = 0x13;
export const XFRM_MSG_DELPOLICY = 0x14;
export const XFRM_MSG_GETPOLICY = 0x15;
export const XFRM_MSG_UPDPOLICY = 0x19;
const XFRM_MSG_UPDSA = 0x1a;

const XFRMA_TMPL = 5;
const XFRMA_POLICY_TYPE = 16;
const XFRMA_ALG_AEAD = 18;
const XFRMA_MARK = 21;
const XFRMA_REPLAY_ESN_VAL = 23;
const XFRMA_SET_MARK = 29;
const XFRMA_SET_MARK_MASK = 30;

const XFRM_STATE_ESN = 128;
const XFRM_POLICY_TYPE_MAIN = 0;
const AF_INET = 2;
const AF_INET6 = 10;
/** The kernel refuses ESN bitmaps longer than 128 32-bit words (XFRMA_REPLAY_ESN_MAX / 32). */
const MAX_REPLAY_WINDOW = 128 * 32;
/** Without ESN, iproute2 keeps windows up to the legacy 32-bit bitmap in xfrm_usersa_info; so do we. */
const LEGACY_REPLAY_WINDOW_MAX = 32;

/** Length of an attribute carrying one struct xfrm_mark / one __u32. */
const MARK_ATTR_BYTES = NLA_HDRLEN + XFRM_MARK.SIZE;
const U32_ATTR_BYTES = NLA_HDRLEN + 4;
/** Any algorithm allowed in a template (aalgos, ealgos, calgos all ones), as iproute2 sets them. */
const TMPL_ALGOS_END = XFRM_USER_TMPL.calgos + 4;

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
function putInfiniteLifetime(w: NetlinkWriter, lft: number): void {
  w.fill(lft + XFRM_LIFETIME_CFG.soft_byte_limit, lft + XFRM_LIFETIME_CFG.soft_add_expires_seconds, 0xff);
}

function putMarkAttr(w: NetlinkWriter, at: number, type: number, mark: XfrmMark, field: string): number {
  const data = w.attr(at, type, MARK_ATTR_BYTES);
  w.u32(data + XFRM_MARK.v, u32(mark.value, `${field} value`));
  w.u32(data + XFRM_MARK.m, u32(mark.mask, `${field} mask`));
  return at + MARK_ATTR_BYTES;
}

function putU32Attr(w: NetlinkWriter, at: number, type: number, value: number): number {
  w.u32(w.attr(at, type, U32_ATTR_BYTES), value);
  return at + U32_ATTR_BYTES;
}

function putSelector(w: NetlinkWriter, sel: number, selector: XfrmSelector): void {
  const family = checkFamily(selector.family, 'selector ');
  const dstLen = putCidr(w, sel + XFRM_SELECTOR.daddr, selector.dst, family, 'selector dst');
  const srcLen = putCidr(w, sel + XFRM_SELECTOR.saddr, selector.src, family, 'selector src');
  w.u16(sel + XFRM_SELECTOR.family, familyCode(family));
  w.u8(sel + XFRM_SELECTOR.prefixlen_d, dstLen);
  w.u8(sel + XFRM_SELECTOR.prefixlen_s, srcLen);
  w.u8(sel + XFRM_SELECTOR.proto, u8(selector.proto, 'selector proto'));
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
      if (aeadName.length === 0 || aeadName.length >= XFRM_ALG_NAME_BYTES) {
        throw new Error(`AEAD name "${aead.name}" must be 1..${XFRM_ALG_NAME_BYTES - 1} bytes`);
      }
      if (aead.key.length === 0 || aead.key.length > 512) {
        throw new Error(`AEAD key of ${aead.key.length} bytes (1..512)`);
      }
      aeadLen = NLA_HDRLEN + XFRM_ALGO_AEAD.SIZE + aead.key.length;
    }
    const total =
      NLMSG_HDRLEN +
      XFRM_USERSA_INFO.SIZE +
      align4(aeadLen) +
      (useEsnAttr ? NLA_HDRLEN + XFRM_REPLAY_STATE_ESN.SIZE : 0) +
      (state.mark ? MARK_ATTR_BYTES : 0) +
      (state.outputMark ? 2 * U32_ATTR_BYTES : 0);
    const at = w.reserve(total);
    w.header(at, total, kind === 'add' ? XFRM_MSG_NEWSA : XFRM_MSG_UPDSA, NLM_F_REQUEST | NLM_F_ACK, seq);
    const info = at + NLMSG_HDRLEN;
    const id = info + XFRM_USERSA_INFO.id;
    // Selector stays all-zero (family 0): the kernel fills in the SA's family, as with `ip xfrm state add`.
    putAddress(w, id + XFRM_ID.daddr, state.dst, family, 'dst');
    const spi = u32(state.spi, 'spi');
    if (!isValidSpi(spi)) throw new Error(`spi ${spi} is reserved (an SA's SPI is ${SPI_MIN}..${SPI_MAX})`);
    w.u32be(id + XFRM_ID.spi, spi);
    w.u8(id + XFRM_ID.proto, u8(state.proto, 'proto'));
    putAddress(w, info + XFRM_USERSA_INFO.saddr, state.src, family, 'src');
    putInfiniteLifetime(w, info + XFRM_USERSA_INFO.lft);
    w.u32(info + XFRM_USERSA_INFO.reqid, u32(state.reqid, 'reqid'));
    w.u16(info + XFRM_USERSA_INFO.family, familyCode(family));
    w.u8(info + XFRM_USERSA_INFO.mode, modeCode(state.mode, ''));
    w.u8(info + XFRM_USERSA_INFO.replay_window, useEsnAttr ? 0 : window);
    w.u8(info + XFRM_USERSA_INFO.flags, state.esn ? XFRM_STATE_ESN : 0);
    let off = info + XFRM_USERSA_INFO.SIZE;
    if (aead && aeadName) {
      const data = w.attr(off, XFRMA_ALG_AEAD, aeadLen);
      w.copy(data + XFRM_ALGO_AEAD.alg_name, aeadName);
      w.u32(data + XFRM_ALGO_AEAD.alg_key_len, aead.key.length * 8);
      w.u32(data + XFRM_ALGO_AEAD.alg_icv_len, u32(aead.icvBits, 'AEAD ICV bits'));
      w.copy(data + XFRM_ALGO_AEAD.alg_key, aead.key);
      off += align4(aeadLen);
    }
    if (useEsnAttr) {
      // Header only (bitmap length in words, window in packets): the kernel allocates the bitmap itself.
      const data = w.attr(off, XFRMA_REPLAY_ESN_VAL, NLA_HDRLEN + XFRM_REPLAY_STATE_ESN.SIZE);
      w.u32(data + XFRM_REPLAY_STATE_ESN.bmp_len, Math.ceil(window / 32));
      w.u32(data + XFRM_REPLAY_STATE_ESN.replay_window, window);
      off = data + XFRM_REPLAY_STATE_ESN.SIZE;
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
    const total = NLMSG_HDRLEN + XFRM_USERSA_ID.SIZE + (id.mark ? MARK_ATTR_BYTES : 0);
    const at = w.reserve(total);
    w.header(at, total, type, NLM_F_REQUEST | NLM_F_ACK, seq);
    const body = at + NLMSG_HDRLEN;
    putAddress(w, body + XFRM_USERSA_ID.daddr, id.dst, family, 'dst');
    w.u32be(body + XFRM_USERSA_ID.spi, u32(id.spi, 'spi'));
    w.u16(body + XFRM_USERSA_ID.family, familyCode(family));
    w.u8(body + XFRM_USERSA_ID.proto, u8(id.proto, 'proto'));
    // The kernel keys SAs by (dst, spi, proto, mark): an SA with a mark is only found with that mark.
    if (id.mark) putMarkAttr(w, body + XFRM_USERSA_ID.SIZE, XFRMA_MARK, id.mark, 'mark');
  } catch (e) {
    fail(w, start, stateLabel(id), e);
  }
}

/** Appends XFRM_MSG_DELSA for the SA with this (dst, spi, proto, mark). */
export function writeDeleteState(w: NetlinkWriter, id: StateId, seq: number): void {
  writeStateId(w, XFRM_MSG_DELSA, id, seq);
}

/** Appends XFRM_MSG_GETSA for one SA; the kernel answers with an XFRM_MSG_NEWSA, then the ack. */
function writeGetState(w: NetlinkWriter, id: StateId, seq: number): void {
  writeStateId(w, XFRM_MSG_GETSA, id, seq);
}

function putTemplate(w: NetlinkWriter, at: number, t: XfrmTemplate, index: number): void {
  try {
    const family = checkFamily(t.family, '');
    const id = at + XFRM_USER_TMPL.id;
    putAddress(w, id + XFRM_ID.daddr, t.dst, family, 'dst');
    w.u32be(id + XFRM_ID.spi, u32(t.spi, 'spi'));
    w.u8(id + XFRM_ID.proto, u8(t.proto, 'proto'));
    w.u16(at + XFRM_USER_TMPL.family, familyCode(family));
    putAddress(w, at + XFRM_USER_TMPL.saddr, t.src, family, 'src');
    w.u32(at + XFRM_USER_TMPL.reqid, u32(t.reqid, 'reqid'));
    w.u8(at + XFRM_USER_TMPL.mode, modeCode(t.mode, ''));
    // Any algorithm allowed (aalgos/ealgos/calgos all ones), as iproute2 does; the inbound check needs it.
    w.fill(at + XFRM_USER_TMPL.aalgos, at + TMPL_ALGOS_END, 0xff);
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
    const tmplLen = policy.templates.length > 0 ? NLA_HDRLEN + policy.templates.length * XFRM_USER_TMPL.SIZE : 0;
    const total = NLMSG_HDRLEN + XFRM_USERPOLICY_INFO.SIZE + tmplLen + (policy.mark ? MARK_ATTR_BYTES : 0);
    const at = w.reserve(total);
    w.header(at, total, kind === 'add' ? XFRM_MSG_NEWPOLICY : XFRM_MSG_UPDPOLICY, NLM_F_REQUEST | NLM_F_ACK, seq);
    const info = at + NLMSG_HDRLEN;
    putSelector(w, info + XFRM_USERPOLICY_INFO.sel, policy.selector);
    putInfiniteLifetime(w, info + XFRM_USERPOLICY_INFO.lft);
    w.u32(info + XFRM_USERPOLICY_INFO.priority, u32(policy.priority, 'priority'));
    w.u8(info + XFRM_USERPOLICY_INFO.dir, dirCode(policy.dir));
    const action = (ACTION_CODES as Partial<Record<string, number>>)[policy.action];
    if (action === undefined) throw new Error(`action "${policy.action}" is not allow or block`);
    w.u8(info + XFRM_USERPOLICY_INFO.action, action);
    let off = info + XFRM_USERPOLICY_INFO.SIZE;
    if (tmplLen > 0) {
      off = w.attr(off, XFRMA_TMPL, tmplLen);
      for (let i = 0; i < policy.templates.length; i++) {
        putTemplate(w, off, policy.templates[i] as XfrmTemplate, i);
        off += XFRM_USER_TMPL.SIZE;
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
    const total = NLMSG_HDRLEN + XFRM_USERPOLICY_ID.SIZE + (id.mark ? MARK_ATTR_BYTES : 0);
    const at = w.reserve(total);
    w.header(at, total, XFRM_MSG_DELPOLICY, NLM_F_REQUEST | NLM_F_ACK, seq);
    const body = at + NLMSG_HDRLEN;
    putSelector(w, body + XFRM_USERPOLICY_ID.sel, id.selector);
    w.u8(body + XFRM_USERPOLICY_ID.dir, dirCode(id.dir));
    if (id.mark) putMarkAttr(w, body + XFRM_USERPOLICY_ID.SIZE, XFRMA_MARK, id.mark, 'mark');
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
  if (data.length < XFRM_MARK.SIZE) return null;
  return { value: data.readUInt32LE(XFRM_MARK.v), mask: data.readUInt32LE(XFRM_MARK.m) };
}

/** An XFRM_MSG_NEWSA payload as an XfrmState, or undefined when it is not representable or truncated. */
export function decodeState(msg: NetlinkMessage): XfrmState | undefined {
  if (msg.type !== XFRM_MSG_NEWSA) return undefined;
  const p = msg.payload;
  if (p.length < XFRM_USERSA_INFO.SIZE) return undefined;
  const family = familyOf(p.readUInt16LE(XFRM_USERSA_INFO.family));
  if (family === undefined) return undefined;
  const attrs = parseAttributes(p, XFRM_USERSA_INFO.SIZE);
  if (attrs === undefined) return undefined;
  const flags = p.readUInt8(XFRM_USERSA_INFO.flags);
  const id = XFRM_USERSA_INFO.id;
  const state: XfrmState = {
    family,
    src: formatAddress(p, XFRM_USERSA_INFO.saddr, family),
    dst: formatAddress(p, id + XFRM_ID.daddr, family),
    spi: p.readUInt32BE(id + XFRM_ID.spi),
    proto: p.readUInt8(id + XFRM_ID.proto),
    mode: modeOf(p.readUInt8(XFRM_USERSA_INFO.mode)),
    reqid: p.readUInt32LE(XFRM_USERSA_INFO.reqid),
    esn: (flags & XFRM_STATE_ESN) !== 0,
    replayWindow: p.readUInt8(XFRM_USERSA_INFO.replay_window),
  };
  const aead = attrs.get(XFRMA_ALG_AEAD);
  if (aead !== undefined) {
    if (aead.length < XFRM_ALGO_AEAD.SIZE) return undefined;
    const keyBytes = Math.ceil(aead.readUInt32LE(XFRM_ALGO_AEAD.alg_key_len) / 8);
    const key = XFRM_ALGO_AEAD.alg_key;
    if (aead.length < key + keyBytes) return undefined;
    const name = aead.subarray(XFRM_ALGO_AEAD.alg_name, XFRM_ALGO_AEAD.alg_name + XFRM_ALG_NAME_BYTES);
    const nameEnd = name.indexOf(0);
    state.aead = {
      name: name.subarray(0, nameEnd < 0 ? name.length : nameEnd).toString('utf8'),
      key: Buffer.from(aead.subarray(key, key + keyBytes)),
      icvBits: aead.readUInt32LE(XFRM_ALGO_AEAD.alg_icv_len),
    };
  }
  const esn = attrs.get(XFRMA_REPLAY_ESN_VAL);
  if (esn !== undefined) {
    if (esn.length < XFRM_REPLAY_STATE_ESN.SIZE) return undefined;
    state.replayWindow = esn.readUInt32LE(XFRM_REPLAY_STATE_ESN.replay_window);
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
  const family = familyOf(p.readUInt16LE(at + XFRM_USER_TMPL.family));
  if (family === undefined) return undefined;
  const id = at + XFRM_USER_TMPL.id;
  return {
    family,
    src: formatAddress(p, at + XFRM_USER_TMPL.saddr, family),
    dst: formatAddress(p, id + XFRM_ID.daddr, family),
    proto: p.readUInt8(id + XFRM_ID.proto),
    mode: modeOf(p.readUInt8(at + XFRM_USER_TMPL.mode)),
    reqid: p.readUInt32LE(at + XFRM_USER_TMPL.reqid),
    spi: p.readUInt32BE(id + XFRM_ID.spi),
  };
}

/** An XFRM_MSG_NEWPOLICY payload as an XfrmPolicy, or undefined when it is not representable or truncated. */
export function decodePolicy(msg: NetlinkMessage): XfrmPolicy | undefined {
  if (msg.type !== XFRM_MSG_NEWPOLICY) return undefined;
  const p = msg.payload;
  if (p.length < XFRM_USERPOLICY_INFO.SIZE) return undefined;
  const sel = XFRM_USERPOLICY_INFO.sel;
  const family = familyOf(p.readUInt16LE(sel + XFRM_SELECTOR.family));
  const dir = POLICY_DIRS[p.readUInt8(XFRM_USERPOLICY_INFO.dir)];
  const actionCode = p.readUInt8(XFRM_USERPOLICY_INFO.action);
  if (family === undefined || dir === undefined || actionCode > 1) return undefined;
  const maxLen = family === 4 ? 32 : 128;
  const dstLen = p.readUInt8(sel + XFRM_SELECTOR.prefixlen_d);
  const srcLen = p.readUInt8(sel + XFRM_SELECTOR.prefixlen_s);
  if (dstLen > maxLen || srcLen > maxLen) return undefined;
  const attrs = parseAttributes(p, XFRM_USERPOLICY_INFO.SIZE);
  if (attrs === undefined) return undefined;
  const ptype = attrs.get(XFRMA_POLICY_TYPE);
  if (
    ptype !== undefined &&
    (ptype.length <= XFRM_USERPOLICY_TYPE.type || ptype.readUInt8(XFRM_USERPOLICY_TYPE.type) !== XFRM_POLICY_TYPE_MAIN)
  ) {
    return undefined;
  }
  const templates: XfrmTemplate[] = [];
  const tmpl = attrs.get(XFRMA_TMPL);
  if (tmpl !== undefined) {
    if (tmpl.length % XFRM_USER_TMPL.SIZE !== 0) return undefined;
    for (let at = 0; at < tmpl.length; at += XFRM_USER_TMPL.SIZE) {
      const t = decodeTemplate(tmpl, at);
      if (t === undefined) return undefined;
      templates.push(t);
    }
  }
  const policy: XfrmPolicy = {
    dir,
    selector: {
      family,
      src: formatCidr(p, sel + XFRM_SELECTOR.saddr, family, srcLen),
      dst: formatCidr(p, sel + XFRM_SELECTOR.daddr, family, dstLen),
      proto: p.readUInt8(sel + XFRM_SELECTOR.proto),
    },
    priority: p.readUInt32LE(XFRM_USERPOLICY_INFO.priority),
    action: actionCode === 1 ? 'block' : 'allow',
    templates,
    index: p.readUInt32LE(XFRM_USERPOLICY_INFO.index),
  };
  const mark = readMark(attrs.get(XFRMA_MARK));
  if (mark === null) return undefined;
  if (mark) policy.mark = mark;
  return policy;
}
