// Traffic agent run as its own process inside a network namespace (see traffic.ts):
//   udp-agent receive <bindIp> <port> <payload>        counts datagrams; prints `ready` once bound and its
//                                                      FlowTally as JSON when it gets SIGTERM or SIGINT
//   udp-agent send <dstIp> <port> <payload> <count> <intervalMs>
//                                                      sends sequence-numbered datagrams (count 0: until
//                                                      SIGTERM/SIGINT), prints {"sent","errors"} as JSON
import dgram from 'node:dgram';
import { FlowCounter, encodeDatagram } from './flow-count.js';

function fail(message: string): never {
  process.stderr.write(`udp-agent: ${message}\n`);
  process.exit(2);
}

function intArg(text: string | undefined, name: string): number {
  const n = Number(text);
  if (text === undefined || !Number.isInteger(n) || n < 0)
    fail(`${name} must be a non-negative integer, got '${text}'`);
  return n;
}

const [mode, ip, portText, payloadText, ...rest] = process.argv.slice(2);
if (ip === undefined || payloadText === undefined) fail('usage: udp-agent receive|send <ip> <port> <payload> ...');
const port = intArg(portText, 'port');
const payload = Buffer.from(payloadText, 'utf8');

if (mode === 'receive') {
  const counter = new FlowCounter(payload);
  const socket = dgram.createSocket('udp4');
  socket.on('message', (msg) => counter.add(msg));
  socket.on('error', (err) => fail(`receive socket: ${err.message}`));
  const finish = (): void => {
    process.stdout.write(`${JSON.stringify(counter.tally())}\n`, () => process.exit(0));
  };
  process.on('SIGTERM', finish);
  process.on('SIGINT', finish);
  socket.bind(port, ip, () => process.stdout.write('ready\n'));
} else if (mode === 'send') {
  const count = intArg(rest[0], 'count');
  const intervalMs = intArg(rest[1], 'intervalMs');
  const socket = dgram.createSocket('udp4');
  let sent = 0;
  let errors = 0;
  let lastError = '';
  let stopping = false;
  const finish = (): void => {
    stopping = true;
    process.stdout.write(`${JSON.stringify({ sent, errors, lastError })}\n`, () => process.exit(0));
  };
  process.on('SIGTERM', finish);
  process.on('SIGINT', finish);
  const sendNext = (): void => {
    if (stopping) return;
    if (count !== 0 && sent + errors >= count) {
      finish();
      return;
    }
    const seq = sent + errors;
    socket.send(encodeDatagram(seq, payload), port, ip, (err) => {
      if (err) {
        errors += 1;
        lastError = err.message;
      } else {
        sent += 1;
      }
      setTimeout(sendNext, intervalMs);
    });
  };
  process.stdout.write('sending\n');
  sendNext();
} else {
  fail(`unknown mode '${mode}' (receive or send)`);
}
