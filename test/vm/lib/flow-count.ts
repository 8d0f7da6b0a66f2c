// Sequence-numbered datagrams for loss measurement (pure): each datagram is a 4-byte big-endian sequence
// number followed by the payload. The receiver's tally tells how many distinct sequence numbers arrived,
// duplicates, reordering and corrupted payloads; compared with what the sender sent it gives the loss.

export function encodeDatagram(seq: number, payload: Buffer): Buffer {
  const head = Buffer.alloc(4);
  head.writeUInt32BE(seq >>> 0);
  return Buffer.concat([head, payload]);
}

export interface FlowTally {
  received: number;
  unique: number;
  duplicates: number;
  outOfOrder: number;
  badPayload: number;
  maxSeq: number;
}

export class FlowCounter {
  private readonly seen = new Set<number>();
  private last = -1;
  private tallyState: FlowTally = { received: 0, unique: 0, duplicates: 0, outOfOrder: 0, badPayload: 0, maxSeq: -1 };

  constructor(private readonly payload: Buffer) {}

  add(datagram: Buffer): void {
    const t = this.tallyState;
    t.received += 1;
    if (datagram.length < 4 || !datagram.subarray(4).equals(this.payload)) {
      t.badPayload += 1;
      return;
    }
    const seq = datagram.readUInt32BE(0);
    if (this.seen.has(seq)) {
      t.duplicates += 1;
      return;
    }
    this.seen.add(seq);
    t.unique += 1;
    if (seq < this.last) t.outOfOrder += 1;
    this.last = seq;
    if (seq > t.maxSeq) t.maxSeq = seq;
  }

  tally(): FlowTally {
    return { ...this.tallyState };
  }
}

/** Datagrams the sender sent that the receiver never counted. */
export function lostDatagrams(sent: number, tally: FlowTally): number {
  return Math.max(0, sent - tally.unique);
}
