// kmesh-daemon uninstall's steps and summary: a step that fails (no kubeconfig for the KmeshNodeInfo) does not
// stop the node-local ones, only what was really there is reported, a private bpffs is called out, and the
// datapath step creates nothing (not even a missing --bpf-fs-path) when no pins of ours exist.
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { DatapathAdapter } from '../../src/daemon/datapath-port.js';
import { formatUninstall, runUninstall, type UninstallSteps } from '../../src/daemon/uninstall.js';
import { FakeDatapath } from '../fakes/fake-datapath.js';

function steps(overrides: Partial<UninstallSteps>): { steps: UninstallSteps; ran: string[] } {
  const ran: string[] = [];
  const step =
    <T>(name: string, value: T) =>
    () => {
      ran.push(name);
      return Promise.resolve(value);
    };
  return {
    ran,
    steps: {
      bpfFsPath: '/sys/fs/bpf',
      nodeName: 'node-1',
      bpffsScope: () => Promise.resolve({ kind: 'shared', mountPoint: '/sys/fs/bpf' }),
      datapath: step('datapath', [] as string[]),
      xfrm: step('xfrm', 0),
      nodeInfo: step('nodeInfo', false),
      keyState: step('keyState', false),
      ...overrides,
    },
  };
}

t.test('nothing installed: nothing claimed, no problems', async (t) => {
  const { steps: s, ran } = steps({});
  const report = await runUninstall(s);
  t.same(report, { removed: [], problems: [] });
  t.same(ran, ['datapath', 'xfrm', 'nodeInfo', 'keyState']);
  t.same(formatUninstall(report), { stdout: 'removed: nothing (none of it was installed)\n', stderr: '' });
});

t.test('an unreachable cluster still leaves the node clean, and says so in one line', async (t) => {
  const { steps: s, ran } = steps({
    datapath: () => Promise.resolve(['tc_mark_decrypt on eth0', '9 pins under /sys/fs/bpf/bpf_kmesh_workload']),
    xfrm: () => Promise.resolve(12),
    nodeInfo: () => Promise.reject(new Error('no kubeconfig: set --kubeconfig or KUBECONFIG\nstack')),
    keyState: () => {
      ran.push('keyState');
      return Promise.resolve(true);
    },
  });
  const report = await runUninstall(s);
  t.same(report.removed, [
    'tc_mark_decrypt on eth0',
    '9 pins under /sys/fs/bpf/bpf_kmesh_workload',
    '12 XFRM states and policies',
    'saved key history',
  ]);
  t.same(report.problems, ['KmeshNodeInfo: no kubeconfig: set --kubeconfig or KUBECONFIG']);
  t.same(formatUninstall(report), {
    stdout:
      'removed: tc_mark_decrypt on eth0; 9 pins under /sys/fs/bpf/bpf_kmesh_workload; 12 XFRM states and ' +
      'policies; saved key history\n',
    stderr: 'kmesh-daemon uninstall: KmeshNodeInfo: no kubeconfig: set --kubeconfig or KUBECONFIG\n',
  });
  t.same(ran, ['keyState'], 'the key history step ran after the failure');
});

t.test('a private bpffs is a problem: the pins of a daemon that ran elsewhere are not visible', async (t) => {
  const { steps: s } = steps({ bpffsScope: () => Promise.resolve({ kind: 'private', mountPoint: '/sys/fs/bpf' }) });
  const report = await runUninstall(s);
  t.equal(report.problems.length, 1);
  t.match(
    report.problems[0],
    /^datapath: --bpf-fs-path \/sys\/fs\/bpf is on a bpffs .* private to this mount namespace/,
  );
  t.equal(formatUninstall(report).stdout, 'removed: nothing\n');
});

t.test('datapath step: no pin directory means nothing is loaded and no directory is made', async (t) => {
  const bpfFsPath = path.join(t.testdir(), 'missing');
  const dp = new FakeDatapath();
  t.same(await new DatapathAdapter(dp, path.join(bpfFsPath, 'bpf_kmesh_workload')).uninstall(), []);
  t.equal(dp.bpffsRoot, undefined, 'nothing loaded');
  t.notOk(fs.existsSync(bpfFsPath), 'the missing --bpf-fs-path was not created');
  const root = path.join(t.testdir({ map: { km_nodeinfo: '' }, tc: { tc_mark_encrypt: '', tc_mark_decrypt: '' } }));
  t.same(await new DatapathAdapter(new FakeDatapath(), root).uninstall(), [`3 pins under ${root}`]);
});
