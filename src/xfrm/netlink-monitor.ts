// Tells whether anyone but us changed this namespace's XFRM tables, so a step can trust the kernel view the
// reconciler kept instead of dumping 25,000 objects (src/ipsec/kept-xfrm-view.ts). The kernel announces every
// SA and policy change on NETLINK_XFRM multicast groups, with the nlmsg_seq and nlmsg_pid of the request that
// caused it; the addon's monitor socket (native/xfrm_monitor.cc) collects them. Our own writes are expected by
// (message type, seq): each op the kernel accepted must be announced exactly once. Anything else — a foreign
// `ip xfrm` change, a flush, an expiry, an announcement lost to a full socket, or one of ours that did not
// arrive — makes the tables "touched", and the next step dumps them. Answers errs on the side of "touched".
import { loadAddon } from '../native/addon.js';

/** The addon's monitor socket (native/xfrm_monitor.cc). */
export interface XfrmMonitorApi {
  open(netnsPath: string): number;
  /** Everything queued: (type, seq, pid) triples, and whether announcements were lost. */
  drain(fd: number): { events: Uint32Array; overrun: boolean };
  close(fd: number): void;
}

export function addonXfrmMonitor(): XfrmMonitorApi {
  const addon = loadAddon() as { xfrmMonitor?: XfrmMonitorApi };
  if (typeof addon.xfrmMonitor?.drain !== 'function') {
    throw new Error('kmesh_native addon has no xfrmMonitor: rebuild it with `npm run build:native`');
  }
  return addon.xfrmMonitor;
}

/** Why the tables may have changed since the last look ('' when only our announced writes changed them). */
export type TouchedReason = string;

/**
 * Matches announcements against the writes we expect to see announced. Pure: fed by `expect` and `match`.
 * Key: type and seq (our requests carry nlmsg_pid 0, as `ip xfrm`'s do, so pid must be 0 for ours).
 */
export class AnnouncementLedger {
  private expected = new Map<number, number[]>();
  private count = 0;

  /** One write the kernel accepted, whose announcement will come with this type and seq. */
  expect(type: number, seq: number): void {
    const types = this.expected.get(seq);
    if (types) types.push(type);
    else this.expected.set(seq, [type]);
    this.count++;
  }

  /**
   * Consumes the announcements drained since the last call and forgets what was expected: '' when they are
   * exactly our expected writes, else the first reason they are not.
   */
  settle(events: Uint32Array, overrun: boolean): TouchedReason {
    let reason = overrun ? 'XFRM announcements were lost (monitor socket overran)' : '';
    for (let i = 0; i + 2 < events.length; i += 3) {
      const type = events[i] as number;
      const seq = events[i + 1] as number;
      const pid = events[i + 2] as number;
      const types = pid === 0 ? this.expected.get(seq) : undefined;
      const at = types?.indexOf(type) ?? -1;
      if (types !== undefined && at >= 0) {
        types.splice(at, 1);
        if (types.length === 0) this.expected.delete(seq);
        this.count--;
      } else if (reason === '') {
        reason = `XFRM tables changed by someone else (message type ${type}, seq ${seq}, pid ${pid})`;
      }
    }
    if (reason === '' && this.count > 0) {
      reason = `${this.count} of our XFRM writes were not announced`;
    }
    this.expected = new Map();
    this.count = 0;
    return reason;
  }
}

/** The monitor of one namespace's XFRM tables; opened at the first look (which reports "touched"). */
export class XfrmChangeMonitor {
  private fd: number | undefined;
  private readonly ledger = new AnnouncementLedger();

  constructor(
    private readonly netnsPath: string,
    private readonly api: () => XfrmMonitorApi = addonXfrmMonitor,
  ) {}

  expect(type: number, seq: number): void {
    if (this.fd !== undefined) this.ledger.expect(type, seq);
  }

  /** '' when only our expected writes changed the tables since the last look; else why they may have changed. */
  look(): TouchedReason {
    if (this.fd === undefined) {
      try {
        this.fd = this.api().open(this.netnsPath);
      } catch (err) {
        return `no XFRM monitor: ${(err as Error).message}`;
      }
      this.ledger.settle(new Uint32Array(0), false);
      return 'first look (monitor just opened)';
    }
    try {
      const { events, overrun } = this.api().drain(this.fd);
      return this.ledger.settle(events, overrun);
    } catch (err) {
      this.close();
      return `XFRM monitor failed: ${(err as Error).message}`;
    }
  }

  close(): void {
    if (this.fd !== undefined) this.api().close(this.fd);
    this.fd = undefined;
  }
}
