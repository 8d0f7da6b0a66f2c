// Arrays kept for as long as a plan or a view is, at their exact size. V8 gives an array grown by push() from
// [] room for 17 items, and so does filter() for its result; the room stays for the array's life. The daemon
// keeps tens of thousands of such arrays of one to four items at 5,000 peers (a peer's pod CIDRs, its tunnels,
// a tunnel's SAs and policies, a status row's SPIs): ~130 bytes of empty slots each, ~8 MiB in all. slice() and
// concat() build their result at its exact size (test/unit/util-exact-array.test.ts measures both).

/** `items` copied into an array of exactly their number (an empty array has no item store at all). */
export function exactArray<T>(items: readonly T[]): T[] {
  return items.length === 0 ? [] : items.slice();
}

/** A new array of `items` and then `item`, at its exact size (`[...items, item]` gets room for 17). */
export function exactWith<T>(items: readonly T[], item: T): T[] {
  return items.concat([item]);
}
