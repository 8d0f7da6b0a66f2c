// Typed view of the addon's NETLINK_XFRM transport (native/xfrm.cc): one call sends a buffer of netlink messages
// inside a network namespace and resolves with every reply that belongs to them.
import { loadAddon } from '../native/addon.js';

/**
 * Sends `request` (netlink messages, unique seqs, NLM_F_ACK on every non-dump) and returns the raw replies. With
 * `errnos` (one entry per message), the addon sets each non-dump message's entry to 0 or its positive errno and
 * leaves the plain success acks out of the reply; a transport may ignore `errnos` and return every ack instead.
 */
export type XfrmTransact = (netnsPath: string, request: Buffer, errnos?: Int32Array) => Promise<Buffer>;

let cached: XfrmTransact | undefined;

export function addonXfrmTransact(): XfrmTransact {
  if (cached === undefined) {
    const addon = loadAddon() as { xfrmTransact?: unknown };
    if (typeof addon.xfrmTransact !== 'function') {
      throw new Error('kmesh_native addon has no xfrmTransact: rebuild it with `npm run build:native`');
    }
    cached = addon.xfrmTransact as XfrmTransact;
  }
  return cached;
}

/** The addon's paged dumps (native/xfrm_dump.cc): one page of a dump's replies per `next`, the socket kept open. */
export interface XfrmDumpPages {
  /** Opens a socket in the namespace and sends `request` (one message with NLM_F_DUMP); returns its fd. */
  open(netnsPath: string, request: Buffer): number;
  /**
   * The next replies to `seq`: at least `minBytes`, unless the dump ended first (its NLMSG_DONE or NLMSG_ERROR is then
   * the page's last message). One call at a time per fd.
   */
  next(fd: number, seq: number, minBytes: number): Promise<Buffer>;
  /** Closes the socket (only once no `next` is pending on it). */
  close(fd: number): void;
}

let cachedDump: XfrmDumpPages | undefined;

export function addonXfrmDump(): XfrmDumpPages {
  if (cachedDump === undefined) {
    const addon = loadAddon() as { xfrmDump?: Partial<XfrmDumpPages> };
    if (typeof addon.xfrmDump?.next !== 'function') {
      throw new Error('kmesh_native addon has no xfrmDump: rebuild it with `npm run build:native`');
    }
    cachedDump = addon.xfrmDump as XfrmDumpPages;
  }
  return cachedDump;
}

/**
 * The addon's native fast path of the encoder (native/xfrm_encode.cc): encodes ops[start..end) in order into
 * out at cursor[0] (op i numbered seqs[i - start]), advances cursor[0], and returns how many it encoded; it stops
 * at the first op it leaves to the TypeScript codec and when out has less than 1 KiB left.
 */
export type XfrmEncode = (
  ops: readonly unknown[],
  start: number,
  end: number,
  seqs: Uint32Array,
  out: Uint8Array,
  cursor: Uint32Array,
) => number;

/** Room the native encoder needs in the output before each message. */
export const NATIVE_ENCODE_ROOM = 1024;

let cachedEncode: XfrmEncode | null | undefined;

/** The native encoder, or null when the addon cannot be loaded or predates it (the TypeScript codec then does all). */
export function addonXfrmEncode(): XfrmEncode | null {
  if (cachedEncode === undefined) {
    try {
      const addon = loadAddon() as { xfrmEncode?: unknown };
      cachedEncode = typeof addon.xfrmEncode === 'function' ? (addon.xfrmEncode as XfrmEncode) : null;
    } catch {
      cachedEncode = null;
    }
  }
  return cachedEncode;
}

/** offsetof/sizeof of the kernel structs as the addon was compiled (names as in netlink-layout.ts). */
export type XfrmLayout = Record<string, Record<string, number>>;

/** The addon's struct layout table, or null when the addon cannot be loaded or predates it. */
export function addonXfrmLayout(): XfrmLayout | null {
  try {
    const addon = loadAddon() as { xfrmLayout?: unknown };
    return typeof addon.xfrmLayout === 'object' && addon.xfrmLayout !== null ? (addon.xfrmLayout as XfrmLayout) : null;
  } catch {
    return null;
  }
}
