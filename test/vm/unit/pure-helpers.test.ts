// Host unit tests of the VM harness's pure parts: kernel.env parsing, the qemu command line, the guest
// command script, suite selection and output accounting, XFRM counter checks, loss counting, topology
// plans and ping parsing, the guest forward of the user network and the control plane facts the guest reads.
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { parseKernelEnv, parseKernelList } from '../lib/kernels.js';
import { qemuArgs, userNic } from '../lib/qemu-args.js';
import { CERT_IPS, FACTS_ENV, GUEST_API, NODE_RELAY_IP, readGuestKubeFacts, SKIP_ENV } from '../lib/vm-kube.js';
import { guestCommandScript, shellQuote } from '../lib/guest-command.js';
import {
  failureExcerpt,
  parseTapSummary,
  selectSuites,
  suiteLoopCommand,
  suiteOutcomes,
  suiteTimeoutFor,
} from '../lib/suite-run.js';
import { assertXfrmCountersUnchanged, parseXfrmStat, xfrmCounterChanges } from '../lib/xfrm-stat.js';
import { encodeDatagram, FlowCounter, lostDatagrams } from '../lib/flow-count.js';
import { addressBatches, linkBatch, planNamespaces, planTopology, sysctlSettings } from '../lib/topology.js';
import { parsePingSummary } from '../lib/traffic.js';
import { manualTcBatch, manualXfrmBatch } from '../lib/manual-esp.js';

t.test('kernel.env and kernel lists', (t) => {
  const env = parseKernelEnv(
    '# c\nKERNEL=6.12\nPACKAGE=linux-image-6.12.9+bpo-amd64\nKVER=6.12.9+bpo-amd64\nVMLINUZ=boot/vmlinuz-x\n',
    'k.env',
  );
  t.same(env, {
    kernel: '6.12',
    packageName: 'linux-image-6.12.9+bpo-amd64',
    release: '6.12.9+bpo-amd64',
    vmlinuz: 'boot/vmlinuz-x',
  });
  t.throws(() => parseKernelEnv('KERNEL=6.1\nPACKAGE=p\nVMLINUZ=v\n', 'k.env'), /k\.env: missing KVER/);
  t.throws(
    () => parseKernelEnv('KERNEL=5.10\nPACKAGE=p\nKVER=k\nVMLINUZ=v\n', 'k.env'),
    /KERNEL=5\.10 is not one of 6\.1, 6\.12/,
  );
  t.same(parseKernelList(' 6.12, 6.1 '), ['6.12', '6.1']);
  t.same(parseKernelList(''), []);
  t.throws(() => parseKernelList('6.1,6.6'), /unknown guest kernel '6\.6'/);
  t.end();
});

t.test('qemu command line', (t) => {
  const base = {
    vmlinuz: '/k/vmlinuz',
    initramfs: '/k/initrd',
    xferDir: '/r/x,y',
    consoleLog: '/r/console.log',
    memoryMb: 1024,
  };
  const run = qemuArgs({ ...base, mode: 'run' });
  t.same(run.slice(0, 4), ['-accel', 'tcg,tb-size=256', '-cpu', 'max']);
  t.ok(run.includes('-no-reboot'));
  t.notOk(
    run.some((a) => a.includes('kvm')),
    'never KVM',
  );
  t.ok(run.includes('local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap'));
  t.ok(run.includes('local,path=/r/x,,y,mount_tag=xfer,security_model=none,multidevs=remap'), 'commas escaped');
  t.same(run.slice(-4), ['-serial', 'file:/r/console.log', '-serial', 'stdio']);
  t.match(run[run.indexOf('-append') + 1]!, /console=ttyS0 .*KMESH_VM_MODE=run/);
  const shell = qemuArgs({ ...base, mode: 'shell' });
  t.ok(shell.includes('-nographic'));
  t.match(shell[shell.indexOf('-append') + 1]!, /KMESH_VM_MODE=shell/);
  t.throws(() => qemuArgs({ ...base, mode: 'run', memoryMb: 100 }), /at least 256 MiB, got 100/);
  t.equal(run[run.indexOf('-nic') + 1], 'none', 'no network device without a guest forward');
  t.end();
});

t.test('guest forward: one restricted user-mode NIC, a relay command per connection', (t) => {
  const base = {
    vmlinuz: '/k/vmlinuz',
    initramfs: '/k/initrd',
    xferDir: '/r/x',
    consoleLog: '/r/console.log',
    memoryMb: 1024,
    mode: 'run' as const,
  };
  const fwd = { guestIp: '10.0.2.100', guestPort: 6443, relayCommand: '/usr/bin/busybox nc 127.0.0.1 41234' };
  const args = qemuArgs({ ...base, guestForward: fwd });
  t.equal(
    args[args.indexOf('-nic') + 1],
    'user,model=virtio-net-pci,restrict=on,ipv6=off,guestfwd=tcp:10.0.2.100:6443-cmd:/usr/bin/busybox nc 127.0.0.1 41234',
  );
  t.equal(args.filter((a) => a === '-nic').length, 1, 'one NIC');
  t.throws(() => userNic({ ...fwd, guestIp: 'api.local' }), /must be IPv4, got 'api\.local'/);
  t.throws(() => userNic({ ...fwd, guestPort: 70000 }), /port must be 1-65535, got 70000/);
  t.throws(() => userNic({ ...fwd, relayCommand: 'nc a,b' }), /without commas or quotes/);
  t.ok(
    CERT_IPS.includes(GUEST_API.ip) && CERT_IPS.includes(NODE_RELAY_IP),
    'the certificate covers both API addresses',
  );
  t.end();
});

t.test('control plane facts in the guest', (t) => {
  t.match(readGuestKubeFacts({}), { missing: /npm run test:vm/ });
  t.same(readGuestKubeFacts({ [SKIP_ENV]: 'no kube-apiserver' }), { missing: 'no kube-apiserver' });
  const dir = t.testdir();
  const facts = {
    server: 'https://10.0.2.100:6443',
    caPem: 'PEM',
    adminToken: 'a',
    daemonToken: 'd',
    kubeVersion: '1.20.2',
    controllerManager: true,
  };
  const file = path.join(dir, 'kube.json');
  fs.writeFileSync(file, JSON.stringify(facts));
  t.same(readGuestKubeFacts({ [FACTS_ENV]: file }), facts);
  fs.writeFileSync(file, JSON.stringify({ ...facts, daemonToken: '' }));
  t.throws(() => readGuestKubeFacts({ [FACTS_ENV]: file }), /no daemonToken/);
  t.end();
});

t.test('guest command script', (t) => {
  t.equal(shellQuote("it's"), `'it'\\''s'`);
  const script = guestCommandScript({
    env: { A: "x'y", KMESH_VM: '1' },
    prepareScript: '/repo/p.sh',
    cwd: '/repo',
    command: 'echo hi; exit 3',
  });
  t.match(script, /^#!\/bin\/sh\n/);
  t.match(script, /export A='x'\\''y'\n/);
  t.match(script, /\. '\/repo\/p\.sh'\ncd '\/repo' \|\| exit 125\n/);
  t.match(script, /exec \/bin\/sh -c 'echo hi; exit 3'\n$/);
  const shell = guestCommandScript({
    env: {},
    prepareScript: '/p',
    cwd: '/',
    command: undefined,
    terminal: { rows: 40, columns: 120 },
  });
  t.match(shell, /stty rows 40 cols 120 2>\/dev\/null\nexec \/bin\/bash -i\n$/);
  t.throws(
    () => guestCommandScript({ env: { 'BAD-NAME': '1' }, prepareScript: '/p', cwd: '/', command: 'true' }),
    /invalid environment variable name for the guest: 'BAD-NAME'/,
  );
  t.throws(
    () => guestCommandScript({ env: {}, prepareScript: '/p', cwd: '/', command: '  ' }),
    /the VM command is empty/,
  );
  t.end();
});

t.test('suite selection, loop command and per-suite accounting', (t) => {
  t.equal(suiteTimeoutFor('e2e-dir', undefined), 900, 'daemon end-to-end suites get 900 s');
  t.equal(suiteTimeoutFor('datapath', undefined), 300);
  t.equal(suiteTimeoutFor('e2e-kube', 120), 120, 'KMESH_VM_SUITE_TIMEOUT_S applies to every suite');
  t.same(selectSuites(['a', 'b', 'c'], undefined), ['a', 'b', 'c']);
  t.same(selectSuites(['a', 'b', 'c'], 'c.test.ts, a'), ['a', 'c']);
  t.throws(() => selectSuites(['a'], 'a,zz'), /unknown VM suite\(s\) zz \(available: a\)/);
  const cmd = suiteLoopCommand([{ name: 'a', file: '/d/a.test.js', timeoutS: 60 }], '--max-lazy');
  t.equal(
    cmd,
    `echo "KMESH_VM_SUITE_BEGIN a"; TAP_TIMEOUT=60 timeout -k 10 90 node --max-lazy '/d/a.test.js' 2>&1; echo "KMESH_VM_SUITE_END a rc=$?"; true`,
  );

  t.same(parseTapSummary('x\n    # { total: 9, pass: 9 }\n# { total: 3, pass: 1, fail: 1, todo: 1 }\n'), {
    total: 3,
    pass: 1,
    fail: 1,
    skip: 1,
  });
  t.equal(parseTapSummary('no summary'), undefined);
  const output = [
    'KMESH_VM_SUITE_BEGIN a',
    'ok 1 - x',
    '# { total: 2, pass: 2 }',
    'KMESH_VM_SUITE_END a rc=0',
    'KMESH_VM_SUITE_BEGIN b',
    'TypeError: boom',
    'KMESH_VM_SUITE_END b rc=1',
    'KMESH_VM_SUITE_BEGIN c',
    'ok 1 - y',
    '# { total: 1, pass: 1 }',
    'KMESH_VM_SUITE_END c rc=124',
    'KMESH_VM_SUITE_BEGIN d',
    'ok 1 - partial',
  ].join('\n');
  const [a, b, c, d, e] = suiteOutcomes(
    ['a', 'b', 'c', 'd', 'e'].map((name) => ({ name, timeoutS: 60 })),
    output,
  );
  t.same([a!.counts, a!.problem, a!.exitCode], [{ total: 2, pass: 2, fail: 0, skip: 0 }, undefined, 0]);
  t.equal(b!.problem, 'exited with 1 without a tap summary');
  t.equal(c!.problem, 'killed after 90 s in the guest');
  t.equal(d!.problem, 'did not finish (the VM run ended during it)');
  t.equal(e!.problem, 'never started (the VM run ended before it)');
  t.end();
});

t.test('XFRM counter checks name every counter that moved', (t) => {
  const before = parseXfrmStat(
    'XfrmInError             \t0\nXfrmInNoStates          \t2\nXfrmOutPolBlock         \t0\n',
  );
  t.same(before, { XfrmInError: 0, XfrmInNoStates: 2, XfrmOutPolBlock: 0 });
  t.throws(() => parseXfrmStat('XfrmInError 0\nbogus line\n'), /unexpected line in xfrm_stat: 'bogus line'/);
  t.throws(() => parseXfrmStat('\n'), /xfrm_stat is empty/);
  const after = { ...before, XfrmInNoStates: 7, XfrmOutPolBlock: 1 };
  t.same(
    xfrmCounterChanges(before, after).map((c) => [c.name, c.delta]),
    [
      ['XfrmInNoStates', 5],
      ['XfrmOutPolBlock', 1],
    ],
  );
  t.doesNotThrow(() => assertXfrmCountersUnchanged(before, { ...before }));
  t.throws(() => assertXfrmCountersUnchanged(before, after, 'node-a'), {
    message:
      'XFRM error counters moved in node-a: XfrmInNoStates moved by 5 (2 -> 7), XfrmOutPolBlock moved by 1 (0 -> 1)',
  });
  t.end();
});

t.test('UDP flow tally counts loss, duplicates, reordering and corruption', (t) => {
  const payload = Buffer.from('probe');
  const counter = new FlowCounter(payload);
  for (const seq of [0, 1, 3, 2, 3]) counter.add(encodeDatagram(seq, payload));
  counter.add(encodeDatagram(9, Buffer.from('other')));
  counter.add(Buffer.from([1]));
  const tally = counter.tally();
  t.same(tally, { received: 7, unique: 4, duplicates: 1, outOfOrder: 1, badPayload: 2, maxSeq: 3 });
  t.equal(lostDatagrams(6, tally), 2);
  t.equal(lostDatagrams(3, tally), 0);
  t.end();
});

t.test('topology plan: names, addresses, batches', (t) => {
  const plan = planTopology({ prefix: 'kmt-x-', nodes: 3, podsPerNode: 2 });
  t.equal(plan.underlayNetns, 'kmt-x-ul');
  t.same(
    plan.nodes.map((n) => [n.netns, n.underlayIp, n.podCidr]),
    [
      ['kmt-x-n0', '198.18.0.1', '10.244.0.0/24'],
      ['kmt-x-n1', '198.18.0.2', '10.244.1.0/24'],
      ['kmt-x-n2', '198.18.0.3', '10.244.2.0/24'],
    ],
  );
  t.same(
    plan.nodes[2]!.pods.map((p) => [p.netns, p.ip, p.hostVeth]),
    [
      ['kmt-x-n2p0', '10.244.2.2', 'vpod0'],
      ['kmt-x-n2p1', '10.244.2.3', 'vpod1'],
    ],
  );
  t.equal(planNamespaces(plan).length, 1 + 3 + 6);
  t.ok(
    planNamespaces(plan).every((n) => n.startsWith('kmt-x-')),
    'every namespace carries the prefix',
  );
  t.ok(linkBatch(plan).includes('link add vpod1 netns kmt-x-n0 type veth peer name eth0 netns kmt-x-n0p1'));
  const n1 = addressBatches(plan).get('kmt-x-n1')!;
  t.ok(n1.includes('route add 10.244.0.0/24 via 198.18.0.1 dev eth0'));
  t.ok(n1.includes('route add 10.244.1.3/32 dev vpod1 src 10.244.1.1'));
  t.notOk(
    n1.some((l) => l.includes('10.244.1.0/24 via')),
    'no route to its own pod CIDR via the underlay',
  );
  t.ok(sysctlSettings(plan, 'kmt-x-n1').includes('net.ipv4.ip_forward=1'));
  t.notOk(sysctlSettings(plan, 'kmt-x-n1p0').includes('net.ipv4.ip_forward=1'));
  t.throws(() => planTopology({ prefix: 'Kmt', nodes: 1, podsPerNode: 1 }), /topology prefix 'Kmt'/);
  t.throws(() => planTopology({ prefix: 'k-', nodes: 0, podsPerNode: 1 }), /nodes must be 1\.\.200, got 0/);
  t.end();
});

t.test('hand-made ESP mesh commands', (t) => {
  const plan = planTopology({ prefix: 'kmt-x-', nodes: 3, podsPerNode: 1 });
  const keys = new Map<string, Buffer>();
  for (const a of [0, 1, 2])
    for (const b of [0, 1, 2]) if (a !== b) keys.set(`${a}->${b}`, Buffer.alloc(36, a * 3 + b));
  const xfrm = manualXfrmBatch(plan, plan.nodes[1]!, { spi: 1, keys, decryptMark: true });
  t.equal(xfrm.length, 2 * 5, 'two states and three policies per peer');
  t.ok(
    xfrm.includes(
      `xfrm state add src 198.18.0.1 dst 198.18.0.2 proto esp spi 0x1 reqid 1 mode tunnel aead rfc4106(gcm(aes)) 0x${'01'.repeat(36)} 128 ` +
        'mark 0x100d0 mask 0xffff00ff output-mark 0xd0 mask 0xffff00ff',
    ),
    'inbound SA from node 0 carries peer id 1 in its mark',
  );
  t.ok(
    xfrm.includes(
      'xfrm policy add src 10.244.1.0/24 dst 10.244.2.0/24 dir out mark 0xe0 mask 0xff tmpl src 198.18.0.2 dst 198.18.0.3 proto esp spi 0x1 reqid 1 mode tunnel',
    ),
  );
  const withMark = manualTcBatch(plan, plan.nodes[1]!, { decryptMark: true });
  const without = manualTcBatch(plan, plan.nodes[1]!, { decryptMark: false });
  t.ok(
    withMark.includes(
      'filter add dev eth0 ingress protocol ip prio 10 u32 match ip protocol 50 0xff match ip src 198.18.0.3/32 action skbedit mark 0x300d0',
    ),
  );
  t.equal(withMark.length - without.length, 2, 'the broken variant only lacks the two decrypt-mark filters');
  t.throws(
    () => manualXfrmBatch(plan, plan.nodes[0]!, { spi: 1, keys: new Map(), decryptMark: true }),
    /no 36-byte key for 0->1/,
  );
  t.end();
});

t.test('ping summary', (t) => {
  t.same(parsePingSummary('...\n3 packets transmitted, 2 received, 33% packet loss, time 402ms\n'), {
    transmitted: 3,
    received: 2,
  });
  t.throws(() => parsePingSummary('ping: connect: Network is unreachable\n'), /no ping summary in: ping: connect/);
  t.end();
});

t.test('failure excerpt: failing tests with the head of their diagnostics, nothing from passing ones', (t) => {
  const tap = [
    '# Subtest: daemon end to end, IPv6 only',
    '    ok 1 - every node advertises SPI 1',
    '    not ok 2 - zero packets lost during rotation',
    '      ---',
    '      found:',
    '        - transmitted: 150',
    '          received: 149',
    '      at:',
    '        line: 12',
    '      ...',
    '    ok 3 - zero XFRM error counter deltas',
    '    1..3',
    'not ok 1 - daemon end to end, IPv6 only # time=1s',
    '# { total: 3, pass: 2, fail: 1 }',
  ].join('\n');
  t.same(failureExcerpt(tap, 40, 3), [
    '    not ok 2 - zero packets lost during rotation',
    '      found:',
    '        - transmitted: 150',
    '          received: 149',
    'not ok 1 - daemon end to end, IPv6 only # time=1s',
  ]);
  t.same(failureExcerpt(tap, 2), ['    not ok 2 - zero packets lost during rotation', '      found:']);
  t.same(failureExcerpt('ok 1 - fine\n# { total: 1, pass: 1 }'), []);
  t.end();
});
