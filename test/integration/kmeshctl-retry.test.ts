// kmeshctl retries what the API server says is retryable, within --timeout: 429 Too Many Requests with a
// Retry-After (a real kube-apiserver answers so right after a CRD becomes Established: "storage is
// (re)initializing") and 503 Service Unavailable. Anything else, and a 429 without Retry-After, fails at once.
// Driven in-process against the fake API server's fault injection.
import t from 'tap';
import { decodeIpsecPayload } from '../../src/secret/payload.js';
import { secretPayload, startCluster } from '../fixtures/kmeshctl-harness.js';
import type { FakeApiServer } from '../fixtures/fake-apiserver.js';

const SECRET_PATH = '/api/v1/namespaces/kmesh-system/secrets';
const INITIALIZING = 'storage is (re)initializing';

function answers(api: FakeApiServer, method: string, path: string): number[] {
  return api.requests.filter((r) => r.method === method && r.path.startsWith(path)).map((r) => r.status);
}

t.test('create succeeds after transient 429s that carry Retry-After', async (t) => {
  const { api, run } = await startCluster(t);
  api.failNext({ method: 'GET', path: `${SECRET_PATH}/kmesh-ipsec`, status: 429, retryAfter: 1, times: 2 });
  api.failNext({ method: 'GET', path: '/kmeshnodeinfos', status: 429, retryAfter: 1, message: INITIALIZING });
  t.same(await run('secret', 'create'), { code: 0, stdout: 'IPsec secret created (SPI 1)\n', stderr: '' });
  t.same(answers(api, 'GET', `${SECRET_PATH}/kmesh-ipsec`), [429, 429, 404], 'the read was retried twice');
  t.same(answers(api, 'GET', '/apis/kmesh.net/'), [429, 200], 'the KmeshNodeInfo list was retried once');
  t.equal(decodeIpsecPayload(secretPayload(api) ?? '').spi, 1);
});

t.test('503s are retried, with or without Retry-After, for reads and writes', async (t) => {
  const { api, run } = await startCluster(t);
  await run('secret', 'create');
  api.failNext({ method: 'PUT', status: 503, times: 2 });
  api.failNext({ method: 'GET', path: `${SECRET_PATH}/kmesh-ipsec`, status: 503, retryAfter: 0 });
  t.same(await run('secret', 'create'), { code: 0, stdout: 'IPsec key rotated (SPI 1 -> 2)\n', stderr: '' });
  t.same(answers(api, 'PUT', SECRET_PATH), [503, 503, 200]);
  api.failNext({ method: 'DELETE', status: 503, retryAfter: 0 });
  t.same(await run('secret', 'delete'), {
    code: 0,
    stdout: 'IPsec secret deleted (Secret kmesh-system/kmesh-ipsec)\n',
    stderr: '',
  });
  t.same(answers(api, 'DELETE', SECRET_PATH), [503, 200]);
});

t.test('429s that last past --timeout fail with one line and change nothing', async (t) => {
  const { api, run } = await startCluster(t);
  api.failNext({ method: 'GET', status: 429, retryAfter: 1, message: INITIALIZING, times: Infinity });
  const result = await run('--timeout', '2.5', 'secret', 'create');
  t.equal(result.code, 1);
  t.equal(result.stdout, '');
  t.match(
    result.stderr,
    /^error: cannot read Secret kmesh-system\/kmesh-ipsec: the API server is overloaded \(429 Too Many Requests\): storage is \(re\)initializing \(still so after \d+ attempts within --timeout\); try again shortly or raise --timeout\n$/,
  );
  const reads = answers(api, 'GET', `${SECRET_PATH}/kmesh-ipsec`);
  t.ok(reads.length >= 2 && reads.every((s) => s === 429), `retried until the deadline (${reads.length} reads)`);
  t.notOk(
    api.requests.some((r) => r.method !== 'GET'),
    'nothing was written',
  );
  t.equal(secretPayload(api), undefined);
});

t.test('503s that last past --timeout name the server and what to do', async (t) => {
  const { api, run } = await startCluster(t);
  await run('secret', 'create');
  api.failNext({ method: 'GET', path: `${SECRET_PATH}/kmesh-ipsec`, status: 503, times: Infinity });
  const result = await run('--timeout', '1', 'secret', 'get');
  const attempts = answers(api, 'GET', `${SECRET_PATH}/kmesh-ipsec`).filter((s) => s === 503).length;
  t.ok(attempts >= 2, `retried with backoff until the deadline (${attempts} attempts)`);
  t.equal(result.code, 1);
  t.equal(
    result.stderr,
    `error: cannot read Secret kmesh-system/kmesh-ipsec: the API server at ${api.url} is unavailable (503): ` +
      `injected failure (ServiceUnavailable) (still so after ${attempts} attempts within --timeout); ` +
      'try again shortly or raise --timeout, check the control plane\n',
  );
});

t.test('a 429 without Retry-After and other errors are not retried', async (t) => {
  const { api, run } = await startCluster(t);
  api.failNext({ method: 'GET', path: `${SECRET_PATH}/kmesh-ipsec`, status: 429, message: 'slow down' });
  const result = await run('secret', 'get');
  t.equal(result.code, 1);
  t.equal(
    result.stderr,
    'error: cannot read Secret kmesh-system/kmesh-ipsec: the API server is overloaded (429 Too Many Requests): ' +
      'slow down; try again shortly or raise --timeout\n',
  );
  t.same(answers(api, 'GET', `${SECRET_PATH}/kmesh-ipsec`), [429], 'asked once');
  api.failNext({ method: 'GET', path: `${SECRET_PATH}/kmesh-ipsec`, status: 500, retryAfter: 0 });
  t.equal((await run('secret', 'get')).code, 1);
  t.same(answers(api, 'GET', `${SECRET_PATH}/kmesh-ipsec`), [429, 500], 'a 500 is final even with Retry-After');
});
