// NODE_EXTRA_CA_CERTS for a process that was started without it. Node 20 reads and parses that file (and its
// own ~140 bundled root certificates) at every start, whether or not the process makes a TLS connection, and a
// request that names its own CA (nearly every kubeconfig does) never uses either. So the executables in bin/
// start Node without the variable and pass its value on as KMESH_NODE_EXTRA_CA_CERTS; here it is put back
// exactly where Node would have used it: a connection whose kubeconfig names no CA trusts Node's bundled roots
// plus the certificates of that file, as Node itself would have.
import fs from 'node:fs';
import type https from 'node:https';
import tls from 'node:tls';

/** The variable the executables in bin/ move NODE_EXTRA_CA_CERTS to. */
export const DEFERRED_EXTRA_CA_ENV = 'KMESH_NODE_EXTRA_CA_CERTS';

let cached: { file: string; ca: string[] } | undefined;

/**
 * Sets `options.ca` to Node's default trust plus the deferred extra certificates, when the kubeconfig gave no CA
 * and the process was started with the variable moved aside. Otherwise leaves `options` as it is.
 */
export function applyDeferredExtraCa(options: https.RequestOptions, env: NodeJS.ProcessEnv = process.env): void {
  const file = env[DEFERRED_EXTRA_CA_ENV];
  if (options.ca !== undefined || file === undefined || file === '' || env.NODE_EXTRA_CA_CERTS !== undefined) return;
  if (cached?.file !== file) {
    let pem: string;
    try {
      pem = fs.readFileSync(file, 'utf8');
    } catch (err) {
      throw new Error(`NODE_EXTRA_CA_CERTS: cannot read ${file}: ${(err as Error).message}`, { cause: err });
    }
    cached = { file, ca: [...tls.rootCertificates, pem] };
  }
  options.ca = cached.ca;
}
