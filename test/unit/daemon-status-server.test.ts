// The daemon's HTTP listener and status file (src/daemon/status-server.ts), over a real socket on 127.0.0.1 and a
// temporary directory: /status (200 when ready, 503 when not, undefined fields as null), /metrics in the Prometheus
// text format, the other methods and paths, a metrics failure, a port already in use, and the status file.
import { promises as fs } from 'node:fs';
import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { DaemonMetrics } from '../../src/daemon/metrics.js';
import { startStatusServer, statusJson, writeStatusFile } from '../../src/daemon/status-server.js';
import { emptyStatus, type DaemonStatus } from '../../src/daemon/status.js';

const LOCAL = { host: '127.0.0.1', port: 0 };

async function serve(t: Test, status: () => DaemonStatus, metrics = new DaemonMetrics()): Promise<string> {
  const server: http.Server = await startStatusServer(LOCAL, metrics, status);
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

t.test('/status is the JSON status, 503 while not ready, 200 when ready', async (t) => {
  let current = emptyStatus('node-01', 'dir:/srv', true);
  const base = await serve(t, () => current);
  const before = await fetch(`${base}/status`);
  t.equal(before.status, 503);
  t.equal(before.headers.get('content-type'), 'application/json');
  const body = (await before.json()) as Record<string, unknown>;
  t.match(body, { node: 'node-01', synced: false, keySpi: null, rotation: null }, 'undefined fields are null');
  current = { ...current, synced: true, keySpi: 2, ready: false, notReady: ['1 XFRM operation failed'] };
  const refused = await fetch(`${base}/status`);
  t.equal(refused.status, 503, 'synced is not enough: not ready is 503 (the readiness probe fails)');
  t.match(await refused.json(), { synced: true, ready: false, notReady: ['1 XFRM operation failed'] });
  current = { ...current, ready: true, notReady: [] };
  const after = await fetch(`${base}/`);
  t.equal(after.status, 200, '/ is /status');
  t.match(await after.json(), { synced: true, keySpi: 2, ready: true });
});

t.test('/readyz is the readiness verdict alone: 200 "ready", or 503 with one line per reason', async (t) => {
  let current = emptyStatus('node-01', 'dir:/srv', true);
  const base = await serve(t, () => current);
  const before = await fetch(`${base}/readyz`);
  t.equal(before.status, 503);
  t.match(before.headers.get('content-type'), /^text\/plain/);
  t.equal(await before.text(), 'not ready: no reconcile step yet\n');
  current = { ...current, ready: false, notReady: ['1 XFRM operation failed', 'no IPsec key'] };
  t.equal(
    await (await fetch(`${base}/readyz`)).text(),
    'not ready: 1 XFRM operation failed\nnot ready: no IPsec key\n',
  );
  current = { ...current, ready: true, notReady: [], peers: [] };
  const ready = await fetch(`${base}/readyz`);
  t.equal(ready.status, 200);
  t.equal(await ready.text(), 'ready\n');
});

t.test('/metrics is the Prometheus text of the daemon metrics', async (t) => {
  const metrics = new DaemonMetrics();
  metrics.update({ ...emptyStatus('node-01', 'dir:/srv', true), keySpi: 7 });
  const base = await serve(t, () => emptyStatus('node-01', 'dir:/srv', true), metrics);
  const res = await fetch(`${base}/metrics`);
  t.equal(res.status, 200);
  t.match(res.headers.get('content-type'), /^text\/plain/);
  t.match(await res.text(), /^kmesh_ipsec_key_spi 7$/m);
});

t.test('other methods and paths, and a metrics failure', async (t) => {
  const failing = new DaemonMetrics();
  failing.text = () => Promise.reject(new Error('registry broke'));
  const base = await serve(t, () => emptyStatus('n', 's', false), failing);
  t.equal((await fetch(`${base}/status`, { method: 'POST' })).status, 405);
  t.equal((await fetch(`${base}/nothing`)).status, 404);
  const res = await fetch(`${base}/metrics`);
  t.equal(res.status, 500);
  t.match(await res.text(), /registry broke/);
});

t.test('a port already in use is an error, not a hang', async (t) => {
  const first = await startStatusServer(LOCAL, new DaemonMetrics(), () => emptyStatus('n', 's', false));
  t.teardown(() => new Promise<void>((resolve) => first.close(() => resolve())));
  const port = (first.address() as AddressInfo).port;
  await t.rejects(
    startStatusServer({ host: '127.0.0.1', port }, new DaemonMetrics(), () => emptyStatus('n', 's', false)),
    { code: 'EADDRINUSE' },
  );
});

t.test('the status file holds the same JSON, in a directory it creates', async (t) => {
  const base = await fs.mkdtemp(path.join(os.tmpdir(), 'kmt-status-'));
  t.teardown(() => fs.rm(base, { recursive: true, force: true }));
  const file = path.join(base, 'run', 'status.json');
  const status = { ...emptyStatus('node-01', 'dir:/srv', true), steps: 3 };
  await writeStatusFile(file, status);
  t.equal(await fs.readFile(file, 'utf8'), statusJson(status));
  await writeStatusFile(file, { ...status, steps: 4 });
  t.match(JSON.parse(await fs.readFile(file, 'utf8')), { steps: 4 });
  t.same(await fs.readdir(path.dirname(file)), ['status.json'], 'no temporary file left');
  t.equal((await fs.stat(file)).mode & 0o777, 0o600, 'readable by root only');
});
