// The figure the benches report of repeated runs: the middle one (the upper middle of an even count, so it is always
// a run's own figure).

/** The median of `xs` (the upper one of an even count); NaN for none. */
export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? NaN;
}
