// A minimal Kubernetes REST client for the guest side of the VM suites (node:https, JSON in and out, bearer
// token, the control plane's CA: TLS is verified). The suites use it as a kubelet and an operator would: to
// register Nodes, Pods and Namespaces and to read what the daemons and kmeshctl wrote. It is deliberately
// not the product's client, so the product is checked against the server rather than against itself.
import https from 'node:https';

export interface KubeResponse {
  status: number;
  body: unknown;
}

export class KubeApiError extends Error {
  constructor(
    readonly method: string,
    readonly urlPath: string,
    readonly status: number,
    readonly body: unknown,
  ) {
    super(`${method} ${urlPath}: ${status} ${JSON.stringify(body).slice(0, 300)}`);
    this.name = 'KubeApiError';
  }
}

export class KubeApi {
  private readonly url: URL;
  private readonly agent: https.Agent;

  constructor(
    server: string,
    private readonly caPem: string,
    private readonly token: string,
    private readonly timeoutMs = 30_000,
  ) {
    this.url = new URL(server);
    this.agent = new https.Agent({ keepAlive: true, maxSockets: 4, ca: caPem });
  }

  /** One request; `contentType` defaults to JSON (use application/merge-patch+json for PATCH). */
  request(method: string, urlPath: string, body?: unknown, contentType = 'application/json'): Promise<KubeResponse> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    return new Promise((resolve, reject) => {
      const req = https.request(
        {
          host: this.url.hostname,
          port: this.url.port,
          path: urlPath,
          method,
          agent: this.agent,
          ca: this.caPem,
          timeout: this.timeoutMs,
          headers: {
            authorization: `Bearer ${this.token}`,
            accept: 'application/json',
            ...(payload ? { 'content-type': contentType, 'content-length': payload.length } : {}),
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let parsed: unknown = text;
            try {
              parsed = JSON.parse(text);
            } catch {
              // plain text
            }
            resolve({ status: res.statusCode ?? 0, body: parsed });
          });
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new Error(`${method} ${urlPath} timed out after ${this.timeoutMs} ms`)));
      req.on('error', reject);
      req.end(payload);
    });
  }

  /** Like request, but throws KubeApiError unless the status is 2xx (or in `also`); returns the response. */
  async call(
    method: string,
    urlPath: string,
    body?: unknown,
    options: { contentType?: string; also?: readonly number[] } = {},
  ): Promise<KubeResponse> {
    const res = await this.request(method, urlPath, body, options.contentType);
    if ((res.status < 200 || res.status > 299) && !(options.also ?? []).includes(res.status)) {
      throw new KubeApiError(method, urlPath, res.status, res.body);
    }
    return res;
  }

  /** Merge-patches `urlPath` (RFC 7386: lists are replaced whole). */
  patch(urlPath: string, body: unknown): Promise<KubeResponse> {
    return this.call('PATCH', urlPath, body, { contentType: 'application/merge-patch+json' });
  }

  /** Creates the object at `collection`, or merge-patches it when it exists; returns the stored object. */
  async createOrPatch(collection: string, name: string, obj: Record<string, unknown>): Promise<unknown> {
    const created = await this.call('POST', collection, obj, { also: [409] });
    if (created.status !== 409) return created.body;
    return (await this.patch(`${collection}/${name}`, obj)).body;
  }

  close(): void {
    this.agent.destroy();
  }
}
