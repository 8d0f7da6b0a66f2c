// The Retry-After reading of the small Kubernetes REST client (kube/rest.ts): delta-seconds, HTTP dates, garbage.
// The retries themselves are exercised against the fake API server in test/integration/kmeshctl-retry.test.ts.
import t from 'tap';
import { KubeApiError, retryAfterMs } from '../../src/kube/rest.js';
import { describeKubeError, kubeErrorStatus, kubeStatusMessage } from '../../src/kube/errors.js';

t.test('Retry-After as delta-seconds or an HTTP date', (t) => {
  const now = Date.parse('2024-05-01T12:00:00Z');
  t.equal(retryAfterMs('1', now), 1000);
  t.equal(retryAfterMs(' 0 ', now), 0);
  t.equal(retryAfterMs('120', now), 120_000);
  t.equal(retryAfterMs('Wed, 01 May 2024 12:00:05 GMT', now), 5000);
  t.equal(retryAfterMs('Wed, 01 May 2024 11:00:00 GMT', now), 0, 'a date in the past means now');
  t.equal(retryAfterMs(undefined, now), undefined);
  t.equal(retryAfterMs('', now), undefined);
  t.equal(retryAfterMs('soon', now), undefined);
  t.equal(retryAfterMs('-1', now), undefined);
  t.end();
});

t.test('KubeApiError is described like the generated client’s ApiException', (t) => {
  const status = { kind: 'Status', code: 403, message: 'secrets "x" is forbidden\nsecond line' };
  const err = new KubeApiError(403, status, 1);
  t.equal(kubeErrorStatus(err), 403);
  t.equal(kubeStatusMessage(err), 'secrets "x" is forbidden');
  t.equal(
    describeKubeError(err, 'https://h:6443', 'read Secret a/b'),
    'cannot read Secret a/b: permission denied (403 Forbidden): secrets "x" is forbidden; ask for RBAC access or use another --context',
  );
  t.equal(kubeStatusMessage(new KubeApiError(502, '<html>bad gateway</html>', 1)), '<html>bad gateway</html>');
  t.equal(kubeStatusMessage(new KubeApiError(502, undefined, 1)), undefined);
  t.end();
});
