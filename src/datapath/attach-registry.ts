// Byte layout of km_tc_attach, the pinned registry of our TC attachments (bpf/maps.h struct km_attach_key /
// km_attach_val), and the pin name of a TCX link. A record is how a restarted daemon finds exactly the
// filters and links it made, and nothing else.
import type { AttachKind, AttachMode } from './datapath.js';
import { ATTACH_KEY_SIZE, ATTACH_VALUE_SIZE } from './map-layout.js';

const KIND_CODE: Readonly<Record<AttachKind, number>> = { encrypt: 1, decrypt: 2 };
const MODE_CODE: Readonly<Record<AttachMode, number>> = { clsact: 1, tcx: 2 };
const IFNAME_OFFSET = 16;
const IFNAME_SIZE = 16;
const NETNS_OFFSET = 32;
const NETNS_SIZE = ATTACH_VALUE_SIZE - NETNS_OFFSET;

export interface AttachRecord {
  netnsIno: bigint;
  ifindex: number;
  kind: AttachKind;
  mode: AttachMode;
  progId: number;
  /** clsact filter slot; 0 for TCX. */
  handle: number;
  priority: number;
  ifname: string;
  /** Namespace path given at attach time, '' = the daemon's own. */
  netns: string;
}

export function encodeAttachKey(netnsIno: bigint, ifindex: number, kind: AttachKind): Buffer {
  const key = Buffer.alloc(ATTACH_KEY_SIZE);
  key.writeBigUInt64LE(netnsIno, 0);
  key.writeUInt32LE(ifindex, 8);
  key.writeUInt32LE(KIND_CODE[kind], 12);
  return key;
}

export function encodeAttachValue(r: AttachRecord): Buffer {
  const value = Buffer.alloc(ATTACH_VALUE_SIZE);
  value.writeUInt32LE(MODE_CODE[r.mode], 0);
  value.writeUInt32LE(r.progId, 4);
  value.writeUInt32LE(r.handle, 8);
  value.writeUInt32LE(r.priority, 12);
  if (Buffer.byteLength(r.ifname) >= IFNAME_SIZE) throw new Error(`interface name "${r.ifname}" is too long`);
  value.write(r.ifname, IFNAME_OFFSET);
  if (Buffer.byteLength(r.netns) >= NETNS_SIZE) {
    throw new Error(`netns path "${r.netns}" is longer than ${NETNS_SIZE - 1} bytes`);
  }
  value.write(r.netns, NETNS_OFFSET);
  return value;
}

function cString(b: Buffer): string {
  const end = b.indexOf(0);
  return b.subarray(0, end < 0 ? b.length : end).toString();
}

function decodeEnum<T extends string>(codes: Readonly<Record<T, number>>, code: number, what: string): T {
  const found = (Object.keys(codes) as T[]).find((k) => codes[k] === code);
  if (found === undefined) throw new Error(`km_tc_attach record has unknown ${what} ${code}`);
  return found;
}

export function decodeAttachRecord(key: Buffer, value: Buffer): AttachRecord {
  if (key.length !== ATTACH_KEY_SIZE || value.length !== ATTACH_VALUE_SIZE) {
    throw new Error(
      `km_tc_attach record has sizes ${key.length}/${value.length}, not ${ATTACH_KEY_SIZE}/${ATTACH_VALUE_SIZE}`,
    );
  }
  return {
    netnsIno: key.readBigUInt64LE(0),
    ifindex: key.readUInt32LE(8),
    kind: decodeEnum(KIND_CODE, key.readUInt32LE(12), 'kind'),
    mode: decodeEnum(MODE_CODE, value.readUInt32LE(0), 'mode'),
    progId: value.readUInt32LE(4),
    handle: value.readUInt32LE(8),
    priority: value.readUInt32LE(12),
    ifname: cString(value.subarray(IFNAME_OFFSET, IFNAME_OFFSET + IFNAME_SIZE)),
    netns: cString(value.subarray(NETNS_OFFSET)),
  };
}

/** File name (under <root>/tc/) of the pinned TCX link of this attachment. */
export function tcxLinkPinName(kind: AttachKind, netnsIno: bigint, ifindex: number): string {
  return `link_${kind}_${netnsIno}_${ifindex}`;
}

/** Whether a file under <root>/tc/ is one of our link pins. */
export function isTcxLinkPinName(name: string): boolean {
  return /^link_(encrypt|decrypt)_\d+_\d+$/.test(name);
}
