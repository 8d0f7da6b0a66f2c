// Name order of named records (node names, peer names): the comparator, and an in-place sort that leaves a list
// already in order alone. Sources list peers in name order (a Kubernetes list is in key order, the directory
// store's in file-name order), and a first plan among 5,000 peers sorts before V8 has optimised anything: checking
// the order is one comparison per element, where sorting called the comparator through the sort builtin.

/** Ascending by name (code-unit order, as the kernel and Kubernetes list them). */
export function compareByName(a: { name: string }, b: { name: string }): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

/** Whether the list is in name order already (equal names side by side count as in order). */
export function inNameOrder(list: readonly { name: string }[]): boolean {
  for (let i = 1; i < list.length; i++) {
    if ((list[i] as { name: string }).name < (list[i - 1] as { name: string }).name) return false;
  }
  return true;
}

/**
 * Sorts `list` by name in place and returns it; a list in order already is left as it is, which is what the stable
 * sort would leave.
 */
export function sortByName<T extends { name: string }>(list: T[]): T[] {
  return inNameOrder(list) ? list : list.sort(compareByName);
}
