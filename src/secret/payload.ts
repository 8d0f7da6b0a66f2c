// The `ipSec` payload of the Opaque Secret kmesh-system/kmesh-ipsec, both ways: IpsecKey -> the exact JSON
// text Kmesh writes (`{"spi":N,"aeadKeyName":"rfc4106(gcm(aes))","aeadKey":"<base64 of 36 bytes>","length":128}`,
// keys in that order), and JSON text (from the Secret or the file the kubelet projects) -> a validated IpsecKey.
// Validation is plain code rather than a schema library: kmeshctl loads this module on every run, and a
// four-field check is not worth the startup cost of one.
import type { IpsecKey } from '../model/node.js';
import { KEY_BYTES } from './key-hex.js';

// The key invariants are the model's (src/model/ipsec-key.ts), shared with the key history and the codec.
import { AEAD_KEY_NAME, ICV_BITS, SPI_MAX as MAX_SPI } from '../model/ipsec-key.js';
export { AEAD_KEY_NAME, ICV_BITS, MAX_SPI };

/** The payload is not a valid ipSec document; the message names the field and the problem. */
export class IpsecPayloadError extends Error {
  override readonly name = 'IpsecPayloadError';
}

/**
 * Encodes a key version as the Secret's `ipSec` value: `{"spi","aeadKeyName","aeadKey","length"}` in this order,
 * aeadKey as padded standard base64 (byte-identical to what Kmesh's Go code produces).
 */
export function encodeIpsecPayload(key: IpsecKey): string {
  return JSON.stringify({
    spi: key.spi,
    aeadKeyName: key.aeadKeyName,
    aeadKey: key.key.toString('base64'),
    length: key.icvBits,
  });
}

const STRICT_BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** One field's check: the problems with `value` (empty when valid). Messages never quote key material. */
type FieldCheck = (value: unknown) => string[];

function checkSpi(value: unknown): string[] {
  if (typeof value !== 'number' || !Number.isFinite(value)) return ['must be a number'];
  if (!Number.isInteger(value)) return ['must be an integer'];
  const problems: string[] = [];
  // A whole number beyond 2^53 is not exact either; the range problems are still worth naming next to it.
  if (!Number.isSafeInteger(value)) problems.push('must be an integer');
  if (value < 1) problems.push('must be at least 1');
  if (value > MAX_SPI) problems.push(`must be at most ${MAX_SPI}`);
  return problems;
}

function checkAeadKeyName(value: unknown): string[] {
  return value === AEAD_KEY_NAME ? [] : [`must be "${AEAD_KEY_NAME}", the only supported algorithm`];
}

/** The key bytes of a valid aeadKey. */
function aeadKeyBytes(text: string): Buffer {
  return Buffer.from(text, 'base64');
}

function checkAeadKey(value: unknown): string[] {
  if (typeof value !== 'string') return ['must be a base64 string'];
  if (!STRICT_BASE64.test(value)) return ['is not valid padded base64'];
  const length = aeadKeyBytes(value).length;
  return length === KEY_BYTES ? [] : [`decodes to ${length} bytes, need ${KEY_BYTES}`];
}

function checkLength(value: unknown): string[] {
  return value === ICV_BITS ? [] : [`must be ${ICV_BITS} (ICV bits)`];
}

/** The fields in the order their problems are reported. */
const FIELDS: [name: string, check: FieldCheck][] = [
  ['spi', checkSpi],
  ['aeadKeyName', checkAeadKeyName],
  ['aeadKey', checkAeadKey],
  ['length', checkLength],
];

/**
 * Decodes and validates an `ipSec` payload (JSON text, as stored in the Secret after Kubernetes' own base64 layer
 * is removed, or as read from the projected file). Throws IpsecPayloadError with a one-line reason such as
 * `aeadKey decodes to 32 bytes, need 36` or `spi must be an integer`. Keys never appear in messages.
 */
export function decodeIpsecPayload(text: string | Uint8Array): IpsecKey {
  const source = typeof text === 'string' ? text : Buffer.from(text).toString('utf8');
  if (source.trim() === '') throw new IpsecPayloadError('payload is empty');
  let document: unknown;
  try {
    document = JSON.parse(source);
  } catch {
    // JSON.parse's message quotes the text around the error: with a bare key pasted into the Secret that is key
    // material, so it is never passed on.
    throw new IpsecPayloadError(
      looksLikeBareKey(source)
        ? 'payload is not JSON: it looks like a bare key (hex or base64); the secret must hold the JSON ' +
            'document that kmeshctl secret create writes'
        : 'payload is not JSON',
    );
  }
  if (typeof document !== 'object' || document === null || Array.isArray(document)) {
    throw new IpsecPayloadError('payload is not a JSON object');
  }
  const fields = document as Record<string, unknown>;
  const problems = FIELDS.flatMap(([name, check]) => {
    if (!(name in fields)) return [`${name} is missing`];
    return check(fields[name]).map((problem) => `${name} ${problem}`);
  });
  if (problems.length > 0) throw new IpsecPayloadError(problems.join('; '));
  return {
    spi: fields.spi as number,
    aeadKeyName: AEAD_KEY_NAME,
    key: aeadKeyBytes(fields.aeadKey as string),
    icvBits: ICV_BITS,
  };
}

/** Hex or base64 long enough to be a key (36 bytes are 72 hex digits, 48 base64 characters). */
function looksLikeBareKey(source: string): boolean {
  const text = source.replace(/\s+/g, '');
  return (
    (/^[0-9a-fA-F]+$/.test(text) && text.length >= 32) || (/^[A-Za-z0-9+/]+={0,2}$/.test(text) && text.length >= 24)
  );
}

/**
 * Reads just the SPI of a payload that may be otherwise invalid (used when overwriting a malformed Secret, so the
 * next SPI still goes above it). Undefined when no usable SPI is present.
 */
export function salvageSpi(text: string): number | undefined {
  try {
    const document: unknown = JSON.parse(text);
    if (typeof document !== 'object' || document === null) return undefined;
    const spi = (document as Record<string, unknown>).spi;
    return typeof spi === 'number' && Number.isInteger(spi) && spi >= 1 && spi <= MAX_SPI ? spi : undefined;
  } catch {
    return undefined;
  }
}
