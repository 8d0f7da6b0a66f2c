// How `kmeshctl secret get` shows a Secret: the configuration with the key in hex (as Kmesh prints it), plus name,
// namespace and creation time; as Kmesh-style text for people or as one JSON object for scripts.
import type { IpsecKey } from '../model/node.js';
import type { StoredSecret } from './store.js';

/** The `-o json` document; field order is stable. */
export interface SecretView {
  name: string;
  namespace: string;
  /** RFC 3339 UTC, or null when the store does not know. */
  creationTimestamp: string | null;
  spi: number;
  aeadKeyName: string;
  /** The 36-byte key in lowercase hex. */
  aeadKey: string;
  length: number;
}

export function secretView(secret: StoredSecret, key: IpsecKey): SecretView {
  return {
    name: secret.name,
    namespace: secret.namespace,
    creationTimestamp: secret.creationTime ? secret.creationTime.toISOString().replace(/\.\d{3}Z$/, 'Z') : null,
    spi: key.spi,
    aeadKeyName: key.aeadKeyName,
    aeadKey: key.key.toString('hex'),
    length: key.icvBits,
  };
}

/** The JSON output: the whole view, indented, newline-terminated. */
export function formatSecretJson(view: SecretView): string {
  return JSON.stringify(view, null, 2) + '\n';
}

/** The default output, laid out like Kmesh's `kmeshctl secret get`, with the configuration as indented JSON. */
export function formatSecretText(view: SecretView): string {
  const created = view.creationTimestamp ? view.creationTimestamp.replace('T', ' ').replace('Z', ' UTC') : 'unknown';
  const config = { spi: view.spi, aeadKeyName: view.aeadKeyName, aeadKey: view.aeadKey, length: view.length };
  return (
    `Secret name: ${view.name}\n` +
    `Namespace: ${view.namespace}\n` +
    `Created: ${created}\n` +
    'IPsec Configuration:\n' +
    JSON.stringify(config, null, 2) +
    '\n'
  );
}
