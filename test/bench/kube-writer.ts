// The other nodes of bench:scale's Kubernetes cluster (--source kube): writes KmeshNodeInfo objects to the real API
// server from a process of its own, as 5,000 other daemons would, so the daemon under test, which holds its own
// thread during a step, does not hold up the writes. Reads one JSON job from stdin: the server, its CA and a token,
// the requests, and how to spread them (`batches` batches `pauseMs` apart, `inFlight` requests at a time within a
// batch). Prints when the first batch started and the last ended (ms since the epoch), as `first last`. Any answer
// other than 2xx fails the job (exit 1, the first such answer on stderr).
import { KubeApi } from '../fixtures/kube-api.js';

export interface KubeWriterRequest {
  method: string;
  path: string;
  body: unknown;
  contentType?: string;
}

export interface KubeWriterJob {
  server: string;
  caPem: string;
  token: string;
  requests: KubeWriterRequest[];
  batches: number;
  pauseMs: number;
  inFlight: number;
}

async function run(job: KubeWriterJob): Promise<string> {
  const api = new KubeApi(job.server, job.caPem, job.token, 60_000);
  try {
    const first = performance.timeOrigin + performance.now();
    const per = Math.ceil(job.requests.length / job.batches);
    for (let b = 0; b < job.batches; b++) {
      if (b > 0) await new Promise((r) => setTimeout(r, job.pauseMs));
      const batch = job.requests.slice(b * per, (b + 1) * per);
      let next = 0;
      const worker = async (): Promise<void> => {
        while (next < batch.length) {
          const r = batch[next++] as KubeWriterRequest;
          const res = await api.request(r.method, r.path, r.body, r.contentType);
          if (res.status < 200 || res.status > 299)
            throw new Error(`${r.method} ${r.path}: ${res.status} ${JSON.stringify(res.body).slice(0, 200)}`);
        }
      };
      await Promise.all(Array.from({ length: Math.max(1, job.inFlight) }, worker));
    }
    return `${first} ${performance.timeOrigin + performance.now()}`;
  } finally {
    api.close();
  }
}

let input = '';
process.stdin.on('data', (d: Buffer) => (input += d.toString()));
process.stdin.on('end', () => {
  run(JSON.parse(input) as KubeWriterJob).then(
    (line) => process.stdout.write(line),
    (e: unknown) => {
      process.stderr.write(`kube writer: ${e instanceof Error ? e.message : String(e)}\n`);
      process.exitCode = 1;
    },
  );
});
