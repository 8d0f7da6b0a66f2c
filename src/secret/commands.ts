// What `kmeshctl secret create|get|delete` do, against any SecretStore. Create is a read-modify-write that retries
// when another writer got in between, so concurrent creates each get their own SPI and none is handed out twice.
import type { IpsecKey } from '../model/node.js';
import {
  AEAD_KEY_NAME,
  decodeIpsecPayload,
  encodeIpsecPayload,
  ICV_BITS,
  IpsecPayloadError,
  salvageSpi,
} from './payload.js';
import { clusterKeyStatus, type ClusterKeyStatus } from './cluster-key-status.js';
import { nextSpi } from './rotation.js';
import { StoreConflictError, StoreError } from './store.js';
import type { NodeInfoRead, SecretStore, StoredSecret } from './store.js';

/** `create --key` named the key already in force: rotating to it would reuse it under a new SPI. Nothing changed. */
export class SameKeyError extends Error {
  override readonly name = 'SameKeyError';
}

export type CreateOutcome =
  /** No Secret existed (or only a malformed one with no usable SPI). */
  | { kind: 'created'; spi: number; replacedMalformed: boolean }
  /** A Secret existed: this was a key rotation. */
  | { kind: 'rotated'; previousSpi: number; spi: number };

export interface CreateOptions {
  /** Read-modify-write attempts before giving up (default 20). */
  maxAttempts?: number;
  /** Wait before attempt `n` (n >= 2) after a conflict; default a short random backoff. */
  backoff?: (attempt: number) => Promise<void>;
}

const defaultBackoff = (attempt: number) =>
  new Promise<void>((resolve) => setTimeout(resolve, Math.random() * 10 * Math.min(attempt, 10)));

/**
 * The Secret and the advertised SPIs, asked for at the same time (one round trip instead of two). When both fail,
 * the Secret's error is the one reported, as when they were asked one after the other.
 */
async function readState(store: SecretStore): Promise<{ current: StoredSecret | undefined; advertised: number[] }> {
  const [current, advertised] = await Promise.allSettled([store.read(), store.advertisedSpis()]);
  if (current.status === 'rejected') throw current.reason;
  if (advertised.status === 'rejected') throw advertised.reason;
  return { current: current.value, advertised: advertised.value };
}

/**
 * Stores `key` as the next key version: SPI 1 on a fresh cluster, else above the current Secret's SPI and every SPI
 * a KmeshNodeInfo still advertises. Replaces a malformed Secret (going above its SPI if it still has one).
 * SameKeyError when `key` is the key already in force: Kmesh derives every SA key from the PSK and the node pair
 * alone, so the new SAs would use the old ones' keys with sequence numbers (and so GCM IVs) starting over.
 */
export async function createOrRotateSecret(
  store: SecretStore,
  key: Buffer,
  options: CreateOptions = {},
): Promise<CreateOutcome> {
  const maxAttempts = options.maxAttempts ?? 20;
  const backoff = options.backoff ?? defaultBackoff;
  for (let attempt = 1; attempt <= maxAttempts; attempt += 1) {
    if (attempt > 1) await backoff(attempt);
    const { current, advertised } = await readState(store);
    let previousSpi: number | undefined;
    let decodedKey: Buffer | undefined;
    let malformed = false;
    if (current !== undefined) {
      try {
        ({ spi: previousSpi, key: decodedKey } = decodeIpsecPayload(current.payload ?? ''));
      } catch (err) {
        if (!(err instanceof IpsecPayloadError)) throw err;
        malformed = true;
        previousSpi = current.payload === undefined ? undefined : salvageSpi(current.payload);
      }
    }
    if (previousSpi !== undefined && decodedKey?.equals(key) === true) {
      throw new SameKeyError(
        `it is the key already in force (SPI ${previousSpi}); a rotation must change the key (the same key under ` +
          'a new SPI restarts ESP sequence numbers, so AES-GCM nonces repeat)',
      );
    }
    const spi = nextSpi(previousSpi, advertised);
    const payload = encodeIpsecPayload({ spi, aeadKeyName: AEAD_KEY_NAME, key, icvBits: ICV_BITS });
    try {
      if (current === undefined) {
        await store.create(payload);
        return { kind: 'created', spi, replacedMalformed: false };
      }
      await store.replace(current, payload);
      return previousSpi === undefined
        ? { kind: 'created', spi, replacedMalformed: malformed }
        : { kind: 'rotated', previousSpi, spi };
    } catch (err) {
      if (!(err instanceof StoreConflictError)) throw err;
    }
  }
  throw new StoreError(
    `gave up after ${maxAttempts} attempts: ${store.location} kept changing while we wrote it ` +
      '(many writers at once?); run the command again',
  );
}

/** The Secret and its decoded key, for `get`. */
export interface SecretWithKey {
  secret: StoredSecret;
  key: IpsecKey;
}

/**
 * Reads and decodes the Secret; StoreError if there is none or it is malformed, saying how to fix it with
 * `kmeshctl`: the command line that reaches this store (e.g. `kmeshctl --store dir:/srv/kmesh`).
 */
export async function readSecret(store: SecretStore, kmeshctl = 'kmeshctl'): Promise<SecretWithKey> {
  const secret = await store.read();
  if (secret === undefined) {
    throw new StoreError(
      `no IPsec secret: ${store.location} does not exist; create one with: ${kmeshctl} secret create`,
    );
  }
  const fix = `replace it with: ${kmeshctl} secret create`;
  if (secret.payload === undefined) {
    throw new StoreError(`${store.location} is malformed: it has no "ipSec" data key; ${fix}`);
  }
  try {
    return { secret, key: decodeIpsecPayload(secret.payload) };
  } catch (err) {
    if (err instanceof IpsecPayloadError) {
      throw new StoreError(`${store.location} is malformed: ${err.message}; ${fix}`);
    }
    throw err;
  }
}

/** Deletes the Secret; StoreError if there is none. */
export async function deleteSecret(store: SecretStore): Promise<void> {
  if (!(await store.delete())) {
    throw new StoreError(`nothing to delete: ${store.location} does not exist`);
  }
}

/**
 * The cluster-wide key status (`kmeshctl ipsec status`): the Secret's SPI (none when there is no Secret; a
 * malformed one is an error) and every KmeshNodeInfo (`read` of them: SecretStore.nodeInfoObjects), read at the same time.
 */
export async function readClusterKeyStatus(
  store: SecretStore,
  read: NodeInfoRead = 'latest',
): Promise<ClusterKeyStatus> {
  const [secret, objects] = await Promise.allSettled([store.read(), store.nodeInfoObjects(read)]);
  if (secret.status === 'rejected') throw secret.reason;
  if (objects.status === 'rejected') throw objects.reason;
  const spi = secret.value === undefined ? undefined : (await readSecret(store)).key.spi;
  return clusterKeyStatus(spi, objects.value);
}
