// Parses the pre-shared key a user types as hex (`kmeshctl secret create --key HEX`) into its 36 bytes.
// Whitespace anywhere is ignored, so the output of `xxd -p -c 64` (which may wrap across lines) is accepted. An
// all-zero AES key (`head -c 36 /dev/zero | xxd -p`, a forgotten placeholder) is refused.

// rfc4106(gcm(aes)) key material (32-byte AES-256 key + 4-byte GCM salt): the model's AEAD_KEY_BYTES.
import { AEAD_KEY_BYTES as KEY_BYTES } from '../model/ipsec-key.js';
export { KEY_BYTES };

/** The AES-256 part of the key; the last 4 bytes are the GCM salt. */
const AES_KEY_BYTES = 32;

/** The key text was not 36 bytes of hex; the message says what was wrong. */
export class InvalidKeyError extends Error {
  override readonly name = 'InvalidKeyError';
}

const HEX_DIGIT = /^[0-9a-fA-F]$/;
const WHITESPACE = /^\s$/;

/** Shows a character so that invisible or control characters stay readable in a one-line error. */
function showChar(ch: string): string {
  const code = ch.codePointAt(0) ?? 0;
  return code < 0x20 || code === 0x7f ? `U+${code.toString(16).padStart(4, '0').toUpperCase()}` : `'${ch}'`;
}

/**
 * Decodes a hex key (case-insensitive, whitespace and line breaks allowed anywhere) to exactly KEY_BYTES bytes.
 * Throws InvalidKeyError naming the problem: empty, a non-hex character (and its 1-based position in the input),
 * an odd number of digits, the wrong byte count, or an AES key of all zeros (a placeholder, never a secret).
 */
export function parseHexKey(text: string): Buffer {
  let digits = '';
  let position = 0;
  for (const ch of text) {
    position += 1;
    if (WHITESPACE.test(ch)) continue;
    if (!HEX_DIGIT.test(ch)) {
      throw new InvalidKeyError(
        `key is not hex: character ${showChar(ch)} at position ${position} is not a hex digit (0-9, a-f)`,
      );
    }
    digits += ch;
  }
  if (digits.length === 0) {
    throw new InvalidKeyError(`key is empty: give ${KEY_BYTES * 2} hex digits (${KEY_BYTES} bytes), or omit --key`);
  }
  if (digits.length % 2 !== 0) {
    throw new InvalidKeyError(`key has an odd number of hex digits (${digits.length}): every byte takes two digits`);
  }
  const bytes = digits.length / 2;
  if (bytes !== KEY_BYTES) {
    throw new InvalidKeyError(
      `key is ${bytes} bytes (${digits.length} hex digits), need ${KEY_BYTES} bytes (${KEY_BYTES * 2} hex digits): ` +
        '32-byte AES-256 key + 4-byte salt',
    );
  }
  const key = Buffer.from(digits, 'hex');
  if (key.subarray(0, AES_KEY_BYTES).every((byte) => byte === 0)) {
    throw new InvalidKeyError(
      `key's AES-256 part (its first ${AES_KEY_BYTES} bytes) is all zeros, which anyone can guess: ` +
        'give a random key, or omit --key for one from the OS CSPRNG',
    );
  }
  return key;
}
