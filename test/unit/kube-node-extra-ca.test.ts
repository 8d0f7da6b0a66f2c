// The NODE_EXTRA_CA_CERTS hand-over of bin/kmeshctl.js: the deferred file is trusted, with Node's bundled
// roots, only where Node would have used it (no CA in the kubeconfig, the variable moved aside).
import path from 'node:path';
import tls from 'node:tls';
import t from 'tap';
import { applyDeferredExtraCa, DEFERRED_EXTRA_CA_ENV } from '../../src/kube/node-extra-ca.js';

const PEM = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';

t.test('no CA in the kubeconfig: Node default roots plus the deferred file', (t) => {
  const file = path.join(t.testdir({ 'extra.pem': PEM }), 'extra.pem');
  const options: { ca?: string | string[] } = {};
  applyDeferredExtraCa(options, { [DEFERRED_EXTRA_CA_ENV]: file });
  t.same(options.ca, [...tls.rootCertificates, PEM]);
  t.end();
});

t.test('left alone: the kubeconfig names a CA, the variable is unset or empty, or Node kept it', (t) => {
  const file = path.join(t.testdir({ 'extra.pem': PEM }), 'extra.pem');
  const own = { ca: 'kubeconfig CA' };
  applyDeferredExtraCa(own, { [DEFERRED_EXTRA_CA_ENV]: file });
  t.equal(own.ca, 'kubeconfig CA');
  for (const env of [
    {},
    { [DEFERRED_EXTRA_CA_ENV]: '' },
    { [DEFERRED_EXTRA_CA_ENV]: file, NODE_EXTRA_CA_CERTS: file },
  ]) {
    const options: { ca?: string | string[] } = {};
    applyDeferredExtraCa(options, env);
    t.equal(options.ca, undefined, JSON.stringify(env));
  }
  t.end();
});

t.test('an unreadable file is one clear error, naming the variable and the path', (t) => {
  t.throws(() => applyDeferredExtraCa({}, { [DEFERRED_EXTRA_CA_ENV]: '/nonexistent/ca.pem' }), {
    message: /^NODE_EXTRA_CA_CERTS: cannot read \/nonexistent\/ca\.pem: ENOENT/,
  });
  t.end();
});
