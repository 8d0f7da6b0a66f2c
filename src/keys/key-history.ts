// Every IPsec key version this node still needs, by SPI. Immutable: each change returns a new history.
// An SPI names exactly one key forever, so adding a different key under a known SPI is refused. The
// current key is the one with the highest SPI. The daemon persists the history (toJSON/fromJSON, key
// bytes as base64) so a restart keeps the old SPIs peers may still be using (Kmesh forgets them).

import { ipsecKeyProblem } from '../model/ipsec-key.js';
import type { IpsecKey } from '../model/node.js';

const JSON_FORMAT_VERSION = 1;

/** On-disk form: key fields named as in the kmesh-ipsec Secret, key bytes in standard base64. */
export interface KeyHistoryJson {
  version: number;
  keys: { spi: number; aeadKeyName: string; aeadKey: string; length: number }[];
}

/** Throws a one-line error when the key breaks the model's key invariants (src/model/ipsec-key.ts). */
export function validateIpsecKey(key: IpsecKey): void {
  const problem = ipsecKeyProblem(key);
  if (problem !== undefined) throw new Error(`IPsec key ${problem}`);
}

function copyKey(key: IpsecKey): IpsecKey {
  return { spi: key.spi, aeadKeyName: key.aeadKeyName, key: Buffer.from(key.key), icvBits: key.icvBits };
}

function sameKey(a: IpsecKey, b: IpsecKey): boolean {
  return a.aeadKeyName === b.aeadKeyName && a.icvBits === b.icvBits && a.key.equals(b.key);
}

export class KeyHistory {
  private readonly bySpi: ReadonlyMap<number, IpsecKey>;

  private constructor(bySpi: ReadonlyMap<number, IpsecKey>) {
    this.bySpi = bySpi;
  }

  static empty(): KeyHistory {
    return new KeyHistory(new Map());
  }

  /** A history holding these keys; throws on an invalid key or two different keys under one SPI. */
  static of(keys: Iterable<IpsecKey>): KeyHistory {
    let history = KeyHistory.empty();
    for (const key of keys) history = history.with(key);
    return history;
  }

  /**
   * This history plus `key`. Re-adding the identical key is a no-op (returns this); a different key under an
   * SPI already held throws, because an SPI must never be reused for a new key.
   */
  with(key: IpsecKey): KeyHistory {
    validateIpsecKey(key);
    const existing = this.bySpi.get(key.spi);
    if (existing) {
      if (sameKey(existing, key)) return this;
      throw new Error(
        `IPsec key SPI ${key.spi} is already in use with a different key; a new key needs a new SPI (create a new secret version)`,
      );
    }
    const next = new Map(this.bySpi);
    next.set(key.spi, copyKey(key));
    return new KeyHistory(next);
  }

  /** This history without the given SPIs (retired keys). */
  without(spis: Iterable<number>): KeyHistory {
    const next = new Map(this.bySpi);
    let changed = false;
    for (const spi of spis) changed = next.delete(spi) || changed;
    return changed ? new KeyHistory(next) : this;
  }

  /** Keeps only the `count` highest SPIs (a bound on growth; the rotation protocol retires keys normally). */
  keepNewest(count: number): KeyHistory {
    const spis = this.spis();
    return this.without(spis.slice(0, Math.max(0, spis.length - count)));
  }

  get(spi: number): IpsecKey | undefined {
    return this.bySpi.get(spi);
  }

  has(spi: number): boolean {
    return this.bySpi.has(spi);
  }

  get size(): number {
    return this.bySpi.size;
  }

  /** SPIs held, ascending. */
  spis(): number[] {
    return [...this.bySpi.keys()].sort((a, b) => a - b);
  }

  /** The key with the highest SPI, undefined when empty. */
  current(): IpsecKey | undefined {
    const spis = this.spis();
    const top = spis[spis.length - 1];
    return top === undefined ? undefined : this.bySpi.get(top);
  }

  keys(): IpsecKey[] {
    return this.spis().map((spi) => this.bySpi.get(spi) as IpsecKey);
  }

  toJSON(): KeyHistoryJson {
    return {
      version: JSON_FORMAT_VERSION,
      keys: this.keys().map((k) => ({
        spi: k.spi,
        aeadKeyName: k.aeadKeyName,
        aeadKey: k.key.toString('base64'),
        length: k.icvBits,
      })),
    };
  }

  /** Parses what toJSON produced (object or JSON text); throws a one-line error naming the bad field. */
  static fromJSON(input: unknown): KeyHistory {
    let value: unknown = input;
    if (typeof input === 'string') {
      try {
        value = JSON.parse(input);
      } catch (err) {
        throw new Error(`key history: not JSON (${(err as Error).message})`, { cause: err });
      }
    }
    if (typeof value !== 'object' || value === null) throw new Error('key history: expected an object');
    const { version, keys } = value as Record<string, unknown>;
    if (version !== JSON_FORMAT_VERSION) {
      throw new Error(
        `key history: unsupported version ${version === undefined ? '(missing)' : JSON.stringify(version)}`,
      );
    }
    if (!Array.isArray(keys)) throw new Error('key history: "keys" must be an array');
    const parsed = keys.map((entry: unknown, i): IpsecKey => {
      if (typeof entry !== 'object' || entry === null) throw new Error(`key history: keys[${i}] is not an object`);
      const { spi, aeadKeyName, aeadKey, length } = entry as Record<string, unknown>;
      if (typeof spi !== 'number') throw new Error(`key history: keys[${i}].spi is not a number`);
      if (typeof aeadKeyName !== 'string') throw new Error(`key history: keys[${i}].aeadKeyName is not a string`);
      if (typeof length !== 'number') throw new Error(`key history: keys[${i}].length is not a number`);
      if (typeof aeadKey !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(aeadKey) || aeadKey.length % 4 !== 0) {
        throw new Error(`key history: keys[${i}].aeadKey is not standard base64`);
      }
      return { spi, aeadKeyName, key: Buffer.from(aeadKey, 'base64'), icvBits: length };
    });
    try {
      return KeyHistory.of(parsed);
    } catch (err) {
      throw new Error(`key history: ${(err as Error).message}`, { cause: err });
    }
  }
}
