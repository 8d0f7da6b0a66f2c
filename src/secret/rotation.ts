// Chooses the SPI of the next key version. An SPI is never handed out twice for different keys: the next one is
// above the current Secret's SPI, every SPI a node still advertises in its KmeshNodeInfo and the highest SPI a
// node reports holding in its status (which matters after `kmeshctl secret delete`, when nodes may still hold
// SAs for old SPIs, and for a node holding a newer key it has not advertised yet).
import { MAX_SPI } from './payload.js';

/** The SPI space is used up (only reachable by hand-editing SPIs close to 2^32). */
export class SpiExhaustedError extends Error {
  override readonly name = 'SpiExhaustedError';
}

/** Next SPI: 1 on a fresh cluster, else one above the highest of the current SPI and all advertised SPIs. */
export function nextSpi(currentSpi: number | undefined, advertisedSpis: readonly number[]): number {
  let highest = currentSpi ?? 0;
  for (const spi of advertisedSpis) if (spi > highest) highest = spi;
  const next = highest + 1;
  if (next > MAX_SPI) {
    throw new SpiExhaustedError(`no SPI left: the highest SPI in use is ${highest}, and SPIs are 32-bit`);
  }
  return next;
}

/**
 * SPIs a KmeshNodeInfo object says are taken: its `spec.spi` (advertised) and its `status.highestSpi` (the newest
 * key the node holds, which it may not advertise yet: it has not converged, or it refused a later key). Invalid
 * values are skipped.
 */
export function advertisedSpi(object: unknown): number[] {
  if (typeof object !== 'object' || object === null) return [];
  const spis: number[] = [];
  for (const part of ['spec', 'status'] as const) {
    const holder = (object as Record<string, unknown>)[part];
    if (typeof holder !== 'object' || holder === null) continue;
    const spi = (holder as Record<string, unknown>)[part === 'spec' ? 'spi' : 'highestSpi'];
    if (typeof spi === 'number' && Number.isInteger(spi) && spi >= 1 && spi <= MAX_SPI) spis.push(spi);
  }
  return spis;
}
