// The `ipSec` payload of the kmesh-ipsec Secret (SPEC §A1), both ways: IpsecKey -> the exact JSON text Kmesh
// writes, and JSON text (from the Secret or the file the kubelet projects) -> a validated IpsecKey.
import { z } from 'zod';
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

// Messages never quote the key material itself.
const payloadSchema = z.object({
  spi: z
    .number({ error: 'must be a number' })
    .int({ error: 'must be an integer' })
    .min(1, { error: 'must be at least 1' })
    .max(MAX_SPI, { error: `must be at most ${MAX_SPI}` }),
  aeadKeyName: z.literal(AEAD_KEY_NAME, { error: `must be "${AEAD_KEY_NAME}", the only supported algorithm` }),
  aeadKey: z.string({ error: 'must be a base64 string' }).transform((text, ctx) => {
    if (!STRICT_BASE64.test(text)) {
      ctx.addIssue({ code: 'custom', message: 'is not valid padded base64' });
      return z.NEVER;
    }
    const bytes = Buffer.from(text, 'base64');
    if (bytes.length !== KEY_BYTES) {
      ctx.addIssue({ code: 'custom', message: `decodes to ${bytes.length} bytes, need ${KEY_BYTES}` });
      return z.NEVER;
    }
    return bytes;
  }),
  length: z.literal(ICV_BITS, { error: `must be ${ICV_BITS} (ICV bits)` }),
});

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
  } catch (err) {
    throw new IpsecPayloadError(`payload is not JSON (${(err as Error).message})`);
  }
  if (typeof document !== 'object' || document === null || Array.isArray(document)) {
    throw new IpsecPayloadError('payload is not a JSON object');
  }
  const parsed = payloadSchema.safeParse(document);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => {
      const field = issue.path.map(String).join('.');
      const top = issue.path[0];
      const missing = typeof top === 'string' && !(top in document);
      return missing ? `${field} is missing` : `${field} ${issue.message}`;
    });
    throw new IpsecPayloadError(problems.join('; '));
  }
  const { spi, aeadKeyName, aeadKey, length } = parsed.data;
  return { spi, aeadKeyName, key: aeadKey, icvBits: length };
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
