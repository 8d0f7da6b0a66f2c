// kmeshctl secret create/get/delete driven in-process through the real @kubernetes/client-node against the fake
// API server (HTTPS, bearer tokens): create (random or --key, SPI 1 then +1 per rotation, the older --key alias),
// get (text and JSON), delete, and every error, including concurrent rotations.
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { decodeIpsecPayload } from '../../src/secret/payload.js';
import { writeServiceAccount } from '../fixtures/kubeconfig.js';
import { kmeshctl, nodeInfo, secretPayload, startCluster, TOKEN, writes } from '../fixtures/kmeshctl-harness.js';

const SPEC_HEX = '2dc9410d7cd6b324461bf16db518646594276c5362c30fc476ebca3f1a394b6ed4462161';
const SPEC_PAYLOAD =
  '{"spi":1,"aeadKeyName":"rfc4106(gcm(aes))","aeadKey":"LclBDXzWsyRGG/FttRhkZZQnbFNiww/EduvKPxo5S27URiFh","length":128}';

t.test('create on a fresh cluster makes the Opaque Secret with SPI 1 and a random key', async (t) => {
  const { api, run } = await startCluster(t);
  const result = await run('secret', 'create');
  t.same(result, { code: 0, stdout: 'IPsec secret created (SPI 1)\n', stderr: '' });
  const secret = api.get('secrets', 'kmesh-system', 'kmesh-ipsec') as { type: string; data: Record<string, string> };
  t.equal(secret.type, 'Opaque');
  t.same(Object.keys(secret.data), ['ipSec']);
  const key = decodeIpsecPayload(secretPayload(api) ?? '');
  t.equal(key.spi, 1);
  t.equal(key.key.length, 36);
  t.not(key.key.toString('hex'), '0'.repeat(72));
});

t.test('create --key stores exactly the documented Kmesh example payload', async (t) => {
  const { api, run } = await startCluster(t);
  t.equal((await run('secret', 'create', '--key', SPEC_HEX)).code, 0);
  t.equal(secretPayload(api), SPEC_PAYLOAD);
  const secret = api.get('secrets', 'kmesh-system', 'kmesh-ipsec') as { data: Record<string, string> };
  t.equal(secret.data.ipSec, Buffer.from(SPEC_PAYLOAD).toString('base64'), 'Kubernetes base64 of the JSON');
});

t.test('every spelling of the key option works, including the old `secret --key=HEX` alias', async (t) => {
  const spellings = [
    ['secret', 'create', `--key=${SPEC_HEX}`],
    ['secret', 'create', '-k', SPEC_HEX],
    ['secret', `--key=${SPEC_HEX}`],
    ['secret', '--key', SPEC_HEX],
    ['secret', `-k=${SPEC_HEX}`],
    ['secret', 'create', '-k', `${SPEC_HEX.slice(0, 64)}\n${SPEC_HEX.slice(64)}\n`],
    // Unquoted $(xxd -p) output that wrapped: the shell splits it into words.
    ['secret', 'create', `--key=${SPEC_HEX.slice(0, 60)}`, SPEC_HEX.slice(60)],
    ['secret', `--key=${SPEC_HEX.slice(0, 30)}`, SPEC_HEX.slice(30, 60), SPEC_HEX.slice(60)],
  ];
  for (const args of spellings) {
    const { api, run } = await startCluster(t);
    const result = await run(...args);
    t.same(result, { code: 0, stdout: 'IPsec secret created (SPI 1)\n', stderr: '' }, args.join(' '));
    t.equal(secretPayload(api), SPEC_PAYLOAD, args.join(' '));
  }
});

t.test('create on an existing secret rotates: SPI + 1, new key, object identity and labels kept', async (t) => {
  const { api, run } = await startCluster(t);
  await run('secret', 'create', '--key', SPEC_HEX);
  const before = api.get('secrets', 'kmesh-system', 'kmesh-ipsec')!;
  api.put('secrets', { ...before, metadata: { ...before.metadata, labels: { team: 'net' } } });
  const result = await run('secret', 'create');
  t.same(result, { code: 0, stdout: 'IPsec key rotated (SPI 1 -> 2)\n', stderr: '' });
  const after = api.get('secrets', 'kmesh-system', 'kmesh-ipsec')!;
  t.equal(after.metadata?.uid, before.metadata?.uid);
  t.equal(after.metadata?.creationTimestamp, before.metadata?.creationTimestamp);
  t.same(after.metadata?.labels, { team: 'net' });
  const key = decodeIpsecPayload(secretPayload(api) ?? '');
  t.equal(key.spi, 2);
  t.not(key.key.toString('hex'), SPEC_HEX);
  t.same(await run('secret', 'create', '-k', SPEC_HEX), {
    code: 0,
    stdout: 'IPsec key rotated (SPI 2 -> 3)\n',
    stderr: '',
  });
});

t.test('get shows the configuration with the key in hex, as text or as pure JSON', async (t) => {
  const { api, run } = await startCluster(t);
  await run('secret', 'create', '--key', SPEC_HEX);
  const created = String(api.get('secrets', 'kmesh-system', 'kmesh-ipsec')?.metadata?.creationTimestamp);
  const text = await run('secret', 'get');
  t.equal(text.code, 0);
  t.equal(text.stderr, '');
  t.equal(
    text.stdout,
    'Secret name: kmesh-ipsec\n' +
      'Namespace: kmesh-system\n' +
      `Created: ${created.replace('T', ' ').replace('Z', ' UTC')}\n` +
      'IPsec Configuration:\n' +
      `{\n  "spi": 1,\n  "aeadKeyName": "rfc4106(gcm(aes))",\n  "aeadKey": "${SPEC_HEX}",\n  "length": 128\n}\n`,
  );
  const json = await run('secret', 'get', '-o', 'json');
  t.equal(json.code, 0);
  t.same(JSON.parse(json.stdout), {
    name: 'kmesh-ipsec',
    namespace: 'kmesh-system',
    creationTimestamp: created,
    spi: 1,
    aeadKeyName: 'rfc4106(gcm(aes))',
    aeadKey: SPEC_HEX,
    length: 128,
  });
  t.same(writes(api), ['POST /api/v1/namespaces/kmesh-system/secrets -> 201'], 'get writes nothing');
});

t.test('get of a missing or malformed secret fails with one line saying what to do', async (t) => {
  const { api, run, kubeconfig, env } = await startCluster(t);
  t.same(await kmeshctl(['secret', 'get'], { ...env, KUBECONFIG: kubeconfig }), {
    code: 1,
    stdout: '',
    stderr:
      'error: no IPsec secret: Secret kmesh-system/kmesh-ipsec does not exist; create one with: kmeshctl secret create\n',
  });
  const fix = `kmeshctl --kubeconfig ${kubeconfig} secret create`;
  t.equal(
    (await run('secret', 'get')).stderr,
    `error: no IPsec secret: Secret kmesh-system/kmesh-ipsec does not exist; create one with: ${fix}\n`,
    'the hint carries the flags that chose the store',
  );
  const bad = (ipSec: string | undefined) =>
    api.put('secrets', {
      metadata: { name: 'kmesh-ipsec', namespace: 'kmesh-system' },
      type: 'Opaque',
      data: ipSec === undefined ? { other: 'eA==' } : { ipSec: Buffer.from(ipSec).toString('base64') },
    });
  bad('{"spi":1,"aeadKeyName":"rfc4106(gcm(aes))","aeadKey":"AAAA","length":128}');
  t.same(await run('secret', 'get'), {
    code: 1,
    stdout: '',
    stderr:
      'error: Secret kmesh-system/kmesh-ipsec is malformed: aeadKey decodes to 3 bytes, need 36; ' +
      `replace it with: ${fix}\n`,
  });
  bad('not json');
  t.equal(
    (await run('secret', 'get')).stderr,
    `error: Secret kmesh-system/kmesh-ipsec is malformed: payload is not JSON; replace it with: ${fix}\n`,
  );
  bad(undefined);
  t.same(
    (await run('secret', 'get')).stderr,
    `error: Secret kmesh-system/kmesh-ipsec is malformed: it has no "ipSec" data key; replace it with: ${fix}\n`,
  );
});

t.test('create over a malformed secret replaces it, above its SPI when that is still readable', async (t) => {
  const { api, run } = await startCluster(t);
  api.put('secrets', {
    metadata: { name: 'kmesh-ipsec', namespace: 'kmesh-system' },
    data: { ipSec: Buffer.from('{"spi":4,"aeadKey":"short"}').toString('base64') },
  });
  t.same(await run('secret', 'create'), { code: 0, stdout: 'IPsec key rotated (SPI 4 -> 5)\n', stderr: '' });
  api.put('secrets', { metadata: { name: 'kmesh-ipsec', namespace: 'kmesh-system' }, data: { ipSec: 'eA==' } });
  t.same(await run('secret', 'create'), {
    code: 0,
    stdout: 'IPsec secret created (SPI 1), replacing a malformed one\n',
    stderr: '',
  });
});

t.test('delete removes the secret; deleting nothing is an error', async (t) => {
  const { api, run } = await startCluster(t);
  await run('secret', 'create');
  t.same(await run('secret', 'delete'), {
    code: 0,
    stdout: 'IPsec secret deleted (Secret kmesh-system/kmesh-ipsec)\n',
    stderr: '',
  });
  t.equal(api.get('secrets', 'kmesh-system', 'kmesh-ipsec'), undefined);
  t.same(await run('secret', 'delete'), {
    code: 1,
    stdout: '',
    stderr: 'error: nothing to delete: Secret kmesh-system/kmesh-ipsec does not exist\n',
  });
});

t.test('after delete, create continues above the highest SPI a KmeshNodeInfo still advertises', async (t) => {
  const { api, run } = await startCluster(t);
  await run('secret', 'create');
  await run('secret', 'create');
  await run('secret', 'delete');
  api.put('kmeshnodeinfos', nodeInfo('node-a', 2));
  api.put('kmeshnodeinfos', nodeInfo('node-b', 5));
  api.put('kmeshnodeinfos', nodeInfo('node-bad', 'nine'));
  api.put('namespaces', { metadata: { name: 'elsewhere' } });
  api.put('kmeshnodeinfos', nodeInfo('node-other-namespace', 99, 'elsewhere'));
  t.same(await run('secret', 'create'), { code: 0, stdout: 'IPsec secret created (SPI 6)\n', stderr: '' });
  t.same(await run('secret', 'create'), { code: 0, stdout: 'IPsec key rotated (SPI 6 -> 7)\n', stderr: '' });
  api.put('kmeshnodeinfos', nodeInfo('node-a', 9));
  t.same(await run('secret', 'create'), { code: 0, stdout: 'IPsec key rotated (SPI 7 -> 10)\n', stderr: '' });
  // Listed in pages, as the daemon lists (this server answers every list in one page, as a watch cache may;
  // test/kube/kmeshctl.test.ts reads more than a page from a real API server).
  const lists = api.requests.filter((r) => r.method === 'GET' && r.path.endsWith('/kmeshnodeinfos'));
  t.ok(lists.length > 0);
  t.ok(
    lists.every((r) => r.query.limit === '500'),
    'every list of KmeshNodeInfo objects asks for pages of 500',
  );
});

t.test('a cluster without the KmeshNodeInfo CRD starts at SPI 1', async (t) => {
  const { api, run } = await startCluster(t);
  api.failNext({
    method: 'GET',
    path: '/apis/kmesh.net/v1alpha1/',
    status: 404,
    message: 'the server could not find the requested resource',
  });
  t.same(await run('secret', 'create'), { code: 0, stdout: 'IPsec secret created (SPI 1)\n', stderr: '' });
});

t.test('two creates at the same moment end two SPIs higher with distinct SPIs', async (t) => {
  const { api, run } = await startCluster(t);
  await run('secret', 'create');
  // The first write to arrive is held back, so the other create reads the same version and writes first.
  api.delayNext({ method: 'PUT', delayMs: 500 });
  const [a, b] = await Promise.all([run('secret', 'create'), run('secret', 'create')]);
  t.equal(a.code, 0);
  t.equal(b.code, 0);
  const outputs = [a.stdout, b.stdout].sort();
  t.same(outputs, ['IPsec key rotated (SPI 1 -> 2)\n', 'IPsec key rotated (SPI 2 -> 3)\n']);
  t.equal(decodeIpsecPayload(secretPayload(api) ?? '').spi, 3);
  t.ok(
    api.requests.some((r) => r.method === 'PUT' && r.status === 409),
    'the race really happened (a 409 was retried)',
  );
});

t.test('five creates racing on a fresh cluster hand out SPIs 1..5 exactly once', async (t) => {
  const { api, run } = await startCluster(t);
  const results = await Promise.all([1, 2, 3, 4, 5].map(() => run('secret', 'create')));
  t.same(
    results.map((r) => r.code),
    [0, 0, 0, 0, 0],
  );
  const spis = results.map((r) => Number(/SPI (?:\d+ -> )?(\d+)\)/.exec(r.stdout)?.[1])).sort();
  t.same(spis, [1, 2, 3, 4, 5]);
  t.equal(decodeIpsecPayload(secretPayload(api) ?? '').spi, 5);
  t.equal(results.filter((r) => r.stdout.startsWith('IPsec secret created')).length, 1, 'exactly one created it');
});

t.test('bad keys are refused before anything is sent, with one line and exit 2', async (t) => {
  const { api, run } = await startCluster(t);
  await run('secret', 'create', '--key', SPEC_HEX);
  const requestsBefore = api.requests.length;
  const cases: [string[], string][] = [
    [
      ['secret', 'create', '--key', 'zz' + SPEC_HEX.slice(2)],
      "error: invalid --key: key is not hex: character 'z' at position 1 is not a hex digit (0-9, a-f); nothing was changed\n",
    ],
    [
      ['secret', 'create', '--key', SPEC_HEX.slice(1)],
      'error: invalid --key: key has an odd number of hex digits (71): every byte takes two digits; nothing was changed\n',
    ],
    [
      ['secret', 'create', '--key', SPEC_HEX.slice(8)],
      'error: invalid --key: key is 32 bytes (64 hex digits), need 36 bytes (72 hex digits): 32-byte AES-256 key + 4-byte salt; nothing was changed\n',
    ],
    [
      ['secret', 'create', '--key', ''],
      'error: invalid --key: key is empty: give 72 hex digits (36 bytes), or omit --key; nothing was changed\n',
    ],
    [
      ['secret', '--key='],
      'error: invalid --key: key is empty: give 72 hex digits (36 bytes), or omit --key; nothing was changed\n',
    ],
  ];
  for (const [args, stderr] of cases) {
    t.same(await run(...args), { code: 2, stdout: '', stderr }, args.join(' '));
  }
  t.equal(api.requests.length, requestsBefore, 'no request reached the API server');
  t.equal(secretPayload(api), SPEC_PAYLOAD, 'secret unchanged');
});

t.test('API server trouble gives one line naming the problem and what to do, and changes nothing', async (t) => {
  const { api, run, dir, env } = await startCluster(t);
  await run('secret', 'create', '--key', SPEC_HEX);
  const url = api.url;

  t.test('unauthorized (401)', async (t) => {
    const result = await run('--context', 'bad-token', 'secret', 'create');
    t.equal(result.code, 1);
    t.equal(
      result.stderr,
      `error: cannot read Secret kmesh-system/kmesh-ipsec: the API server at ${url} rejected the credentials (401 Unauthorized); refresh the token or certificate in your kubeconfig, or pick another --context\n`,
    );
    t.equal(result.stdout, '');
  });

  t.test('forbidden (403), with the server’s own explanation', async (t) => {
    for (const args of [
      ['secret', 'create'],
      ['secret', 'get'],
      ['secret', 'delete'],
    ]) {
      const result = await run('--context', 'forbidden', ...args);
      t.equal(result.code, 1, args.join(' '));
      t.match(
        result.stderr,
        /^error: cannot (read|delete) Secret kmesh-system\/kmesh-ipsec: permission denied \(403 Forbidden\): secrets "kmesh-ipsec" is forbidden: User "mallory" cannot (get|delete) resource "secrets" in API group "" in the namespace "kmesh-system"; ask for RBAC access or use another --context\n$/,
      );
    }
  });

  t.test('server error on the write (500)', async (t) => {
    api.failNext({ method: 'PUT', status: 500, message: 'etcdserver: request timed out' });
    const result = await run('secret', 'create');
    t.equal(result.code, 1);
    t.equal(
      result.stderr,
      `error: cannot update Secret kmesh-system/kmesh-ipsec: the API server at ${url} failed (500): etcdserver: request timed out; try again, check the control plane\n`,
    );
  });

  t.test('no answer within --timeout', async (t) => {
    api.failNext({ method: 'GET', status: 500, delayMs: 2000 });
    const result = await run('--timeout', '0.3', 'secret', 'get');
    t.equal(result.code, 1);
    t.equal(
      result.stderr,
      `error: cannot read Secret kmesh-system/kmesh-ipsec: the API server at ${url} did not answer in time; check the network path and the server address\n`,
    );
  });

  t.test('connection dropped', async (t) => {
    api.failNext({ method: 'GET', drop: true });
    const result = await run('secret', 'get');
    t.equal(result.code, 1);
    t.equal(
      result.stderr,
      `error: cannot read Secret kmesh-system/kmesh-ipsec: the API server at ${url} dropped the connection; try again\n`,
    );
  });

  t.test('untrusted certificate (no CA in the kubeconfig)', async (t) => {
    const noCa = api.writeKubeconfig(path.join(dir, 'kubeconfig-no-ca'), { token: TOKEN, caData: null });
    const result = await kmeshctl(['--kubeconfig', noCa, 'secret', 'get'], env);
    t.equal(result.code, 1);
    t.match(
      result.stderr,
      new RegExp(
        `^error: cannot read Secret kmesh-system/kmesh-ipsec: TLS verification of the API server at ${url} failed \\((UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_GET_ISSUER_CERT_LOCALLY)\\); check certificate-authority\\(-data\\) and the server name in your kubeconfig\\n$`,
      ),
    );
  });

  t.test('namespace that does not exist', async (t) => {
    const result = await run('--namespace', 'nowhere', 'secret', 'create');
    t.equal(result.code, 1);
    t.equal(
      result.stderr,
      'error: cannot create Secret nowhere/kmesh-ipsec: namespace nowhere does not exist; create it (kubectl create namespace nowhere) or pass --namespace\n',
    );
  });

  t.test('nothing of the above changed the secret', (t) => {
    t.equal(secretPayload(api), SPEC_PAYLOAD);
    t.notOk(
      api.requests.some(
        (r) => r.method !== 'GET' && r.status >= 200 && r.status < 300 && r.path.includes('kmesh-system/secrets/'),
      ),
    );
    t.end();
  });

  t.test('API server down (connection refused)', async (t) => {
    await api.stop();
    const result = await run('secret', 'create');
    t.equal(result.code, 1);
    t.equal(
      result.stderr,
      `error: cannot read Secret kmesh-system/kmesh-ipsec: connection to the API server at ${url} refused; is the cluster running and is the server address in your kubeconfig right?\n`,
    );
    await api.start();
    t.equal(api.url, url, 'restarted on the same port');
    t.equal(secretPayload(api), SPEC_PAYLOAD);
  });
});

t.test(
  'kubeconfig comes from --kubeconfig, $KUBECONFIG, ~/.kube/config or the in-cluster service account',
  async (t) => {
    const { api, dir, kubeconfig } = await startCluster(t);
    const home = path.join(dir, 'home');

    const viaEnv = await kmeshctl(['secret', 'create'], {
      HOME: home,
      KUBECONFIG: `${path.join(dir, 'missing')}:${kubeconfig}`,
    });
    t.same(
      viaEnv,
      { code: 0, stdout: 'IPsec secret created (SPI 1)\n', stderr: '' },
      '$KUBECONFIG (missing files skipped)',
    );

    fs.mkdirSync(path.join(home, '.kube'), { recursive: true });
    fs.copyFileSync(kubeconfig, path.join(home, '.kube', 'config'));
    t.same(
      await kmeshctl(['secret', 'create'], { HOME: home }),
      { code: 0, stdout: 'IPsec key rotated (SPI 1 -> 2)\n', stderr: '' },
      '~/.kube/config',
    );

    const podRoot = path.join(dir, 'pod');
    const podEnv = writeServiceAccount(podRoot, {
      server: api.url,
      token: TOKEN,
      caData: api.caPem,
      namespace: 'kmesh-system',
    });
    const inCluster = await kmeshctl(
      ['secret', 'create'],
      { HOME: path.join(dir, 'nohome'), ...podEnv },
      { inClusterRoot: podRoot },
    );
    t.same(inCluster, { code: 0, stdout: 'IPsec key rotated (SPI 2 -> 3)\n', stderr: '' }, 'in-cluster');

    const none = await kmeshctl(
      ['secret', 'get'],
      { HOME: path.join(dir, 'nohome') },
      { inClusterRoot: path.join(dir, 'nopod') },
    );
    t.same(none, {
      code: 1,
      stdout: '',
      stderr:
        'error: no Kubernetes configuration found: pass --kubeconfig FILE, set KUBECONFIG, create ~/.kube/config, or run inside a pod (for a local setup without a cluster use --store dir:PATH)\n',
    });
    const missing = await kmeshctl(['--kubeconfig', path.join(dir, 'nope.yaml'), 'secret', 'get'], { HOME: home });
    t.same(missing.stderr, `error: kubeconfig ${path.join(dir, 'nope.yaml')} does not exist\n`);
    t.equal(missing.code, 1);
    const garbage = path.join(dir, 'garbage.yaml');
    fs.writeFileSync(garbage, 'clusters: [ {');
    t.match(
      (await kmeshctl(['--kubeconfig', garbage, 'secret', 'get'], { HOME: home })).stderr,
      /^error: kubeconfig .*garbage\.yaml is not a valid kubeconfig: .+\n$/,
    );
    t.same(
      (await kmeshctl(['secret', 'get'], { HOME: home, KUBECONFIG: path.join(dir, 'missing') })).stderr,
      `error: KUBECONFIG=${path.join(dir, 'missing')} names no existing file: fix or unset it\n`,
    );
    t.same(
      (await kmeshctl(['--kubeconfig', kubeconfig, '--context', 'nope', 'secret', 'get'], { HOME: home })).stderr,
      `error: context "nope" is not in ${kubeconfig} (contexts: fake, forbidden, bad-token)\n`,
    );
  },
);

t.test('usage mistakes exit 2 with one line; --help helps', async (t) => {
  const { run } = await startCluster(t);
  const usage: [string[], RegExp][] = [
    [['secret', 'get', '--bogus'], /^error: unknown option '--bogus'\n$/],
    [['secret', 'bogus'], /^error: unknown command "secret bogus": use create, get or delete\n$/],
    [['secret', 'create', 'extra'], /^error: unexpected argument "extra": "secret create" takes none\n$/],
    [
      ['secret', 'create', '--key', SPEC_HEX.slice(0, 60), 'my-secret'],
      /^error: unexpected argument after --key that is not hex: quote the key if it contains spaces\n$/,
    ],
    [['secret', 'get', '--key', SPEC_HEX], /^error: --key only applies to "secret create", not "secret get"\n$/],
    [['secret', 'delete', '-k', SPEC_HEX], /^error: --key only applies to "secret create", not "secret delete"\n$/],
    [
      ['secret', 'get', '-o', 'yaml'],
      /^error: option '-o, --output <format>' argument 'yaml' is invalid\. Allowed choices are text, json\.\n$/,
    ],
    [['--store', 'etcd', 'secret', 'get'], /^error: --store: expected "kubernetes" or "dir:PATH", got "etcd"\n$/],
    [
      ['--store', 'dir:/tmp/x', 'secret', 'get'],
      /^error: --kubeconfig only apply to --store kubernetes; the dir store has a fixed layout under \/tmp\/x\n$/,
    ],
    [['--timeout', '-1', 'secret', 'get'], /^error: --timeout must be a positive number of seconds, got "-1"\n$/],
    [['-n', 'Bad_NS', 'secret', 'get'], /^error: --namespace "Bad_NS" is not a valid Kubernetes namespace name\n$/],
  ];
  for (const [args, stderr] of usage) {
    const result = await run(...args);
    t.equal(result.code, 2, args.join(' '));
    t.match(result.stderr, stderr, args.join(' '));
    t.equal(result.stdout, '');
  }
  const bare = await kmeshctl([], {});
  t.equal(bare.code, 2);
  t.match(bare.stderr, /Usage: kmeshctl/);
  const bareSecret = await kmeshctl(['secret'], {});
  t.equal(bareSecret.code, 2);
  t.match(bareSecret.stderr, /Usage: kmeshctl secret/);
  const help = await kmeshctl(['secret', '--help'], {});
  t.equal(help.code, 0);
  t.match(help.stdout, /Examples:\n {2}kmeshctl secret create /);
  t.match(help.stdout, /kmeshctl secret --key=HEX/);
  const topHelp = await kmeshctl(['--help'], {});
  t.equal(topHelp.code, 0);
  t.match(topHelp.stdout, /--store dir:PATH/);
  t.match((await kmeshctl(['secret', 'create', '--help'], {})).stdout, /-k, --key <hex>/);
});

t.test('ipsec status --wait polls the API server cache and confirms with a read of the latest version', async (t) => {
  const { api, run } = await startCluster(t);
  await run('secret', 'create');
  const converged = (name: string) => ({
    ...nodeInfo(name, 1),
    status: { heldSpis: [1], highestSpi: 1, sendSpis: [1], peerCount: 1, failingPeerCount: 0 },
  });
  api.put('kmeshnodeinfos', converged('node-a'));
  api.put('kmeshnodeinfos', { ...converged('node-b'), spec: { ...converged('node-b').spec, spi: 0 } });
  const lists = () => api.requests.filter((r) => r.method === 'GET' && r.path.endsWith('/kmeshnodeinfos'));
  const created = lists().length; // secret create's
  const timedOut = await run('ipsec', 'status', '--wait', '--timeout', '1.5');
  t.equal(timedOut.code, 1);
  t.match(timedOut.stderr, /^error: still not converged on SPI 1: 1 of 2 nodes lag: node-b: advertises SPI none/);
  const polls = lists().slice(created);
  t.ok(polls.length >= 2, `${polls.length} lists`);
  t.ok(
    polls.slice(0, -1).every((r) => r.query.resourceVersion === '0' && r.query.limit === undefined),
    'the polls read the cache',
  );
  t.same(polls.at(-1)?.query, { limit: '500' }, 'the verdict it printed was read at the latest version');

  api.put('kmeshnodeinfos', converged('node-b'));
  const before = lists().length;
  const done = await run('ipsec', 'status', '--wait', '--timeout', '10');
  t.equal(done.code, 0, done.stderr);
  t.match(done.stdout, /converged on SPI 1\n$/);
  t.same(
    lists()
      .slice(before)
      .map((r) => r.query),
    [{ resourceVersion: '0' }, { limit: '500' }],
    'converged in the cache, then confirmed',
  );
});
