// A Kubernetes watch over the small REST client (kube/rest.ts): GET PATH?watch=true&..., then one JSON event per
// line ({"type":"ADDED|MODIFIED|DELETED|BOOKMARK|ERROR","object":{...}}). It behaves as @kubernetes/client-node's
// Watch does, which the daemon used before (that one pulls in node-fetch and its URL tables): `onDone` is called
// exactly once, with null when the server ended the stream, the error when it broke, an AbortError after
// abort(), or an Error with `statusCode` when the server refused the watch; lines that are not JSON are skipped;
// TCP keep-alive probes every 30 s notice a silently dead connection.
import type { IncomingMessage } from 'node:http';
import { STATUS_CODES } from 'node:http';
import type { KubeRestClient } from './rest.js';

export interface WatchHandle {
  abort(): void;
}

/** The server refused to start the watch (the status is in `statusCode`, as client-node's Watch reports it). */
export class WatchRefusedError extends Error {
  override readonly name = 'WatchRefusedError';
  constructor(readonly statusCode: number) {
    super(STATUS_CODES[statusCode] ?? `HTTP ${statusCode}`);
  }
}

const KEEPALIVE_MS = 30_000;

function watchPath(path: string, query: Record<string, string | number | boolean | undefined>): string {
  const params = new URLSearchParams({ watch: 'true' });
  for (const [key, value] of Object.entries(query)) if (value !== undefined) params.set(key, String(value));
  return `${path}?${params.toString()}`;
}

/** Splits the body into lines and hands each parsed event on. */
function readEvents(res: IncomingMessage, onEvent: (type: string, object: unknown) => void): void {
  let rest = '';
  res.setEncoding('utf8');
  res.on('data', (chunk: string) => {
    const lines = (rest + chunk).split('\n');
    rest = lines.pop() ?? '';
    for (const line of lines) {
      if (line.trim() === '') continue;
      let event: { type?: unknown; object?: unknown };
      try {
        event = JSON.parse(line) as { type?: unknown; object?: unknown };
      } catch {
        continue;
      }
      if (typeof event.type === 'string') onEvent(event.type, event.object);
    }
  });
}

/**
 * Starts a watch of `path` (e.g. `/api/v1/namespaces`) with `query` (resourceVersion, fieldSelector,
 * allowWatchBookmarks, timeoutSeconds, ...). Resolves once the request is under way; events and the end arrive
 * through the callbacks.
 */
export async function watch(
  client: KubeRestClient,
  path: string,
  query: Record<string, string | number | boolean | undefined>,
  onEvent: (type: string, object: unknown) => void,
  onDone: (err: unknown) => void,
): Promise<WatchHandle> {
  const controller = new AbortController();
  let done = false;
  const finish = (err: unknown) => {
    if (done) return;
    done = true;
    controller.abort();
    onDone(err);
  };
  const handle = { abort: () => finish(abortError()) };
  try {
    const res = await client.stream(watchPath(path, query), controller.signal);
    if (controller.signal.aborted) {
      // abort() came while the request was under way.
      res.destroy();
      return handle;
    }
    if (res.statusCode !== 200) {
      res.resume();
      finish(new WatchRefusedError(res.statusCode ?? 0));
      return handle;
    }
    res.socket.setKeepAlive(true, KEEPALIVE_MS);
    readEvents(res, onEvent);
    res.on('error', finish);
    res.on('end', () => finish(null));
    res.on('close', () => finish(null));
  } catch (err) {
    finish(err);
  }
  return handle;
}

function abortError(): Error {
  const err = new Error('the watch was aborted');
  err.name = 'AbortError';
  return err;
}
