// End-to-end in the kernel-test VM with the Kubernetes store: the same scenarios as e2e-dir, but the
// cluster objects live in the test fake API server (reached by the daemons in their node namespaces
// through a TCP relay on the underlay), kmeshctl writes the Secret through the API, and a simulated
// kubelet projects it into each node's secret directory with the atomic `..data` symlink swap.
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import t from 'tap';
import { kmeshctlPath, type ClusterStore, type ObjectKind } from '../../../src/demo/cluster-store.js';
import { espSupport } from '../../../src/demo/esp-support.js';
import type { SimNode } from '../../../src/demo/netns-cluster.js';
import { runScenarios } from '../lib/e2e-scenarios.js';
import { run, runOk, type RunResult } from '../../../src/demo/shell.js';
import { FakeApiServer } from '../../fixtures/fake-apiserver.js';
import { writeKubeconfig } from '../../fixtures/kubeconfig.js';
import { repoRoot } from '../lib/paths.js';

const RELAY_IP = '198.18.0.254';

class KubeClusterStore implements ClusterStore {
  readonly description = 'kubernetes (fake API server)';
  private version = 0;

  constructor(
    private readonly api: FakeApiServer,
    private readonly work: string,
    private readonly localKubeconfig: string,
    private readonly nodeKubeconfig: string,
  ) {}

  secretDir(node: SimNode): string {
    return path.join(this.work, node.name, 'kmesh-ipsec');
  }

  daemonFlags(node: SimNode): string[] {
    return [
      '--store=kubernetes',
      `--kubeconfig=${this.nodeKubeconfig}`,
      `--ipsec-key-file=${path.join(this.secretDir(node), 'ipSec')}`,
    ];
  }

  put(kind: ObjectKind, obj: Record<string, unknown>): Promise<void> {
    this.api.put(kind, obj);
    return Promise.resolve();
  }

  remove(kind: ObjectKind | 'kmeshnodeinfos', namespace: string | undefined, name: string): Promise<void> {
    this.api.remove(kind, kind === 'kmeshnodeinfos' ? 'kmesh-system' : namespace, name);
    return Promise.resolve();
  }

  nodeInfos(): Promise<Map<string, unknown>> {
    return Promise.resolve(
      new Map(this.api.list('kmeshnodeinfos', 'kmesh-system').map((o) => [o.metadata?.name ?? '', o])),
    );
  }

  kmeshctl(args: readonly string[]): Promise<RunResult> {
    return run('node', [kmeshctlPath(), `--kubeconfig=${this.localKubeconfig}`, ...args]);
  }

  /** The kubelet's projection: new timestamped dir, `..data` swapped atomically, `ipSec -> ..data/ipSec`. */
  async syncSecret(): Promise<void> {
    const secret = this.api.get('secrets', 'kmesh-system', 'kmesh-ipsec') as { data?: { ipSec?: string } } | undefined;
    const data = secret?.data?.ipSec;
    if (data === undefined) throw new Error('no kmesh-ipsec Secret in the API server');
    const payload = Buffer.from(data, 'base64');
    this.version += 1;
    for (const name of ['node-1', 'node-2', 'node-3']) {
      const dir = path.join(this.work, name, 'kmesh-ipsec');
      await fsp.mkdir(dir, { recursive: true });
      const previous = fs.existsSync(path.join(dir, '..data')) ? fs.readlinkSync(path.join(dir, '..data')) : undefined;
      const version = `..2024_01_01_00_00_0${this.version}.${process.pid}`;
      await fsp.mkdir(path.join(dir, version));
      await fsp.writeFile(path.join(dir, version, 'ipSec'), payload);
      await fsp.symlink(version, path.join(dir, '..data_tmp'));
      await fsp.rename(path.join(dir, '..data_tmp'), path.join(dir, '..data'));
      if (!fs.existsSync(path.join(dir, 'ipSec'))) await fsp.symlink('..data/ipSec', path.join(dir, 'ipSec'));
      if (previous !== undefined) await fsp.rm(path.join(dir, previous), { recursive: true, force: true });
    }
  }
}

const esp = process.getuid?.() === 0 ? await espSupport() : { ok: false as const, reason: 'not root' };
const skip = esp.ok
  ? {}
  : { skip: `kernel cannot run ESP here (${esp.reason}); this suite runs in the kernel-test VM` };
{
  t.test('daemon end to end, Kubernetes store', skip, async (t) => {
    const work = t.testdir();
    // The fixture reads its TLS files next to its own module; compiled to dist/ they are not there.
    const compiledTls = path.join(repoRoot(), 'dist', 'test', 'fixtures', 'tls');
    if (!fs.existsSync(compiledTls)) fs.symlinkSync(path.join(repoRoot(), 'test', 'fixtures', 'tls'), compiledTls);
    const api = new FakeApiServer();
    await api.start();
    t.teardown(() => api.stop());
    const local = api.writeKubeconfig(path.join(work, 'kubeconfig.local'));
    const remote = writeKubeconfig(path.join(work, 'kubeconfig.nodes'), {
      server: `https://${RELAY_IP}:${api.port}`,
      token: 'test-token',
      caData: null,
      // The relay address is not in the test certificate's SANs; the API server is our own fixture.
      skipTLSVerify: true,
    });
    const relayed = new Set<net.Socket>();
    const relay = net.createServer((client) => {
      const upstream = net.connect(api.port, '127.0.0.1');
      for (const s of [client, upstream]) {
        relayed.add(s);
        s.once('close', () => relayed.delete(s));
      }
      client.on('error', () => upstream.destroy());
      upstream.on('error', () => client.destroy());
      client.pipe(upstream).pipe(client);
    });
    const store = new KubeClusterStore(api, work, local, remote);
    await runScenarios(
      {
        prefix: 'kmk',
        workDir: work,
        store,
        afterCreate: async (cluster) => {
          await runOk('ip', [
            'link',
            'add',
            'kmk-api',
            'type',
            'veth',
            'peer',
            'name',
            'api',
            'netns',
            cluster.underlayNetns,
          ]);
          await runOk('ip', ['-n', cluster.underlayNetns, 'link', 'set', 'api', 'master', 'br0', 'up']);
          await runOk('ip', ['addr', 'add', `${RELAY_IP}/24`, 'dev', 'kmk-api']);
          await runOk('ip', ['link', 'set', 'kmk-api', 'up']);
          await new Promise<void>((resolve) => relay.listen(api.port, RELAY_IP, resolve));
        },
        beforeDestroy: async () => {
          // Watches stay open: end every relayed connection, or close() would wait for them forever.
          const closed = new Promise<void>((resolve) => relay.close(() => resolve()));
          for (const s of relayed) s.destroy();
          await closed;
          await run('ip', ['link', 'del', 'kmk-api']);
        },
      },
      {
        ok: (cond, what, extra) => t.ok(cond, what, cond || extra === undefined ? {} : { found: extra }),
        log: (l) => t.comment(l),
      },
    );
  });
}
