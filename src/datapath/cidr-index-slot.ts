// Installs the compiled remote-CIDR index (cidr-index.ts) into the one slot of km_cidr_index, the map-in-map the TC
// programs ask before km_nodeinfo. Each change fills a new inner array map (one 2 MiB value), freezes it and swaps
// it in with one update, so the programs see the old index or the new one, never a mix; an unchanged index (same
// fingerprint) writes nothing. An index over its capacity, or one whose install failed, leaves the slot empty: the
// programs then ask km_nodeinfo, and a stale index never answers for a changed km_nodeinfo.
import {
  CIDR_INDEX_KEY_SIZE,
  CIDR_POOL_SIZE,
  cidrIndexUse,
  decodeCidrHeader,
  encodeCidrPool,
  fitsCidrIndex,
  type CidrHeader,
  type CidrIndex,
} from './cidr-index.js';
import type { CidrIndexUse } from './datapath.js';
import { withFd, type BpfFd, type NativeBpf } from './native-bpf.js';

const BPF_MAP_TYPE_ARRAY = 2;
/** The one slot of km_cidr_index (u32 key 0), also the key of an inner map's one value. */
const SLOT = Buffer.alloc(CIDR_INDEX_KEY_SIZE);

export class CidrIndexSlot {
  /** Header of the inner map last read, by map id: an installed pool is frozen, so it never changes. */
  private seen: { mapId: number; header: CidrHeader } | undefined;

  constructor(
    private readonly bpf: NativeBpf,
    /** km_cidr_index. */
    private readonly outer: BpfFd,
  ) {}

  /** Makes the slot hold this index (or nothing, when it does not fit). */
  async install(index: CidrIndex): Promise<void> {
    const installed = await this.installed();
    if (!fitsCidrIndex(index)) {
      if (installed) await this.empty();
      return;
    }
    if (installed?.fingerprint === index.fingerprint) return;
    try {
      const create = this.bpf.mapCreate({
        type: BPF_MAP_TYPE_ARRAY,
        name: 'km_cidr_pool',
        keySize: CIDR_INDEX_KEY_SIZE,
        valueSize: CIDR_POOL_SIZE,
        maxEntries: 1,
      });
      await withFd(create, async (pool) => {
        await this.bpf.mapApply(pool, [{ key: SLOT, value: encodeCidrPool(index) }]);
        await this.bpf.mapFreeze(pool);
        // A map-in-map takes the inner map as an fd in the update's value; the kernel stores its id.
        const value = Buffer.alloc(4);
        value.writeUInt32LE(pool.fd, 0);
        await this.bpf.mapApply(this.outer, [{ key: SLOT, value }]);
      });
    } catch (e) {
      if (installed) await this.empty().catch(() => undefined);
      throw e;
    }
  }

  /** The installed index's nodes and tail records of their capacities; null when the slot is empty. */
  async use(): Promise<CidrIndexUse | null> {
    const header = await this.installed();
    return header ? cidrIndexUse(header.nodes, header.records) : null;
  }

  private empty(): Promise<void> {
    return this.bpf.mapApply(this.outer, [{ key: SLOT }]);
  }

  /**
   * The installed index's header (fingerprint, counts), or undefined when the slot is empty. The 2 MiB pool is read
   * only for an inner map this process has not read before.
   */
  private async installed(): Promise<CidrHeader | undefined> {
    const slot = await this.bpf.mapLookup(this.outer, SLOT);
    if (!slot) return undefined;
    const mapId = slot.readUInt32LE(0);
    if (this.seen?.mapId === mapId) return this.seen.header;
    const header = await withFd(this.bpf.mapFdById(mapId), async (pool) => {
      const value = await this.bpf.mapLookup(pool, SLOT);
      return decodeCidrHeader(value ?? Buffer.alloc(0));
    });
    this.seen = { mapId, header };
    return header;
  }
}
