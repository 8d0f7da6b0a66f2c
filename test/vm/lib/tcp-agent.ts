// TCP bulk-transfer agent run as its own process inside a network namespace (see tcp-transfer.ts):
//   tcp-agent serve <bindIp> <port> <bytes> <seed>   accepts one connection, compares every received byte
//                                                    with the stream `seed` generates and prints one JSON line
//                                                    {"received","mismatchAt"} when the peer closes, or when
//                                                    it gets SIGTERM / SIGINT (a stalled transfer); prints
//                                                    `ready` once listening
//   tcp-agent send <dstIp> <port> <bytes> <seed>     connects, sends `bytes` of that stream, half-closes and
//                                                    prints {"sent"} once everything was handed to the kernel
// The stream is SHA-256 in counter mode over the seed, so both ends produce it independently.
import { createHash } from 'node:crypto';
import net from 'node:net';

function fail(message: string): never {
  process.stderr.write(`tcp-agent: ${message}\n`);
  process.exit(2);
}

/** Bytes [offset, offset + length) of the stream for `seed`. */
export function streamBytes(seed: string, offset: number, length: number): Buffer {
  const out = Buffer.alloc(length);
  let block = Math.floor(offset / 32);
  let at = 0;
  let skip = offset % 32;
  while (at < length) {
    const h = createHash('sha256').update(`${seed}:${block}`).digest();
    at += h.copy(out, at, skip);
    skip = 0;
    block++;
  }
  return out;
}

function intArg(text: string | undefined, name: string): number {
  const n = Number(text);
  if (text === undefined || !Number.isInteger(n) || n < 0)
    fail(`${name} must be a non-negative integer, got '${text}'`);
  return n;
}

const [mode, ip, portText, bytesText, seed] = process.argv.slice(2);
if (ip === undefined || seed === undefined) fail('usage: tcp-agent serve|send <ip> <port> <bytes> <seed>');
const port = intArg(portText, 'port');
const total = intArg(bytesText, 'bytes');

if (mode === 'serve') {
  let received = 0;
  let mismatchAt = -1;
  let done = false;
  const report = (): void => {
    if (done) return;
    done = true;
    process.stdout.write(`${JSON.stringify({ received, mismatchAt })}\n`, () => process.exit(0));
  };
  const server = net.createServer((sock) => {
    server.close();
    sock.on('data', (chunk: Buffer) => {
      if (mismatchAt < 0) {
        const want = streamBytes(seed, received, chunk.length);
        for (let i = 0; i < chunk.length; i++) {
          if (chunk[i] !== want[i]) {
            mismatchAt = received + i;
            break;
          }
        }
      }
      received += chunk.length;
    });
    sock.on('end', report);
    sock.on('error', (err) => fail(`connection: ${err.message}`));
  });
  server.on('error', (err) => fail(`listen: ${err.message}`));
  process.on('SIGTERM', report);
  process.on('SIGINT', report);
  server.listen(port, ip, () => process.stdout.write('ready\n'));
} else if (mode === 'send') {
  const sock = net.connect({ host: ip, port }, () => {
    const chunk = 64 * 1024;
    let sent = 0;
    const pump = (): void => {
      while (sent < total) {
        const n = Math.min(chunk, total - sent);
        const ok = sock.write(streamBytes(seed, sent, n));
        sent += n;
        if (!ok) {
          sock.once('drain', pump);
          return;
        }
      }
      sock.end(() => process.stdout.write(`${JSON.stringify({ sent })}\n`, () => process.exit(0)));
    };
    pump();
  });
  sock.on('error', (err) => fail(`connect/send: ${err.message}`));
} else {
  fail(`unknown mode '${mode}'`);
}
