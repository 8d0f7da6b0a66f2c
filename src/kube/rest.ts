// A small JSON client for the Kubernetes REST API over node:http(s), for callers that must start fast (kmeshctl,
// the daemon's Kubernetes source): requests with a deadline, and raw streams for watches (kube/watch.ts). Connection and credentials come from @kubernetes/client-node's KubeConfig
// (applyToHTTPSOptions: CA, client certificates, bearer tokens, exec/oidc/file auth plugins, proxies), so every
// kubeconfig the generated client accepts works here too; only the request itself is ours.
//
// Each request has a deadline (kmeshctl's --timeout): connecting, TLS, the answer and any retries all fit in it. What the
// server says is worth retrying is retried within that deadline: 429 Too Many Requests when it carries a
// Retry-After (the API server sends one for max-in-flight and while its watch cache (re)initializes), and 503
// Service Unavailable (after Retry-After, or a short growing pause). Errors are KubeApiError (HTTP status and the
// Status body, the shape kube/errors.ts describes) or the network error itself.
import http from 'node:http';
import https from 'node:https';
import type { KubeConfig } from '@kubernetes/client-node/dist/config.js';
import { applyDeferredExtraCa } from './node-extra-ca.js';

/** `path` with `query` as its query string (none when the query is empty). */
export function withQuery(path: string, query: Readonly<Record<string, string>>): string {
  const params = new URLSearchParams(query).toString();
  return params === '' ? path : `${path}?${params}`;
}

/** The API server answered with an error status (after any retries). */
export class KubeApiError extends Error {
  override readonly name = 'KubeApiError';
  constructor(
    /** HTTP status. */
    readonly code: number,
    /** The response body: the parsed Status object, or the text when it was not JSON. */
    readonly body: unknown,
    /** Requests made, including retries. */
    readonly attempts: number,
  ) {
    super(`the API server answered ${code}`);
  }
}

export type KubeMethod = 'GET' | 'POST' | 'PUT' | 'DELETE';

export interface KubeRestOptions {
  config: KubeConfig;
  /** API server URL (may carry a path prefix, e.g. behind a proxy). */
  server: string;
  /** Deadline of each request, retries included. */
  timeoutMs: number;
  /** Waits between retries (tests may pass their own); default setTimeout. */
  sleep?: (ms: number) => Promise<void>;
}

interface Answer {
  status: number;
  body: unknown;
  retryAfterMs: number | undefined;
}

const MAX_BACKOFF_MS = 1000;
const FIRST_BACKOFF_MS = 100;

const defaultSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Retry-After as milliseconds: delta-seconds (RFC 9110) or an HTTP date; undefined when absent or unreadable. */
export function retryAfterMs(header: string | undefined, now = Date.now()): number | undefined {
  if (header === undefined || header.trim() === '') return undefined;
  const text = header.trim();
  if (/^[-+]?\d+$/.test(text)) return /^\+?\d+$/.test(text) ? Number(text) * 1000 : undefined;
  const date = Date.parse(text);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

/** The Status body's `details.retryAfterSeconds`, which the API server also puts in the Retry-After header. */
function statusRetryAfterMs(body: unknown): number | undefined {
  const seconds = (body as { details?: { retryAfterSeconds?: unknown } } | null)?.details?.retryAfterSeconds;
  return typeof seconds === 'number' && seconds >= 0 ? seconds * 1000 : undefined;
}

function parseBody(text: string, contentType: string | undefined): unknown {
  if (text === '') return undefined;
  if (contentType !== undefined && !contentType.includes('json')) return text;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

export class KubeRestClient {
  private readonly base: URL;
  private readonly sleep: (ms: number) => Promise<void>;
  /** Connections kept open between requests (one TLS handshake, not one per request); unset behind a proxy. */
  private readonly agent: http.Agent | undefined;

  constructor(private readonly options: KubeRestOptions) {
    this.base = new URL(options.server);
    this.sleep = options.sleep ?? defaultSleep;
    // The proxy agents client-node makes for a proxy-url are used as they come; otherwise our own keep-alive
    // agent, which gets the same TLS settings with each request. Idle kept sockets do not hold the process.
    if (!options.config.getCurrentCluster()?.proxyUrl) {
      this.agent =
        this.base.protocol === 'http:' ? new http.Agent({ keepAlive: true }) : new https.Agent({ keepAlive: true });
    }
  }

  /** `path` is the API path (`/api/v1/...`), optionally with a query string. Resolves to the parsed JSON answer. */
  async request(method: KubeMethod, path: string, body?: unknown): Promise<unknown> {
    const deadline = Date.now() + this.options.timeoutMs;
    const payload = body === undefined ? undefined : JSON.stringify(body);
    for (let attempt = 1; ; attempt += 1) {
      const answer = await this.attempt(method, path, payload, deadline);
      if (answer.status >= 200 && answer.status < 300) return answer.body;
      const wait = this.retryWait(answer, attempt);
      if (wait === undefined || Date.now() + wait >= deadline) {
        throw new KubeApiError(answer.status, answer.body, attempt);
      }
      await this.sleep(wait);
    }
  }

  /** How long to wait before retrying this answer, or undefined when it is final. */
  private retryWait(answer: Answer, attempt: number): number | undefined {
    const told = answer.retryAfterMs ?? statusRetryAfterMs(answer.body);
    if (answer.status === 429) return told;
    if (answer.status === 503) return told ?? Math.min(FIRST_BACKOFF_MS * 2 ** (attempt - 1), MAX_BACKOFF_MS);
    return undefined;
  }

  private url(path: string): URL {
    const prefix = this.base.pathname.replace(/\/+$/, '');
    return new URL(prefix + path, this.base);
  }

  private async attempt(method: KubeMethod, path: string, payload: string | undefined, deadline: number) {
    const signal = AbortSignal.timeout(Math.max(1, deadline - Date.now()));
    const res = await this.send(method, path, payload, signal);
    return new Promise<Answer>((resolve, reject) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('error', reject);
      res.on('end', () => {
        resolve({
          status: res.statusCode ?? 0,
          body: parseBody(Buffer.concat(chunks).toString('utf8'), res.headers['content-type']),
          retryAfterMs: retryAfterMs(res.headers['retry-after']),
        });
      });
    });
  }

  /**
   * A GET whose answer is read as a stream (a watch): resolves with the response as soon as its headers arrive,
   * whatever the status. No deadline and no retries: `signal` ends it.
   */
  stream(path: string, signal: AbortSignal): Promise<http.IncomingMessage> {
    return this.send('GET', path, undefined, signal);
  }

  /** Sends one request with the kubeconfig's connection settings and credentials; resolves at the response. */
  private async send(
    method: KubeMethod,
    path: string,
    payload: string | undefined,
    signal: AbortSignal,
  ): Promise<http.IncomingMessage> {
    // Credentials are applied per request: an exec or oidc plugin refreshes an expired token here.
    const options: https.RequestOptions = {};
    await this.options.config.applyToHTTPSOptions(options);
    applyDeferredExtraCa(options);
    const url = this.url(path);
    // applyToHTTPSOptions sets headers as an object (Authorization, Impersonate-User), never as a raw array.
    const headers: http.OutgoingHttpHeaders = {
      ...(options.headers as http.OutgoingHttpHeaders | undefined),
      Accept: 'application/json',
    };
    if (payload !== undefined) {
      headers['Content-Type'] = 'application/json';
      headers['Content-Length'] = Buffer.byteLength(payload);
    }
    const request = url.protocol === 'http:' ? http.request : https.request;
    const agent = this.agent ?? options.agent;
    return new Promise((resolve, reject) => {
      const req = request(url, { ...options, agent, method, headers, signal }, resolve);
      req.on('error', reject);
      req.end(payload);
    });
  }
}
