// Typed view of the addon's NETLINK_XFRM transport (native/xfrm.cc): one call sends a buffer of netlink messages
// inside a network namespace and resolves with every reply that belongs to them.
import { loadAddon } from '../native/addon.js';

/** Sends `request` (netlink messages, unique seqs, NLM_F_ACK on every non-dump) and returns the raw replies. */
export type XfrmTransact = (netnsPath: string, request: Buffer) => Promise<Buffer>;

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
