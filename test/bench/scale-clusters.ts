// The simulated cluster behind bench:scale's daemon, and the source the daemon reads it through:
//   dir:  KmeshNodeInfo objects as files in a directory, read by the directory source (fs.watch and its rescan);
//   kube: KmeshNodeInfo objects in a real kube-apiserver + etcd (test/fixtures/control-plane.ts, Debian's
//         binaries), read by the Kubernetes source (list + watch), which also publishes the node's own object
//         and its status there, as in a cluster.
// Both write the other nodes' objects from another process, as those nodes' daemons would: a step of the daemon
// under test holds this thread, and must not hold up the writes. Node i (0 = the local node) has the underlay
// address 198.18.0.0/15 + i and the pod CIDR 10.x.y.0/24.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { DirSource } from '../../src/daemon/sources/dir-source.js';
import type { KubeSource } from '../../src/daemon/sources/kube-source.js';
import type { ClusterSource } from '../../src/daemon/sources/source.js';
import { nodeKeyStatus, nodeKeyStatusJson } from '../../src/model/node-key-status.js';
import { repoRootDir } from '../fixtures/control-plane-binaries.js';
import { ControlPlane } from '../fixtures/control-plane.js';
import { KubeApi } from '../fixtures/kube-api.js';
import { applyManifests, NODE_INFO_PATH, nodeObject } from '../fixtures/kube-cluster.js';
import type { KubeWriterJob, KubeWriterRequest } from './kube-writer.js';

export const LOCAL = 'scale-node-00000';
export const peerName = (i: number): string => `scale-node-${String(i).padStart(5, '0')}`;
/** Underlay 198.18.0.0/15 and pod CIDRs 10.x.y.0/24 for node i (0 = the local node). */
export const underlay = (i: number): string => `198.${18 + (i >> 16)}.${(i >> 8) & 0xff}.${i & 0xff}`;
export const podCidr = (i: number): string => `10.${(i >> 8) & 0xff}.${i & 0xff}.0/24`;
const bootOf = (i: number, gen = 0): string =>
  `550e8400-e29b-41d4-a716-${String(gen).padStart(4, '0')}${String(i).padStart(8, '0')}`;

/** Peer i's KmeshNodeInfo advertising `spi`, its boot ID of generation `gen` (a new boot ID: a changed peer). */
function nodeInfo(i: number, spi: number, gen = 0): Record<string, unknown> {
  return {
    apiVersion: 'kmesh.net/v1alpha1',
    kind: 'KmeshNodeInfo',
    metadata: { name: peerName(i), namespace: 'kmesh-system' },
    spec: { spi, addresses: [underlay(i)], bootID: bootOf(i, gen), podCIDRS: [podCidr(i)] },
  };
}

/** When a writer process's first batch started and its last ended, on this process's performance.now() clock. */
type Written = { first: number; last: number };

/** One peer's object as written: node i advertising `spi`, boot ID generation `gen`. */
export interface PeerUpdate {
  i: number;
  spi: number;
  gen: number;
}

/** What a peer's daemon reports in its status once it holds `held` and sends with `sending` (src/model/node-key-status.ts). */
export function peerStatus(
  held: readonly number[],
  sending: readonly number[],
  peers: number,
): Record<string, unknown> {
  return nodeKeyStatusJson(
    nodeKeyStatus({ heldSpis: held, sendSpis: sending, keyProblem: '', peerCount: peers, failingPeers: [] }),
  );
}

/** One peer's status as its daemon writes it: through the status subresource, its spec (`u`) as it stands. */
export interface StatusUpdate extends PeerUpdate {
  status: Record<string, unknown>;
}

export interface ScaleCluster {
  /** What the daemon reads the cluster through, in words (the bench's first line). */
  readonly description: string;
  readonly source: ClusterSource;
  /** Writes the local node and peers 1..n advertising SPI 1, before the daemon starts. */
  seed(peers: number): Promise<void>;
  /** Writes one peer's object from this process. */
  writeOne(update: PeerUpdate): Promise<void>;
  /**
   * Writes every update from another process in `batches` batches `pauseMs` apart; resolves with when the first
   * batch started and the last ended, on this process's performance.now() clock.
   */
  writeAll(updates: readonly PeerUpdate[], batches: number, pauseMs: number): Promise<Written>;
  /** Creates new peers' objects (advertising `spi`) from another process, as writeAll. */
  joinAll(peers: readonly number[], spi: number, batches: number, pauseMs: number): Promise<Written>;
  /** Writes every peer's status (its spec stays as `u` says it is) from another process, as writeAll. */
  writeStatuses(updates: readonly StatusUpdate[], batches: number, pauseMs: number): Promise<Written>;
  /** What the source's reads cost so far, in words. */
  readCost(): string;
  stop(): Promise<void>;
}

/** Runs `node args`, feeding it `input`; resolves with the `first last` epoch-ms line it prints, made local. */
function writerProcess(args: string[], input: string): Promise<Written> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { stdio: ['pipe', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0 || !/^[\d.]+ [\d.]+$/.test(out)) {
        reject(new Error(`the writer process exited with ${code}`));
        return;
      }
      const [first, last] = out.split(' ').map((t) => Number(t) - performance.timeOrigin) as [number, number];
      resolve({ first, last });
    });
    child.stdin.end(input);
  });
}

/** The directory writer, run apart: node's own script text (no build step), stdin JSON in. */
const FILE_WRITER = `
const fs = require('node:fs');
let input = '';
process.stdin.on('data', (d) => (input += d));
process.stdin.on('end', async () => {
  const { files, batches, pauseMs } = JSON.parse(input);
  const first = performance.timeOrigin + performance.now();
  const per = Math.ceil(files.length / batches);
  let last = first;
  for (let b = 0; b < batches; b++) {
    if (b > 0) await new Promise((r) => setTimeout(r, pauseMs));
    for (const [file, text] of files.slice(b * per, (b + 1) * per)) {
      fs.writeFileSync(file + '.tmp', text);
      fs.renameSync(file + '.tmp', file);
    }
    last = performance.timeOrigin + performance.now();
  }
  process.stdout.write(\`\${first} \${last}\`);
});
`;

async function writeJson(file: string, obj: object): Promise<void> {
  await fsp.writeFile(`${file}.tmp`, JSON.stringify(obj));
  await fsp.rename(`${file}.tmp`, file);
}

/** KmeshNodeInfo files in a directory of our own, read by the directory source. */
export class DirScaleCluster implements ScaleCluster {
  readonly source: DirSource;

  private constructor(private readonly dir: string) {
    this.source = new DirSource(dir, LOCAL);
  }

  get description(): string {
    return `directory source in ${this.dir}`;
  }

  static async create(): Promise<DirScaleCluster> {
    return new DirScaleCluster(await fsp.mkdtemp(path.join(os.tmpdir(), 'kmesh-scale-')));
  }

  private file(i: number): string {
    return path.join(this.dir, 'kmeshnodeinfos', `${peerName(i)}.json`);
  }

  async seed(peers: number): Promise<void> {
    for (const sub of ['nodes', 'namespaces', 'kmeshnodeinfos']) await fsp.mkdir(path.join(this.dir, sub));
    // The Node as the API server would hold it, with the uid it would have given it.
    await writeJson(path.join(this.dir, 'nodes', `${LOCAL}.json`), {
      ...nodeObject(LOCAL, underlay(0), podCidr(0), bootOf(0)),
      metadata: { name: LOCAL, uid: 'uid-0' },
    });
    for (let i = 1; i <= peers; i++) await writeJson(this.file(i), nodeInfo(i, 1));
  }

  writeOne(u: PeerUpdate): Promise<void> {
    return writeJson(this.file(u.i), nodeInfo(u.i, u.spi, u.gen));
  }

  /** Writes each peer's object (peer index, object) from the writer process, in `batches` `pauseMs` apart. */
  private writeObjects(
    objects: readonly (readonly [number, object])[],
    batches: number,
    pauseMs: number,
  ): Promise<Written> {
    const files = objects.map(([i, object]) => [this.file(i), JSON.stringify(object)]);
    return writerProcess(['-e', FILE_WRITER], JSON.stringify({ files, batches, pauseMs }));
  }

  writeAll(updates: readonly PeerUpdate[], batches: number, pauseMs: number): Promise<Written> {
    return this.writeObjects(
      updates.map((u) => [u.i, nodeInfo(u.i, u.spi, u.gen)] as const),
      batches,
      pauseMs,
    );
  }

  joinAll(peers: readonly number[], spi: number, batches: number, pauseMs: number): Promise<Written> {
    return this.writeAll(
      peers.map((i) => ({ i, spi, gen: 0 })),
      batches,
      pauseMs,
    );
  }

  writeStatuses(updates: readonly StatusUpdate[], batches: number, pauseMs: number): Promise<Written> {
    return this.writeObjects(
      updates.map((u) => [u.i, { ...nodeInfo(u.i, u.spi, u.gen), status: u.status }] as const),
      batches,
      pauseMs,
    );
  }

  readCost(): string {
    const s = this.source.scanStats();
    return `directory scans: ${s.scans} scans (${s.fullScans} full), ${s.filesRead} files read, ${s.filesChanged} changed`;
  }

  async stop(): Promise<void> {
    await this.source.stop();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * The Kubernetes source and its config loader, bundled as the daemon's are (test/bench/scale-kube-source.ts). The
 * bundle is built by another process: finding the lazy modules' exports imports them (esbuild-lazy-imports.mjs),
 * which would leave the generated client in this process's heap.
 */
function bundledKubeSource(): typeof import('./scale-kube-source.js') {
  const entry = fileURLToPath(new URL('./scale-kube-source.js', import.meta.url));
  const outfile = entry.replace(/\.js$/, '.bundle.cjs');
  const options = pathToFileURL(path.join(repoRootDir(), 'scripts', 'bundle-options.mjs')).href;
  const script =
    `const { build } = await import('esbuild'); const { bundleOptions } = await import(${JSON.stringify(options)}); ` +
    `await build(bundleOptions(${JSON.stringify(entry)}, ${JSON.stringify(outfile)}));`;
  const built = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    cwd: repoRootDir(),
    encoding: 'utf8',
  });
  if (built.status !== 0) throw new Error(`bundling the Kubernetes source failed: ${built.stderr.trim()}`);
  return createRequire(import.meta.url)(outfile) as typeof import('./scale-kube-source.js');
}

/** Requests in flight per writer process (the fixture's client holds four connections). */
const KUBE_IN_FLIGHT = 8;

/** KmeshNodeInfo objects in a real API server (etcd + kube-apiserver of our own), read by the Kubernetes source. */
export class KubeScaleCluster implements ScaleCluster {
  readonly source: KubeSource;

  private constructor(
    private readonly cp: ControlPlane,
    bundled: typeof import('./scale-kube-source.js'),
  ) {
    const { config } = bundled.loadKubeConfig({ kubeconfig: cp.kubeconfig, env: {} });
    this.source = new bundled.KubeSource(config, LOCAL);
  }

  get description(): string {
    const b = this.cp.binaries;
    return `Kubernetes source on a real kube-apiserver ${b.kubeVersion} + etcd ${b.etcdVersion} (${b.source})`;
  }

  /** Starts the control plane and installs the CRD (its binaries must be present: see test/fixtures). */
  static async create(): Promise<KubeScaleCluster> {
    const bundled = bundledKubeSource();
    const cp = await ControlPlane.start({ name: 'kmesh-scale' });
    try {
      await applyManifests(cp);
      return new KubeScaleCluster(cp, bundled);
    } catch (err) {
      await cp.stop();
      throw err;
    }
  }

  private run(requests: KubeWriterRequest[], batches: number, pauseMs: number): Promise<Written> {
    const job: KubeWriterJob = {
      server: this.cp.server,
      caPem: this.cp.caPem,
      token: this.cp.adminToken,
      requests,
      batches,
      pauseMs,
      inFlight: KUBE_IN_FLIGHT,
    };
    const script = fileURLToPath(new URL('./kube-writer.js', import.meta.url));
    return writerProcess([script], JSON.stringify(job));
  }

  /** The merge patch that makes peer `u.i`'s object say what `u` says. */
  private static patch(u: PeerUpdate): KubeWriterRequest {
    return {
      method: 'PATCH',
      path: `${NODE_INFO_PATH}/${peerName(u.i)}`,
      body: { spec: (nodeInfo(u.i, u.spi, u.gen) as { spec: unknown }).spec },
      contentType: 'application/merge-patch+json',
    };
  }

  async seed(peers: number): Promise<void> {
    const node = nodeObject(LOCAL, underlay(0), podCidr(0), bootOf(0));
    const created = (await this.cp.call('POST', '/api/v1/nodes', node)) as { metadata: { resourceVersion: string } };
    await this.cp.call('PUT', `/api/v1/nodes/${LOCAL}/status`, {
      ...node,
      metadata: { name: LOCAL, resourceVersion: created.metadata.resourceVersion },
    });
    const creates = Array.from({ length: peers }, (_, k) => ({
      method: 'POST',
      path: NODE_INFO_PATH,
      body: nodeInfo(k + 1, 1),
    }));
    await this.run(creates, 1, 0);
  }

  /** From this process, as the directory's writeOne (a writer process would add its start to the step's delay). */
  async writeOne(u: PeerUpdate): Promise<void> {
    const p = KubeScaleCluster.patch(u);
    const api = new KubeApi(this.cp.server, this.cp.caPem, this.cp.adminToken, 60_000);
    try {
      const res = await api.request(p.method, p.path, p.body, p.contentType);
      if (res.status !== 200) throw new Error(`${p.method} ${p.path}: ${res.status}`);
    } finally {
      api.close();
    }
  }

  writeAll(updates: readonly PeerUpdate[], batches: number, pauseMs: number): Promise<Written> {
    return this.run(
      updates.map((u) => KubeScaleCluster.patch(u)),
      batches,
      pauseMs,
    );
  }

  joinAll(peers: readonly number[], spi: number, batches: number, pauseMs: number): Promise<Written> {
    return this.run(
      peers.map((i) => ({ method: 'POST', path: NODE_INFO_PATH, body: nodeInfo(i, spi) })),
      batches,
      pauseMs,
    );
  }

  writeStatuses(updates: readonly StatusUpdate[], batches: number, pauseMs: number): Promise<Written> {
    return this.run(
      updates.map((u) => ({
        method: 'PATCH',
        path: `${NODE_INFO_PATH}/${peerName(u.i)}/status`,
        body: { status: u.status },
        contentType: 'application/merge-patch+json',
      })),
      batches,
      pauseMs,
    );
  }

  readCost(): string {
    const stats = Object.entries(this.source.watchStats())
      .map(([kind, s]) => `${kind} ${s.lists} list(s), ${s.resumes} resume(s), ${s.gone} gone`)
      .join('; ');
    return `API reads: ${stats}`;
  }

  async stop(): Promise<void> {
    await this.source.stop();
    await this.cp.stop();
  }
}
