// Host test of the VM runner itself: one boot of the 6.1 guest checks that the command runs as root in the
// guest kernel with the repository at its usual path, that its exit code, output, environment and result
// files come back, and that the host's / is read-only underneath a writable overlay; a second run with a
// timeout too short to boot checks the timeout message and that qemu is gone afterwards; a third run with a
// guest forward checks the restricted user network: the NIC is up as kmvm0, concurrent connections to the
// forwarded address each reach a host loopback server over their own connection, and the host itself
// (qemu's gateway address, which without restrict=on leads to host loopback) is not reachable.
import t from 'tap';
import { existsSync, readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { loopbackRelayCommand } from '../lib/control-plane-host.js';
import { kernelArtifacts } from '../lib/kernels.js';
import { repoRoot } from '../lib/paths.js';
import { runInVm, VmRunError } from '../runner.js';

function unavailable(): string | false {
  if (process.getuid?.() !== 0) return 'needs root (qemu shares the host root over 9p)';
  try {
    kernelArtifacts('6.1');
  } catch (err) {
    return (err as Error).message;
  }
  return false;
}
const skip = unavailable();

t.test('runs a command in the 6.1 guest and returns exit code, output and results', { skip }, async (t) => {
  const root = repoRoot();
  const command = [
    'uname -r',
    'id -u',
    'echo "cwd=$(pwd) env=$KMESH_TEST_VALUE"',
    'test -f package.json && echo repo-visible',
    'touch /usr/kmesh-overlay-probe && echo overlay-writable',
    'echo result-data > "$KMESH_VM_RESULTS/probe.txt"',
    'grep -q " /sys/fs/bpf bpf" /proc/mounts && echo bpffs-mounted',
    'exit 7',
  ].join('; ');
  const result = await runInVm({ kernel: '6.1', command, timeoutMs: 300_000, env: { KMESH_TEST_VALUE: 'a b' } });
  t.equal(result.exitCode, 7, 'exit code of the guest command');
  const release = kernelArtifacts('6.1').release;
  t.equal(result.release, release);
  t.match(result.output, new RegExp(`^${release.replaceAll('.', '\\.')}\\n0\\n`), 'guest kernel, running as root');
  t.match(result.output, `cwd=${root} env=a b\n`);
  t.match(result.output, 'repo-visible\noverlay-writable\n');
  t.match(result.output, 'bpffs-mounted');
  t.equal(readFileSync(path.join(result.resultsDir, 'probe.txt'), 'utf8'), 'result-data\n');
  t.ok(existsSync(result.consoleLog), 'console log kept');
  t.match(readFileSync(result.consoleLog, 'utf8'), 'KMESH_VM_EXIT=7');
  t.notOk(existsSync('/usr/kmesh-overlay-probe'), 'the host root was not written');
});

t.test('a run that exceeds its timeout fails with a clear message and leaves no qemu', { skip }, async (t) => {
  const err = await runInVm({ kernel: '6.1', command: 'sleep 600', timeoutMs: 1500 }).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.ok(err instanceof VmRunError, 'rejects with VmRunError');
  const vmErr = err as VmRunError;
  t.equal(vmErr.failure, 'timeout');
  t.match(
    vmErr.message,
    /^VM run timed out after 2 s \(kernel 6\.1, run dir .*\); qemu pid \d+ was killed\. Console log: /,
  );
  const pid = Number(/qemu pid (\d+)/.exec(vmErr.message)?.[1]);
  t.notOk(existsSync(`/proc/${pid}`), `qemu (pid ${pid}) is gone`);
});

t.test('a guest forward reaches a host loopback server, one connection per guest connection', { skip }, async (t) => {
  const peers = new Set<string>();
  let requests = 0;
  const server = http.createServer((req, res) => {
    requests += 1;
    peers.add(`${req.socket.remoteAddress ?? ''}:${req.socket.remotePort ?? 0}`);
    // Answer late, so the guest's requests are open at the same time.
    setTimeout(() => res.end(`answer ${req.url ?? ''}\n`), 500);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const port = (server.address() as AddressInfo).port;
  const script = [
    "const get = (u) => fetch(u, { headers: { connection: 'close' }, signal: AbortSignal.timeout(20000) }).then((r) => r.text());",
    "const answers = await Promise.all([1, 2, 3, 4].map((i) => get('http://10.0.2.100:6443/r' + i)));",
    "console.log(answers.join('').trim().split('\\n').sort().join(','));",
    `const host = await get('http://10.0.2.2:${port}/host').then(() => 'reachable', () => 'unreachable');`,
    "console.log('host loopback through the gateway: ' + host);",
  ].join('\n');
  const result = await runInVm({
    kernel: '6.1',
    command: `ip -br addr show kmvm0; node --input-type=module -e "$KMESH_TEST_SCRIPT"`,
    timeoutMs: 300_000,
    env: { KMESH_TEST_SCRIPT: script },
    guestForward: { guestIp: '10.0.2.100', guestPort: 6443, relayCommand: loopbackRelayCommand(port) },
  });
  t.equal(result.exitCode, 0, 'the guest command succeeded', { output: result.output });
  // (Its operstate may still read DOWN right after `ip link set up`: carrier comes a moment later.)
  t.match(result.output, /^kmvm0 +\S+ +10\.0\.2\.15\/24/m, 'the NIC is kmvm0 with its address');
  t.match(result.output, 'answer /r1,answer /r2,answer /r3,answer /r4\n', 'every guest request answered');
  t.equal(requests, 4, 'only the forwarded requests reached the host');
  t.equal(peers.size, 4, 'each over its own host connection');
  t.match(result.output, 'host loopback through the gateway: unreachable', 'restrict=on: the host is not reachable');
});
