// A list of every object of a kind read in pages (limit and continue), as client-go's pager reads one. An API server
// answers a list of the latest version (no resourceVersion) from etcd, and a single response of 5,000
// KmeshNodeInfo objects is megabytes it builds in memory at once, for every daemon that relists at that moment (after
// a compaction, each daemon of the cluster is told 410 and relists). Pages come from one snapshot of etcd: the first
// page's resourceVersion, which the continue token carries. When the token has expired (410: etcd compacted that
// snapshot between two pages), the list is read again whole, without a limit, as client-go's pager does
// (FullListIfExpired).
import { kubeErrorStatus } from './errors.js';

export interface ListedObjects {
  items: unknown[];
  resourceVersion: string;
}

interface ListBody {
  items?: unknown[];
  metadata?: { resourceVersion?: string; continue?: string };
}

/** The objects of a list body and the version it was read at (none of either: empty). */
export function listedObjects(body: unknown): ListedObjects {
  const b = body as ListBody | undefined;
  const items = b?.items;
  return { items: Array.isArray(items) ? items : [], resourceVersion: b?.metadata?.resourceVersion ?? '' };
}

/** Objects per page when nothing else is said: client-go's default page size. */
export const DEFAULT_LIST_PAGE_SIZE = 500;

/** Throws a RangeError unless `pageSize` is a whole number of objects, at least one. */
export function checkListPageSize(pageSize: number): void {
  if (!Number.isInteger(pageSize) || pageSize < 1) throw new RangeError(`list page size ${pageSize} is not >= 1`);
}

/**
 * Every object `get` lists for `query` (a list body per call), `pageSize` per page. `get` receives the query with
 * `limit`, and `continue` after the first page.
 */
export async function listInPages(
  get: (query: Record<string, string>) => Promise<unknown>,
  query: Readonly<Record<string, string>>,
  pageSize: number,
): Promise<ListedObjects> {
  checkListPageSize(pageSize);
  const items: unknown[] = [];
  const limit = String(pageSize);
  let token = '';
  for (;;) {
    let body: ListBody;
    try {
      body = (await get(token === '' ? { ...query, limit } : { ...query, limit, continue: token })) as ListBody;
    } catch (err) {
      if (token === '' || kubeErrorStatus(err) !== 410) throw err;
      return listedObjects(await get({ ...query }));
    }
    const page = body.items ?? [];
    for (let i = 0; i < page.length; i++) items.push(page[i]);
    const next = body.metadata?.continue ?? '';
    if (next === '') return { items, resourceVersion: body.metadata?.resourceVersion ?? '' };
    if (next === token) throw new Error(`the API server answered a list page with the token that asked for it`);
    token = next;
  }
}
