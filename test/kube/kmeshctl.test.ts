// kmeshctl (the shipped executable, bin/kmeshctl.js) against a real kube-apiserver: every `secret` flow and
// error — create, rotate, get, delete, the legacy `secret --key` alias, concurrent creates getting distinct
// SPIs, no SPI reuse after a delete while nodes still advertise the old one, a missing namespace, and a user
// without RBAC rights getting one forbidden line while nothing changes.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { decodeIpsecPayload } from '../../src/secret/payload.js';
import { repoRootDir } from '../fixtures/control-plane-binaries.js';
import { controlPlaneSkip, startControlPlaneForTest, type ControlPlane } from '../fixtures/control-plane.js';
import { applyManifests, kmeshNodeInfo, kubectl, NODE_INFO_PATH } from '../fixtures/kube-cluster.js';

const exec = promisify(execFile);
const SECRET_PATH = '/api/v1/namespaces/kmesh-system/secrets/kmesh-ipsec';
const KEY_HEX = '2dc9410d7cd6b324461bf16db518646594276c5362c30fc476ebca3f1a394b6ed4462161';
const KEY_PAYLOAD =
  '{"spi":3,"aeadKeyName":"rfc4106(gcm(aes))","aeadKey":"LclBDXzWsyRGG/FttRhkZZQnbFNiww/EduvKPxo5S27URiFh","length":128}';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

async function kmeshctl(kubeconfig: string, ...args: string[]): Promise<Run> {
  const bin = path.join(repoRootDir(), 'bin', 'kmeshctl.js');
  try {
    const { stdout, stderr } = await exec('node', [bin, `--kubeconfig=${kubeconfig}`, ...args], {
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: '/nonexistent' },
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

interface SecretObject {
  type: string;
  data: Record<string, string>;
  metadata: { resourceVersion: string; uid: string };
}

async function secret(cp: ControlPlane): Promise<SecretObject | undefined> {
  const res = await cp.request('GET', SECRET_PATH);
  return res.status === 404 ? undefined : (res.body as SecretObject);
}

async function storedSpi(cp: ControlPlane): Promise<number | undefined> {
  const s = await secret(cp);
  return s === undefined ? undefined : decodeIpsecPayload(Buffer.from(s.data.ipSec ?? '', 'base64').toString()).spi;
}

// A control plane starts in 5–30 s on a loaded two-core machine; every step is a real request.
t.setTimeout(600_000);
t.test('kmeshctl secret on a real API server', controlPlaneSkip(), async (t) => {
  const cp = await startControlPlaneForTest(t, { name: 'kmesh-kmeshctl' });
  await applyManifests(cp);
  const admin = (...args: string[]) => kmeshctl(cp.kubeconfig, ...args);

  t.test('get before create: one line, exit 1', async (t) => {
    const r = await admin('secret', 'get');
    t.equal(r.code, 1);
    t.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    t.match(r.stderr, /no IPsec secret: Secret kmesh-system\/kmesh-ipsec does not exist/);
  });

  t.test('create makes the Opaque Secret with SPI 1; create again rotates to SPI 2', async (t) => {
    t.same(await admin('secret', 'create'), { code: 0, stdout: 'IPsec secret created (SPI 1)\n', stderr: '' });
    const s = await secret(cp);
    t.equal(s?.type, 'Opaque');
    t.same(Object.keys(s?.data ?? {}), ['ipSec']);
    const first = decodeIpsecPayload(Buffer.from(s?.data.ipSec ?? '', 'base64').toString());
    t.equal(first.key.length, 36);
    t.same(await admin('secret', 'create'), { code: 0, stdout: 'IPsec key rotated (SPI 1 -> 2)\n', stderr: '' });
    const after = await secret(cp);
    t.equal(after?.metadata.uid, s?.metadata.uid, 'the same object, replaced');
    const second = decodeIpsecPayload(Buffer.from(after?.data.ipSec ?? '', 'base64').toString());
    t.not(second.key.toString('hex'), first.key.toString('hex'), 'a new key');
  });

  t.test('the legacy `secret --key=HEX` alias stores exactly the given key', async (t) => {
    const r = await admin('secret', `--key=${KEY_HEX}`);
    t.same(r, { code: 0, stdout: 'IPsec key rotated (SPI 2 -> 3)\n', stderr: '' });
    const s = await secret(cp);
    t.equal(Buffer.from(s?.data.ipSec ?? '', 'base64').toString(), KEY_PAYLOAD, 'Kmesh payload byte for byte');
    const again = await admin('secret', 'create', `--key=${KEY_HEX}`);
    t.equal(again.code, 2, 'rotating to the key in force is refused');
    t.match(again.stderr, /^error: invalid --key: it is the key already in force \(SPI 3\); .*nothing was changed\n$/);
    t.equal((await secret(cp))?.metadata.resourceVersion, s?.metadata.resourceVersion, 'the Secret is untouched');
  });

  t.test('get prints the config; -o json is one object for scripts', async (t) => {
    const text = await admin('secret', 'get');
    t.equal(text.code, 0, text.stderr);
    t.match(text.stdout, /kmesh-ipsec/);
    t.match(text.stdout, new RegExp(KEY_HEX));
    const json = await admin('secret', 'get', '-o', 'json');
    t.equal(json.code, 0, json.stderr);
    const parsed = JSON.parse(json.stdout) as { spi: number };
    t.equal(parsed.spi, 3);
  });

  t.test('concurrent creates each get their own SPI (409 on stale resourceVersion, retried)', async (t) => {
    const runs = await Promise.all([1, 2, 3, 4].map(() => admin('secret', 'create')));
    for (const r of runs) t.equal(r.code, 0, r.stderr);
    const spis = runs.map((r) => Number(/-> (\d+)\)/.exec(r.stdout)?.[1])).sort((a, b) => a - b);
    t.same(spis, [4, 5, 6, 7], 'four distinct SPIs, none skipped');
    t.equal(await storedSpi(cp), 7);
  });

  t.test('no SPI reuse after delete while a node still advertises the old SPI', async (t) => {
    t.equal((await cp.request('POST', NODE_INFO_PATH, kmeshNodeInfo('node-x', 7))).status, 201);
    t.same(await admin('secret', 'delete'), {
      code: 0,
      stdout: 'IPsec secret deleted (Secret kmesh-system/kmesh-ipsec)\n',
      stderr: '',
    });
    t.equal(await secret(cp), undefined, 'gone');
    const r = await admin('secret', 'create');
    t.same(r, { code: 0, stdout: 'IPsec secret created (SPI 8)\n', stderr: '' }, 'above the advertised 7');
    // A node moves to SPI 8 and the Secret is deleted again: the next key is still above it.
    t.equal((await cp.request('POST', NODE_INFO_PATH, kmeshNodeInfo('node-y', 8))).status, 201);
    t.equal((await admin('secret', 'delete')).code, 0);
    const none = await admin('secret', 'delete');
    t.equal(none.code, 1);
    t.match(none.stderr, /^error: nothing to delete: Secret kmesh-system\/kmesh-ipsec does not exist\n$/);
    t.equal((await admin('secret', 'create')).stdout, 'IPsec secret created (SPI 9)\n', 'still never reused');
  });

  t.test('a user without RBAC rights gets one forbidden line and nothing changes', async (t) => {
    const before = await secret(cp);
    const user = (...args: string[]) => kmeshctl(cp.userKubeconfig, ...args);
    for (const args of [
      ['secret', 'create'],
      ['secret', 'get'],
      ['secret', 'delete'],
      ['secret', `--key=${KEY_HEX}`],
    ]) {
      const r = await user(...args);
      t.equal(r.code, 1, `${args.join(' ')}: exit 1`);
      t.equal(r.stdout, '', `${args.join(' ')}: nothing on stdout`);
      t.equal(r.stderr.split('\n').filter((l) => l !== '').length, 1, `${args.join(' ')}: one line`);
      t.match(r.stderr, /^error: cannot \S+ .*permission denied \(403 Forbidden\).*test-user/, args.join(' '));
    }
    const after = await secret(cp);
    t.equal(after?.metadata.resourceVersion, before?.metadata.resourceVersion, 'the Secret is untouched');
  });

  t.test('a missing namespace is named, not reported as a missing secret', async (t) => {
    const r = await admin('-n', 'no-such-ns', 'secret', 'create');
    t.equal(r.code, 1);
    t.match(r.stderr, /namespace no-such-ns does not exist/);
  });

  t.test('the daemon ServiceAccount cannot read the Secret (kubelet projects it instead)', async (t) => {
    const can = await kubectl(cp.kubeconfig, [
      'auth',
      'can-i',
      'get',
      'secrets',
      '-n',
      'kmesh-system',
      '--as=system:serviceaccount:kmesh-system:kmesh-ipsec-daemon',
    ]);
    t.equal(can.stdout.trim(), 'no');
  });

  // bin/kmeshctl.js starts Node without NODE_EXTRA_CA_CERTS (Node 20 parses that file at every start) and puts
  // it back for a kubeconfig that names no CA (src/kube/node-extra-ca.ts): trust must be what Node's own is.
  t.test('run as an executable, a kubeconfig without a CA still trusts NODE_EXTRA_CA_CERTS', async (t) => {
    t.equal((await admin('secret', 'create')).code, 0);
    const doc = JSON.parse(fs.readFileSync(cp.kubeconfig, 'utf8')) as {
      clusters: { cluster: Record<string, unknown> }[];
    };
    for (const c of doc.clusters) delete c.cluster['certificate-authority-data'];
    const noCa = path.join(t.testdir(), 'no-ca.kubeconfig');
    fs.writeFileSync(noCa, JSON.stringify(doc), { mode: 0o600 });
    const bin = path.join(repoRootDir(), 'bin', 'kmeshctl.js');
    const get = async (command: string, args: string[], extra: NodeJS.ProcessEnv): Promise<Run> => {
      try {
        const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: '/nonexistent', ...extra };
        const { stdout, stderr } = await exec(
          command,
          [...args, `--kubeconfig=${noCa}`, 'secret', 'get', '-o', 'json'],
          {
            env,
          },
        );
        return { code: 0, stdout, stderr };
      } catch (err) {
        const e = err as { code?: number; stdout?: string; stderr?: string };
        return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
      }
    };
    const direct = await get(bin, [], { NODE_EXTRA_CA_CERTS: cp.caFile });
    t.equal(direct.code, 0, direct.stderr);
    t.equal((JSON.parse(direct.stdout) as { name: string }).name, 'kmesh-ipsec');
    const viaNode = await get('node', [bin], { NODE_EXTRA_CA_CERTS: cp.caFile });
    t.equal(viaNode.code, 0, viaNode.stderr);
    const untrusted = await get(bin, [], {});
    t.equal(untrusted.code, 1);
    t.match(untrusted.stderr, /^error: .*certificate/);
    t.equal(untrusted.stderr.trim().split('\n').length, 1, 'one line');
    const missing = await get(bin, [], { NODE_EXTRA_CA_CERTS: '/nonexistent/ca.pem' });
    t.equal(missing.code, 1);
    t.match(missing.stderr, /NODE_EXTRA_CA_CERTS: cannot read \/nonexistent\/ca\.pem/);
  });

  // kmeshctl lists KmeshNodeInfo objects in pages of 500 (src/kube/list-pages.ts), as the daemon does: objects on
  // every page count, for the SPIs in use and for the cluster view.
  t.test('more KmeshNodeInfo objects than one list page: every one is read', async (t) => {
    const names = Array.from({ length: 1001 }, (_, i) => `page-${String(i + 1).padStart(4, '0')}`);
    for (let i = 0; i < names.length; i += 50) {
      const batch = names.slice(i, i + 50).map((name, k) => kmeshNodeInfo(name, i + k === names.length - 1 ? 500 : 9));
      const created = await Promise.all(batch.map((o) => cp.request('POST', NODE_INFO_PATH, o)));
      t.ok(
        created.every((r) => r.status === 201),
        `objects ${i + 1}..${i + batch.length} created`,
      );
    }
    const r = await admin('secret', 'create');
    t.equal(r.code, 0, r.stderr);
    t.match(r.stdout, /-> 501\)\n$/, 'above SPI 500, which only the last page holds');
    const status = await admin('ipsec', 'status', '-o', 'json');
    const view = JSON.parse(status.stdout) as { nodes: { name: string }[]; lagging: string[]; verdict: string };
    const listed = new Set(view.nodes.map((n) => n.name));
    t.ok(
      names.every((n) => listed.has(n)),
      `all ${names.length} listed (${view.nodes.length} nodes in the view)`,
    );
    t.ok(view.verdict.length < 1000, 'a verdict of one short line');
    // --wait polls the API server's watch cache (resourceVersion 0) and prints what a read of the latest says.
    const waited = await admin('ipsec', 'status', '--wait', '--timeout', '2');
    t.equal(waited.code, 1);
    t.match(waited.stderr, /^error: still not converged on SPI 501: \d+ of \d+ nodes lag \(\d+ advertise another SPI/);
    t.equal(waited.stderr.trim().split('\n').length, 1, 'one line');
  });
});
