// bin/kmeshctl.js as a process: the command line's edges. Duration flags bounded (Node's timers overflow past
// 2^31-1 ms), no stray arguments, `help` at any depth, examples at every --help level, --version, recovery hints
// that carry the --store in use, and the keys a rotation refuses (the key already in force, an all-zero key).
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { decodeIpsecPayload } from '../../src/secret/payload.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const bin = path.join(root, 'bin', 'kmeshctl.js');
const built = fs.existsSync(path.join(root, 'dist', 'src', 'cli', 'kmeshctl.bundle.cjs'));
const skip = built ? {} : { skip: 'dist/ not built: npm run build:ts' };

function kmeshctl(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [bin, ...args], {
    encoding: 'utf8',
    env: { PATH: process.env.PATH, HOME: '/nonexistent' },
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const KEY_A = 'ab'.repeat(36);
const KEY_B = 'cd'.repeat(36);

t.test('--timeout is bounded like the daemon durations: one line, exit 2, before any connection', skip, (t) => {
  const store = t.testdir();
  const message = 'error: --timeout: 3000000 s is above the limit of 604800 s (7 days)\n';
  t.same(kmeshctl('--timeout', '3000000', '--store', `dir:${store}`, 'secret', 'create'), {
    code: 2,
    stdout: '',
    stderr: message,
  });
  t.same(fs.readdirSync(store), [], 'nothing was changed');
  t.same(kmeshctl('--kubeconfig', '/nonexistent', '--timeout', '3000000', 'secret', 'get'), {
    code: 2,
    stdout: '',
    stderr: message,
  });
  t.same(
    kmeshctl('--timeout', '', 'secret', 'get').stderr,
    'error: --timeout must be a positive number of seconds, got ""\n',
  );
  for (const args of [
    ['--timeout', '3000000', 'ipsec', 'status', '--wait'],
    ['ipsec', 'status', '--wait', '--timeout', '3000000'],
  ]) {
    t.same(kmeshctl('--store', `dir:${store}`, ...args), { code: 2, stdout: '', stderr: message }, args.join(' '));
  }
  const atLimit = kmeshctl('--timeout', '604800', '--store', `dir:${store}`, 'secret', 'create');
  t.equal(atLimit.code, 0, '7 days itself is accepted');
  t.end();
});

t.test('get and delete take no arguments: refused, nothing deleted', skip, (t) => {
  const store = t.testdir();
  const file = path.join(store, 'kmesh-ipsec', 'ipSec');
  t.equal(kmeshctl('--store', `dir:${store}`, 'secret', 'create').code, 0);
  t.same(kmeshctl('--store', `dir:${store}`, 'secret', 'delete', 'extra'), {
    code: 2,
    stdout: '',
    stderr: 'error: unexpected argument "extra": "secret delete" takes none\n',
  });
  t.ok(fs.existsSync(file), 'the secret is still there');
  t.same(kmeshctl('--store', `dir:${store}`, 'secret', 'get', 'extra'), {
    code: 2,
    stdout: '',
    stderr: 'error: unexpected argument "extra": "secret get" takes none\n',
  });
  t.end();
});

t.test('help at any depth: exit 0 with the help of the named command', skip, (t) => {
  const top = kmeshctl('help');
  t.equal(top.code, 0);
  t.match(top.stdout, /^Usage: kmeshctl \[options\] \[command\]/);
  for (const args of [
    ['help', 'secret', 'create'],
    ['secret', 'help', 'create'],
  ]) {
    const r = kmeshctl(...args);
    t.equal(r.code, 0, args.join(' '));
    t.match(r.stdout, /^Usage: kmeshctl secret create \[options\]\n/, args.join(' '));
    t.equal(r.stdout, kmeshctl('secret', 'create', '--help').stdout, `${args.join(' ')} = secret create --help`);
  }
  t.match(kmeshctl('help', 'secret', 'get').stdout, /^Usage: kmeshctl secret get \[options\]\n/);
  t.same(kmeshctl('help', 'secret', 'nope'), {
    code: 2,
    stdout: '',
    stderr: 'error: no help for "secret nope": no such command\n',
  });
  t.end();
});

t.test('every --help level shows examples', skip, (t) => {
  for (const args of [[], ['secret'], ['secret', 'create'], ['secret', 'get'], ['secret', 'delete']]) {
    const r = kmeshctl(...args, '--help');
    t.equal(r.code, 0, [...args, '--help'].join(' '));
    const example = ['kmeshctl', ...args].join(' ');
    t.match(r.stdout, new RegExp(`\\nExamples:\\n {2}${example}[ \\n]`), `${example} --help`);
  }
  t.end();
});

t.test('--version prints the package version', skip, (t) => {
  const { version } = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as { version: string };
  t.same(kmeshctl('--version'), { code: 0, stdout: `kmeshctl ${version}\n`, stderr: '' });
  t.same(kmeshctl('-V'), { code: 0, stdout: `kmeshctl ${version}\n`, stderr: '' });
  t.end();
});

t.test('recovery hints name the --store in use', skip, (t) => {
  const store = path.join(t.testdir(), 'my store');
  fs.mkdirSync(store);
  const file = path.join(store, 'kmesh-ipsec', 'ipSec');
  const again = `kmeshctl --store 'dir:${store}' secret create`;
  t.same(kmeshctl('--store', `dir:${store}`, 'secret', 'get'), {
    code: 1,
    stdout: '',
    stderr: `error: no IPsec secret: ${file} does not exist; create one with: ${again}\n`,
  });
  fs.mkdirSync(path.dirname(file));
  fs.writeFileSync(file, '{"spi":1}');
  t.match(kmeshctl('--store', `dir:${store}`, 'secret', 'get').stderr, new RegExp(`; replace it with: ${again}\\n$`));
  t.end();
});

t.test('a rotation to the key in force, or to an all-zero AES key, is refused and changes nothing', skip, (t) => {
  const store = t.testdir();
  const file = path.join(store, 'kmesh-ipsec', 'ipSec');
  const run = (...args: string[]) => kmeshctl('--store', `dir:${store}`, ...args);
  t.same(run('secret', 'create', '--key', '00'.repeat(36)), {
    code: 2,
    stdout: '',
    stderr:
      "error: invalid --key: key's AES-256 part (its first 32 bytes) is all zeros, which anyone can guess: give a " +
      'random key, or omit --key for one from the OS CSPRNG; nothing was changed\n',
  });
  t.equal(run('secret', 'create', '--key', '00'.repeat(32) + '01020304').code, 2, 'a salt alone is no key');
  t.same(fs.readdirSync(store), [], 'nothing created');
  t.equal(run('secret', 'create', '--key', KEY_A).code, 0);
  const before = fs.readFileSync(file, 'utf8');
  t.same(run('secret', 'create', '--key', KEY_A.toUpperCase()), {
    code: 2,
    stdout: '',
    stderr:
      'error: invalid --key: it is the key already in force (SPI 1); a rotation must change the key (the same key ' +
      'under a new SPI restarts ESP sequence numbers, so AES-GCM nonces repeat); nothing was changed\n',
  });
  t.equal(fs.readFileSync(file, 'utf8'), before, 'the secret is unchanged');
  t.notMatch(run('secret', 'create', '--key', KEY_A).stderr, /abab|ABAB/, 'the key is not echoed');
  t.same(run('secret', 'create', '--key', '00'.repeat(31) + '01' + '00'.repeat(4)).code, 0, 'one set bit is a key');
  t.same(run('secret', 'create', '--key', KEY_B), { code: 0, stdout: 'IPsec key rotated (SPI 2 -> 3)\n', stderr: '' });
  t.equal(decodeIpsecPayload(fs.readFileSync(file)).key.toString('hex'), KEY_B);
  t.end();
});
