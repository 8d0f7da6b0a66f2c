// One-line explanations of failed Kubernetes API calls (connection refused, TLS, 401/403/404/409/429/5xx, timeouts)
// saying what to do. Works on the errors of both clients in use: the generated @kubernetes/client-node APIs
// (ApiException: numeric `code`, `body`) and our own HTTPS client (KubeApiError: the same shape), and on the
// network errors under them. It recognises them by shape so that importing it loads nothing of the client.

function firstLine(text: string): string {
  return text.split('\n', 1)[0]?.trim() ?? '';
}

interface HttpFailure {
  code: number;
  body: unknown;
}

/** An error carrying an HTTP status the API server answered with (ApiException, KubeApiError). */
function httpFailure(err: unknown): HttpFailure | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const e = err as { code?: unknown; body?: unknown };
  return typeof e.code === 'number' && 'body' in e ? { code: e.code, body: e.body } : undefined;
}

/** HTTP status of a failed API call (ApiException, KubeApiError, or a watch's `statusCode`), if it got that far. */
export function kubeErrorStatus(err: unknown): number | undefined {
  const failure = httpFailure(err);
  if (failure !== undefined) return failure.code;
  if (typeof err === 'object' && err !== null) {
    const status = (err as { statusCode?: unknown }).statusCode;
    if (typeof status === 'number') return status;
  }
  return undefined;
}

/** The `message` of the Kubernetes Status object in an error response, if there is one. */
export function kubeStatusMessage(err: unknown): string | undefined {
  const failure = httpFailure(err);
  if (failure === undefined) return undefined;
  let body = failure.body;
  if (typeof body === 'string') {
    const text = body;
    try {
      body = JSON.parse(text);
    } catch {
      return text.trim() === '' ? undefined : firstLine(text);
    }
  }
  if (typeof body === 'object' && body !== null) {
    const message = (body as { message?: unknown }).message;
    if (typeof message === 'string' && message !== '') return firstLine(message);
  }
  return undefined;
}

const TLS_CODES = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'EPROTO',
  'ERR_SSL_WRONG_VERSION_NUMBER',
]);

/** The errno-style code of a network failure, looking through wrappers (node-fetch's FetchError, `cause`). */
function networkCode(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const e = err as { code?: unknown; errno?: unknown; name?: unknown; type?: unknown; cause?: unknown };
  if (e.name === 'AbortError' || e.type === 'aborted' || e.name === 'TimeoutError') return 'TIMEOUT';
  if (typeof e.code === 'string') return e.code;
  if (typeof e.errno === 'string') return e.errno;
  return e.cause === undefined ? undefined : networkCode(e.cause);
}

/** What a KubeApiError adds when the server kept answering 429/503 until the deadline. */
function retriedNote(err: unknown): string {
  const attempts = (err as { attempts?: unknown } | null)?.attempts;
  return typeof attempts === 'number' && attempts > 1 ? ` (still so after ${attempts} attempts within --timeout)` : '';
}

/**
 * One line explaining a failed API call to `server` while doing `action` (e.g. `read Secret kmesh-system/kmesh-ipsec`),
 * with what to do about it. Never includes a stack trace.
 */
export function describeKubeError(err: unknown, server: string, action: string): string {
  const status = kubeErrorStatus(err);
  if (status !== undefined) {
    const detail = kubeStatusMessage(err);
    const says = detail ? `: ${detail}` : '';
    switch (status) {
      case 401:
        return (
          `cannot ${action}: the API server at ${server} rejected the credentials (401 Unauthorized); ` +
          'refresh the token or certificate in your kubeconfig, or pick another --context'
        );
      case 403:
        return `cannot ${action}: permission denied (403 Forbidden)${says}; ask for RBAC access or use another --context`;
      case 404:
        return `cannot ${action}: not found (404)${says}`;
      case 409:
        return `cannot ${action}: conflict (409)${says}; someone else changed it, try again`;
      case 410:
        return `cannot ${action}: the requested version is gone (410)${says}`;
      case 422:
        return `cannot ${action}: the API server refused the object (422 Invalid)${says}`;
      case 429:
        return (
          `cannot ${action}: the API server is overloaded (429 Too Many Requests)${says}${retriedNote(err)}; ` +
          'try again shortly or raise --timeout'
        );
      case 503:
        return (
          `cannot ${action}: the API server at ${server} is unavailable (503)${says}${retriedNote(err)}; ` +
          'try again shortly or raise --timeout, check the control plane'
        );
      default:
        return status >= 500
          ? `cannot ${action}: the API server at ${server} failed (${status})${says}; try again, check the control plane`
          : `cannot ${action}: the API server answered ${status}${says}`;
    }
  }
  const code = networkCode(err);
  if (code === 'ECONNREFUSED') {
    return `cannot ${action}: connection to the API server at ${server} refused; is the cluster running and is the server address in your kubeconfig right?`;
  }
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') {
    return `cannot ${action}: cannot resolve the API server host of ${server}; check the server address in your kubeconfig`;
  }
  if (code === 'TIMEOUT' || code === 'ETIMEDOUT' || code === 'EHOSTUNREACH' || code === 'ENETUNREACH') {
    return `cannot ${action}: the API server at ${server} did not answer in time; check the network path and the server address`;
  }
  if (code === 'ECONNRESET' || code === 'EPIPE') {
    return `cannot ${action}: the API server at ${server} dropped the connection; try again`;
  }
  if (code !== undefined && (TLS_CODES.has(code) || code.startsWith('ERR_TLS') || code.startsWith('ERR_SSL'))) {
    return (
      `cannot ${action}: TLS verification of the API server at ${server} failed (${code}); ` +
      'check certificate-authority(-data) and the server name in your kubeconfig'
    );
  }
  const message = err instanceof Error ? firstLine(err.message) : String(err);
  return `cannot ${action}: ${message || 'unknown error'}${code ? ` (${code})` : ''}`;
}
