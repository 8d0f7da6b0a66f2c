// The prebuilt package: `npm run pack:prebuilt` (prebuildify --napi + npm pack) yields a tarball that installs
// with a PATH holding only node, npm and sh (no cc, g++, make), and in which the datapath facade loads the
// packaged addon and the packaged BPF objects through the verifier and marks a packet in test-run.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { kernelSkipReason, REPO_ROOT } from './lib/kernel.js';

const skip = kernelSkipReason();

function sh(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', ...opts });
  return { code: r.status ?? -1, out: `${r.stdout}${r.stderr}` };
}

t.test('prebuilt package installs and loads without a compiler', { skip }, (t) => {
  const dir = `/tmp/kmt-dp-pkg-${process.pid}`;
  const root = `/sys/fs/bpf/kmt-dp-pkg-${process.pid}`;
  t.teardown(() => {
    rmSync(dir, { recursive: true, force: true });
    rmSync(root, { recursive: true, force: true });
    rmSync(path.join(REPO_ROOT, '.cache', 'pack'), { recursive: true, force: true });
  });
  mkdirSync(dir, { recursive: true });
  const pack = sh('npm', ['run', '--silent', 'pack:prebuilt'], {
    cwd: REPO_ROOT,
    env: { ...process.env, KMESH_PACK_DEST: dir },
  });
  t.equal(pack.code, 0, 'npm run pack:prebuilt');
  const version = (JSON.parse(readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string })
    .version;
  const tarball = path.join(dir, `kmesh-ipsec-${version}.tgz`);
  const listing = sh('tar', ['tzf', tarball]).out;
  t.match(listing, /package\/prebuilds\/linux-x64\/kmesh-ipsec\.node/, 'prebuilt addon inside');
  t.match(listing, /package\/build-bpf\/tc_mark_encrypt\.o/, 'BPF objects inside');
  t.match(listing, /package\/dist\/src\/datapath\/bpf-datapath\.js/, 'compiled facade inside');

  // A PATH with node, npm and sh (npm runs install scripts through sh) only.
  const bin = path.join(dir, 'bin');
  mkdirSync(bin);
  symlinkSync(process.execPath, path.join(bin, 'node'));
  const npm = sh('sh', ['-c', 'command -v npm']).out.trim();
  symlinkSync(npm, path.join(bin, 'npm'));
  symlinkSync('/bin/sh', path.join(bin, 'sh'));
  const env = { PATH: bin, HOME: process.env.HOME ?? '/root' };
  t.not(sh('/bin/sh', ['-c', 'command -v cc || command -v gcc || command -v g++ || command -v make'], { env }).code, 0);

  const app = path.join(dir, 'app');
  mkdirSync(app);
  writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'kmt-app', private: true, type: 'module' }));
  const install = sh(path.join(bin, 'npm'), ['install', '--no-audit', '--no-fund', '--prefer-offline', tarball], {
    cwd: app,
    env,
  });
  t.equal(install.code, 0, `npm install of the tarball without a compiler\n${install.out}`);
  t.notOk(existsSync(path.join(app, 'node_modules/kmesh-ipsec/build/Release')), 'nothing was compiled');

  const script = `
    const { BpfDatapath } = await import('kmesh-ipsec/dist/src/datapath/bpf-datapath.js');
    const dp = new BpfDatapath();
    await dp.load({ bpffsRoot: ${JSON.stringify(root)} });
    await dp.setRemoteCidrs(['10.99.1.0/24']);
    const frame = Buffer.alloc(34);
    frame.writeUInt16BE(0x0800, 12); frame[14] = 0x45; frame[23] = 17;
    Buffer.from([10, 99, 1, 7]).copy(frame, 30);
    const r = await dp.testRun('tc_mark_encrypt', frame);
    await dp.uninstall();
    console.log(JSON.stringify({ mark: r.mark }));`;
  const loaded = sh(path.join(bin, 'node'), ['--input-type=module', '-e', script], { cwd: app, env });
  t.equal(loaded.code, 0, `facade loads from the installed package\n${loaded.out}`);
  t.match(loaded.out, /"mark":224/, 'packaged tc_mark_encrypt marks 0xe0');
  t.end();
});
