// Adapter: reads the links, addresses, routes, neighbours and bridge FDB of the daemon's network namespace
// with iproute2's JSON output (`ip -j`, `bridge -j`), for pod-interfaces.ts to resolve.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { BridgeFdbEntry, HostLink, HostNeighbour, HostNetwork, HostRoute } from './pod-interfaces.js';

const run = promisify(execFile);

async function json(cmd: string, args: string[]): Promise<unknown[]> {
  const { stdout } = await run(cmd, args, { maxBuffer: 64 * 1024 * 1024 });
  const text = stdout.trim();
  if (text === '') return [];
  const parsed = JSON.parse(text) as unknown;
  return Array.isArray(parsed) ? (parsed as unknown[]) : [];
}

interface IpAddr {
  ifindex?: number;
  ifname?: string;
  mtu?: number;
  linkinfo?: { info_kind?: string };
  addr_info?: { local?: string }[];
}

interface IpRoute {
  dst?: string;
  dev?: string;
  type?: string;
}

export function parseLinks(raw: unknown[]): HostLink[] {
  return (raw as IpAddr[])
    .filter((l) => typeof l.ifname === 'string' && typeof l.ifindex === 'number')
    .map((l) => ({
      ifindex: l.ifindex ?? 0,
      name: l.ifname ?? '',
      kind: l.linkinfo?.info_kind ?? '',
      addresses: (l.addr_info ?? []).map((a) => a.local).filter((a): a is string => typeof a === 'string'),
      ...(typeof l.mtu === 'number' ? { mtu: l.mtu } : {}),
    }));
}

export function parseRoutes(raw: unknown[], family: 4 | 6): HostRoute[] {
  return (raw as IpRoute[])
    .filter((r) => typeof r.dst === 'string' && typeof r.dev === 'string' && (r.type ?? 'unicast') === 'unicast')
    .map((r) => ({ dst: r.dst ?? '', dev: r.dev ?? '', family }));
}

/** Reads the current host network. Neighbours and FDB are read only when a bridge exists (they matter only then). */
export async function readHostNetwork(options: { ipv6: boolean }): Promise<HostNetwork> {
  const [addrs, routes4, routes6] = await Promise.all([
    json('ip', ['-j', '-d', 'addr', 'show']),
    json('ip', ['-j', '-4', 'route', 'show', 'table', 'main']),
    options.ipv6 ? json('ip', ['-j', '-6', 'route', 'show', 'table', 'main']) : Promise.resolve([]),
  ]);
  const links = parseLinks(addrs);
  let neighbours: HostNeighbour[] = [];
  let fdb: BridgeFdbEntry[] = [];
  if (links.some((l) => l.kind === 'bridge')) {
    const [neigh, fdbRaw] = await Promise.all([
      json('ip', ['-j', 'neigh', 'show']),
      json('bridge', ['-j', 'fdb', 'show']),
    ]);
    neighbours = (neigh as { dst?: string; dev?: string; lladdr?: string }[])
      .filter((n) => n.dst && n.dev && n.lladdr)
      .map((n) => ({ dst: n.dst ?? '', dev: n.dev ?? '', lladdr: n.lladdr ?? '' }));
    fdb = (fdbRaw as { mac?: string; ifname?: string; master?: string }[])
      .filter((e) => e.mac && e.ifname)
      .map((e) => ({ mac: e.mac ?? '', ifname: e.ifname ?? '', master: e.master ?? '' }));
  }
  return { links, routes: [...parseRoutes(routes4, 4), ...parseRoutes(routes6, 6)], neighbours, fdb };
}
