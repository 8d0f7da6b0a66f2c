// Chooses the SPI of the next key version. An SPI is never handed out twice for different keys: the next one is
// above both the current Secret's SPI and every SPI a node still advertises in its KmeshNodeInfo (which matters
// after `kmeshctl secret delete`, when nodes may still hold SAs for old SPIs).
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

/** spec.spi of a KmeshNodeInfo object as a one- or zero-element list; objects without a valid SPI advertise nothing. */
export function advertisedSpi(object: unknown): number[] {
  if (typeof object !== 'object' || object === null) return [];
  const spec = (object as { spec?: unknown }).spec;
  if (typeof spec !== 'object' || spec === null) return [];
  const spi = (spec as { spi?: unknown }).spi;
  return typeof spi === 'number' && Number.isInteger(spi) && spi >= 1 && spi <= MAX_SPI ? [spi] : [];
}
