// Whether two lists hold the same items (by ===) in the same order: the one comparison of lists of texts, SPIs and
// handed-on objects that the planner's memo, the node comparisons, the status and the metrics make.

/** The same items in the same order (indexed: it runs per peer in steps V8 may not have optimised yet). */
export function sameItems<T>(a: readonly T[], b: readonly T[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
