// XfrmKernel over NETLINK_XFRM (the imperative shell around the pure codec): dumps decode into XfrmState /
// XfrmPolicy page by page as the kernel sends them (the addon's paged dumps), and apply() encodes every op (the
// bulk kinds through the addon's native encoder, the rest and anything it leaves through the codec), sends them in
// batches (many messages per syscall, through the addon) and maps each message's outcome (errno + the kernel's
// extack text) back to its op. Optionally bound to a network namespace, so one process can drive the XFRM tables
// of several namespaces.
import { endianness } from 'node:os';
import { getSystemErrorName } from 'node:util';
import {
  decodePolicy,
  decodeState,
  encodeDumpPolicies,
  encodeDumpStates,
  encodeGetState,
  XFRM_MSG_DELPOLICY,
  XFRM_MSG_DELSA,
  XFRM_MSG_NEWPOLICY,
  XFRM_MSG_NEWSA,
  XFRM_MSG_UPDPOLICY,
  writeDeletePolicy,
  writeDeleteState,
  writePolicy,
  writeState,
  type StateId,
} from './netlink-codec.js';
import {
  addonXfrmDump,
  addonXfrmEncode,
  addonXfrmTransact,
  NATIVE_ENCODE_ROOM,
  type XfrmDumpPages,
  type XfrmEncode,
  type XfrmTransact,
} from './netlink-addon.js';
import {
  NLMSG_DONE,
  NLMSG_ERROR,
  NetlinkWriter,
  parseAck,
  readAcks,
  splitMessages,
  type NetlinkAck,
  type NetlinkMessage,
} from './netlink-wire.js';
import { XfrmChangeMonitor, type XfrmMonitorApi } from './netlink-monitor.js';
import type { XfrmKernel, XfrmOp, XfrmOpResult, XfrmPolicy, XfrmState } from './types.js';

/** The message type of an op's request, which the kernel's announcement of it carries too. */
const MESSAGE_TYPE: Record<XfrmOp['kind'], number> = {
  addState: XFRM_MSG_NEWSA,
  deleteState: XFRM_MSG_DELSA,
  addPolicy: XFRM_MSG_NEWPOLICY,
  updatePolicy: XFRM_MSG_UPDPOLICY,
  deletePolicy: XFRM_MSG_DELPOLICY,
};

const EINVAL = 22;
const EIO = 5;
const ESRCH = 3;
const EPROTO = 71;
// 500 ops per transact: 15,001 policies into an empty namespace took 0.08-0.17 s at 250-1000 ops per call and
// 0.14-0.21 s at 2000-5000, the difference kernel time (sys 57-120 ms against 82-170 ms; docs/benchmarks.md,
// "eighth session"). Each call is at least one sendmsg; the kernel holds the namespace's XFRM lock for a whole sendmsg.
const DEFAULT_BATCH_SIZE = 500;
const MAX_BATCH_SIZE = 10000;
const NETNS_NAME = /^[A-Za-z0-9_.-]+$/;

export interface NetlinkXfrmKernelOptions {
  /** Network namespace: a name under /run/netns or an absolute path (/proc/PID/ns/net); omitted = our own. */
  netns?: string;
  /** Ops per transact call (each message of a call is sent in one sendmsg when the socket buffers allow). */
  batchSize?: number;
  /** The transport; the addon's unless a test injects another. */
  transact?: XfrmTransact;
  /**
   * The addon's native encoder for the bulk ops (same bytes as the TypeScript codec, which encodes every op it
   * leaves); default true. False = the TypeScript codec encodes everything.
   */
  nativeEncode?: boolean;
  /**
   * Watch the namespace's XFRM announcements (native/xfrm_monitor.cc), so touchedSinceLastLook() can tell
   * whether anyone but this object changed the tables; default false (every caller then dumps). A function
   * gives the monitor API (tests).
   */
  watch?: boolean | (() => XfrmMonitorApi);
  /**
   * How dumps are read: page by page through the addon's paged dumps (native/xfrm_dump.cc), so a whole table's
   * reply is never held at once (default, unless `transact` is injected), or `false`: in one reply through the
   * transport. An object gives the paged-dump API (tests).
   */
  dumpPages?: XfrmDumpPages | false;
  /** The least bytes of replies per page of a paged dump (default DEFAULT_DUMP_PAGE_BYTES). */
  dumpPageBytes?: number;
}

/**
 * A page of a paged dump: 256 KiB of replies, ~600 SAs. A whole SAD dump at 20,000 SAs is ~8 MiB of replies, which
 * held whole beside its decoded SAs doubled the dump's peak memory (bench:dump); pages cost an await each.
 */
export const DEFAULT_DUMP_PAGE_BYTES = 256 * 1024;
/** The largest page the addon reads (native/xfrm_dump.cc's kMaxPageBytes). */
const MAX_DUMP_PAGE_BYTES = 64 * 1024 * 1024;

/** Resolves a namespace option to the file the addon opens; "" = the caller's own namespace. */
export function netnsPath(netns: string | undefined): string {
  if (netns === undefined || netns === '') return '';
  if (netns.startsWith('/')) return netns;
  if (!NETNS_NAME.test(netns) || netns === '.' || netns === '..') {
    throw new Error(`netns "${netns}" is neither a name under /run/netns nor an absolute path`);
  }
  return `/run/netns/${netns}`;
}

function errnoName(errno: number): string {
  try {
    return getSystemErrorName(-errno);
  } catch {
    return `errno ${errno}`;
  }
}

function describeAck(ack: NetlinkAck): string {
  return ack.message ? `${errnoName(ack.errno)}: ${ack.message}` : errnoName(ack.errno);
}

const NO_REPLY: NetlinkAck = { errno: EPROTO, message: 'no reply from the kernel' };

/** The sequence number after `seq` (wrapping before 2^32, never 0). */
function seqAfter(seq: number): number {
  return seq >= 0xfffffff0 ? 1 : seq + 1;
}

export class NetlinkXfrmKernel implements XfrmKernel {
  readonly netnsPath: string;
  private readonly batchSize: number;
  private readonly transactOverride: XfrmTransact | undefined;
  private readonly nativeEncode: boolean;
  private readonly monitor: XfrmChangeMonitor | undefined;
  private readonly dumpPages: XfrmDumpPages | false | undefined;
  private readonly dumpPageBytes: number;
  private seq: number;

  constructor(options: NetlinkXfrmKernelOptions = {}) {
    if (endianness() !== 'LE') throw new Error('the XFRM netlink codec supports little-endian hosts only');
    this.netnsPath = netnsPath(options.netns);
    const batch = options.batchSize ?? DEFAULT_BATCH_SIZE;
    if (!Number.isInteger(batch) || batch < 1 || batch > MAX_BATCH_SIZE) {
      throw new Error(`batch size ${String(batch)} is not an integer in 1..${MAX_BATCH_SIZE}`);
    }
    this.batchSize = batch;
    this.transactOverride = options.transact;
    this.nativeEncode = options.nativeEncode ?? true;
    const watch = options.watch ?? false;
    this.monitor =
      watch === false
        ? undefined
        : new XfrmChangeMonitor(this.netnsPath, ...(typeof watch === 'function' ? [watch] : []));
    // Undefined: the addon's, looked up at the first dump (a kernel object that never dumps needs no addon).
    this.dumpPages = options.dumpPages ?? (options.transact === undefined ? undefined : false);
    const page = options.dumpPageBytes ?? DEFAULT_DUMP_PAGE_BYTES;
    if (!Number.isInteger(page) || page < 1 || page > MAX_DUMP_PAGE_BYTES) {
      throw new Error(`dump page size ${String(page)} is not an integer in 1..${MAX_DUMP_PAGE_BYTES}`);
    }
    this.dumpPageBytes = page;
    this.seq = (Date.now() & 0x3fffffff) + 1;
  }

  /**
   * '' when, since the previous call, only this object's own accepted writes changed the XFRM tables; else why
   * they may have changed (always so on the first call, and without `watch`).
   */
  touchedSinceLastLook(): string {
    return this.monitor?.look() ?? 'not watching the XFRM tables';
  }

  /** Closes the monitor socket (a later look opens it again). */
  close(): void {
    this.monitor?.close();
  }

  private nextSeq(): number {
    this.seq = seqAfter(this.seq);
    return this.seq;
  }

  private transact(request: Buffer, errnos?: Int32Array): Promise<Buffer> {
    return (this.transactOverride ?? addonXfrmTransact())(this.netnsPath, request, errnos);
  }

  private where(): string {
    return this.netnsPath === '' ? '' : ` in ${this.netnsPath}`;
  }

  /** Runs one dump and returns its data messages' decodings (unrepresentable objects dropped). */
  private async dump<T>(
    what: string,
    request: (seq: number) => Buffer,
    decode: (m: NetlinkMessage) => T | undefined,
  ): Promise<T[]> {
    const seq = this.nextSeq();
    const out: T[] = [];
    /** Decodes a reply's (or a page's) messages into `out`; true once the dump's end was among them. */
    const take = (reply: Buffer): boolean => {
      let ended = false;
      for (const msg of splitMessages(reply)) {
        if (msg.seq !== seq) continue;
        if (msg.type === NLMSG_ERROR || msg.type === NLMSG_DONE) {
          ended = true;
          if (msg.type === NLMSG_DONE && msg.payload.length < 4) continue;
          const ack = msg.type === NLMSG_ERROR ? parseAck(msg) : { errno: -msg.payload.readInt32LE(0) };
          if (ack.errno !== 0) throw new Error(`dump of XFRM ${what}${this.where()} failed: ${describeAck(ack)}`);
          continue;
        }
        const decoded = decode(msg);
        if (decoded !== undefined) out.push(decoded);
      }
      return ended;
    };
    const pages = this.dumpPages ?? addonXfrmDump();
    if (pages === false) {
      take(await this.transact(request(seq)));
      return out;
    }
    const fd = pages.open(this.netnsPath, request(seq));
    try {
      while (!take(await pages.next(fd, seq, this.dumpPageBytes)));
    } finally {
      pages.close(fd);
    }
    return out;
  }

  dumpStates(): Promise<XfrmState[]> {
    return this.dump('states', encodeDumpStates, decodeState);
  }

  dumpPolicies(): Promise<XfrmPolicy[]> {
    return this.dump('policies', encodeDumpPolicies, decodePolicy);
  }

  /** The SA with this (dst, spi, proto, mark), or undefined when the kernel has none. */
  async getState(id: StateId): Promise<XfrmState | undefined> {
    const seq = this.nextSeq();
    const reply = await this.transact(encodeGetState(id, seq));
    let found: XfrmState | undefined;
    for (const msg of splitMessages(reply)) {
      if (msg.seq !== seq) continue;
      if (msg.type === NLMSG_ERROR) {
        const ack = parseAck(msg);
        if (ack.errno === ESRCH) return undefined;
        if (ack.errno !== 0) {
          throw new Error(`get XFRM state dst ${id.dst} spi ${id.spi}${this.where()} failed: ${describeAck(ack)}`);
        }
      } else {
        found = decodeState(msg) ?? found;
      }
    }
    return found;
  }

  /** Appends the op's message to `w` with sequence number `seq`; throws (leaving `w` as it was) when it cannot. */
  private writeOp(w: NetlinkWriter, op: XfrmOp, seq: number): void {
    const start = w.length;
    try {
      switch (op.kind) {
        case 'addState':
          writeState(w, 'add', op.state, seq);
          break;
        case 'deleteState':
          writeDeleteState(w, op.state, seq);
          break;
        case 'addPolicy':
          writePolicy(w, 'add', op.policy, seq);
          break;
        case 'updatePolicy':
          writePolicy(w, 'update', op.policy, seq);
          break;
        case 'deletePolicy':
          writeDeletePolicy(w, op.policy, seq);
          break;
      }
    } catch (e) {
      w.rollback(start);
      throw e;
    }
  }

  /**
   * Encodes a batch: each op's first sequence number, or the Error that kept it from being encoded. The native
   * encoder takes runs of the ops it covers; the TypeScript codec each op it leaves.
   */
  private encodeBatch(w: NetlinkWriter, batch: readonly XfrmOp[]): (number | Error)[] {
    const seqs = new Uint32Array(batch.length);
    for (let i = 0; i < batch.length; i++) seqs[i] = this.nextSeq();
    const encoded = new Array<number | Error>(batch.length);
    const native: XfrmEncode | null = this.nativeEncode ? addonXfrmEncode() : null;
    const cursor = new Uint32Array(1);
    let i = 0;
    while (i < batch.length) {
      if (native) {
        w.ensureRoom(NATIVE_ENCODE_ROOM);
        cursor[0] = w.length;
        const n = native(batch, i, batch.length, seqs.subarray(i), w.raw, cursor);
        w.commit(cursor[0]);
        for (let k = i; k < i + n; k++) encoded[k] = seqs[k] as number;
        i += n;
        if (i >= batch.length) break;
        if (n > 0 && w.room < NATIVE_ENCODE_ROOM) continue; // out of room, not an op it leaves
      }
      const seq = seqs[i] as number;
      try {
        this.writeOp(w, batch[i] as XfrmOp, seq);
        encoded[i] = seq;
      } catch (e) {
        encoded[i] = e instanceof Error ? e : new Error(String(e));
      }
      i++;
    }
    return encoded;
  }

  /** A batch of `ops` from `start`, encoded: its messages in request order, each op's seq or encoding error. */
  private prepareBatch(ops: readonly XfrmOp[], start: number): PreparedBatch {
    const batch = ops.slice(start, start + this.batchSize);
    const writer = new NetlinkWriter(batch.length * 512);
    const encoded = this.encodeBatch(writer, batch);
    // An op's message index, -1 if it was not encoded.
    const messageOf = new Int32Array(batch.length);
    let messages = 0;
    for (let i = 0; i < batch.length; i++) messageOf[i] = encoded[i] instanceof Error ? -1 : messages++;
    return {
      batch,
      end: start + batch.length,
      encoded,
      messageOf,
      messages,
      request: writer.length > 0 ? writer.finish() : undefined,
    };
  }

  /**
   * Applies ops in order, `batchSize` per syscall batch; every op gets its own result, nothing throws per op.
   * While the kernel works through one batch (the addon's transact runs on a worker thread), the next is encoded
   * and the previous one's results are read: the kernel's time and ours overlap instead of adding up. A batch is
   * sent only once the one before it has returned, so the kernel sees the ops in order.
   */
  async apply(ops: readonly XfrmOp[]): Promise<XfrmOpResult[]> {
    const results: XfrmOpResult[] = [];
    let next = ops.length > 0 ? this.prepareBatch(ops, 0) : undefined;
    while (next) {
      const current = next;
      // Per message 0 or the kernel's errno, filled by a transport that can (the addon); -1 = unknown, read from
      // the reply's acks instead (injected transports, dump entries).
      const errnos = new Int32Array(current.messages).fill(-1);
      const sent = current.request ? this.transact(current.request, errnos) : undefined;
      next = current.end < ops.length ? this.prepareBatch(ops, current.end) : undefined;
      let reply: Buffer | undefined;
      let failure: Error | undefined;
      if (sent) {
        try {
          reply = await sent;
        } catch (e) {
          failure = e instanceof Error ? e : new Error(String(e));
        }
      }
      this.readResults(current, errnos, reply, failure, results);
      if (failure) {
        for (let i = current.end; i < ops.length; i++) {
          results.push(transportResult(ops[i] as XfrmOp, failure, 'not sent after an earlier batch failed'));
        }
        break;
      }
    }
    return results;
  }

  /** Appends the results of a sent batch (or of one whose transport failed) to `results`. */
  private readResults(
    prepared: PreparedBatch,
    errnos: Int32Array,
    reply: Buffer | undefined,
    failure: Error | undefined,
    results: XfrmOpResult[],
  ): void {
    const { batch, encoded, messageOf } = prepared;
    let acks: Map<number, NetlinkAck> | undefined;
    for (let i = 0; i < batch.length; i++) {
      const op = batch[i] as XfrmOp;
      const enc = encoded[i];
      const m = messageOf[i] as number;
      if (enc instanceof Error) {
        results.push({ op, errno: EINVAL, message: enc.message });
      } else if (failure || enc === undefined) {
        results.push(transportResult(op, failure ?? new Error('not encoded'), 'outcome unknown'));
      } else if (errnos[m] === 0) {
        results.push({ op, errno: 0 });
        this.monitor?.expect(MESSAGE_TYPE[op.kind], enc);
      } else {
        // A message the transport reported as succeeded has no ack in the reply; the others are read from it.
        acks ??= readAcks(reply ?? Buffer.alloc(0));
        const ack = acks.get(enc) ?? NO_REPLY;
        results.push(
          ack.message === undefined ? { op, errno: ack.errno } : { op, errno: ack.errno, message: ack.message },
        );
        if (ack.errno === 0) this.monitor?.expect(MESSAGE_TYPE[op.kind], enc);
      }
    }
  }
}

/** One batch of ops, encoded and not yet sent (NetlinkXfrmKernel.apply). */
interface PreparedBatch {
  batch: XfrmOp[];
  /** Index in the ops after this batch's last op. */
  end: number;
  /** Each op's sequence number, or the error that kept it from being encoded. */
  encoded: (number | Error)[];
  messageOf: Int32Array;
  messages: number;
  /** The batch's messages; undefined when none could be encoded. */
  request: Buffer | undefined;
}

function transportResult(op: XfrmOp, failure: Error, note: string): XfrmOpResult {
  const errno = (failure as { errno?: unknown }).errno;
  return { op, errno: typeof errno === 'number' && errno > 0 ? errno : EIO, message: `${failure.message} (${note})` };
}
