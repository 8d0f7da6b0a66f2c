// Adapter: the daemon's HTTP listener (--metrics-addr) serving Prometheus text on /metrics, the JSON status on
// /status (200 when the status says ready, else 503) and the same verdict alone on /readyz (the DaemonSet's
// readiness probe: every 10 s, where /status renders every peer's row, ~1 MiB of JSON at 5,000 peers), and the
// --status-file writer (atomic and durable, so readers never see half a file).
import http from 'node:http';
import type { ListenAddress } from './config.js';
import type { DaemonMetrics } from './metrics.js';
import type { DaemonStatus } from './status.js';
import { writeFileAtomic } from '../util/atomic-write.js';

export function statusJson(status: DaemonStatus): string {
  return JSON.stringify(status, (_k, v: unknown) => (v === undefined ? null : v), 2) + '\n';
}

export async function writeStatusFile(file: string, status: DaemonStatus): Promise<void> {
  // 0600: the status names peers, SPIs and problems; nothing in it is for other users of the node.
  await writeFileAtomic(file, statusJson(status), { mode: 0o600, dirMode: 0o755 });
}

export async function startStatusServer(
  addr: ListenAddress,
  metrics: DaemonMetrics,
  status: () => DaemonStatus,
): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    const url = req.url ?? '/';
    if (req.method !== 'GET') {
      res.writeHead(405).end();
    } else if (url === '/metrics') {
      metrics.text().then(
        (text) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text),
        (err: unknown) => res.writeHead(500).end(String(err)),
      );
    } else if (url === '/readyz') {
      const s = status();
      res
        .writeHead(s.ready ? 200 : 503, { 'content-type': 'text/plain; charset=utf-8' })
        .end(s.ready ? 'ready\n' : s.notReady.map((r) => `not ready: ${r}\n`).join(''));
    } else if (url === '/status' || url === '/') {
      const s = status();
      res.writeHead(s.ready ? 200 : 503, { 'content-type': 'application/json' }).end(statusJson(s));
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(addr.port, addr.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return server;
}
