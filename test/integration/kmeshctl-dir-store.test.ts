// kmeshctl with --store dir:PATH: the same flows without a cluster, against the daemon's file layout.
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import type { Test } from 'tap';
import { decodeIpsecPayload } from '../../src/secret/payload.js';
import { kmeshctl, nodeInfo } from '../fixtures/kmeshctl-harness.js';

const SPEC_HEX = '2dc9410d7cd6b324461bf16db518646594276c5362c30fc476ebca3f1a394b6ed4462161';
const SPEC_PAYLOAD =
  '{"spi":1,"aeadKeyName":"rfc4106(gcm(aes))","aeadKey":"LclBDXzWsyRGG/FttRhkZZQnbFNiww/EduvKPxo5S27URiFh","length":128}';

function dirStore(t: Test) {
  const root = t.testdir();
  const file = path.join(root, 'kmesh-ipsec', 'ipSec');
  return { root, file, run: (...args: string[]) => kmeshctl(['--store', `dir:${root}`, ...args], {}) };
}

t.test('create, rotate, get, delete in a directory', async (t) => {
  const { root, file, run } = dirStore(t);
  t.same(await run('secret', 'create', '--key', SPEC_HEX), {
    code: 0,
    stdout: 'IPsec secret created (SPI 1)\n',
    stderr: '',
  });
  t.equal(fs.readFileSync(file, 'utf8'), SPEC_PAYLOAD, 'the payload, byte for byte');
  t.equal(fs.statSync(file).mode & 0o777, 0o600);
  const json = JSON.parse((await run('secret', 'get', '-o', 'json')).stdout) as Record<string, unknown>;
  t.match(json, { name: 'kmesh-ipsec', namespace: 'kmesh-system', spi: 1, aeadKey: SPEC_HEX, length: 128 });
  t.match(json.creationTimestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  t.same(await run('secret', 'create'), { code: 0, stdout: 'IPsec key rotated (SPI 1 -> 2)\n', stderr: '' });
  const rotated = JSON.parse((await run('secret', 'get', '-o', 'json')).stdout) as Record<string, unknown>;
  t.equal(rotated.creationTimestamp, json.creationTimestamp, 'creation time kept across rotation');
  t.equal(decodeIpsecPayload(fs.readFileSync(file)).spi, 2);
  t.match(
    (await run('secret', 'get')).stdout,
    /^Secret name: kmesh-ipsec\nNamespace: kmesh-system\nCreated: .* UTC\nIPsec Configuration:\n\{\n {2}"spi": 2,/,
  );
  t.same(await run('secret', 'delete'), { code: 0, stdout: `IPsec secret deleted (${file})\n`, stderr: '' });
  t.notOk(fs.existsSync(file));
  t.same(await run('secret', 'delete'), {
    code: 1,
    stdout: '',
    stderr: `error: nothing to delete: ${file} does not exist\n`,
  });
  t.same(await run('secret', 'get'), {
    code: 1,
    stdout: '',
    stderr: `error: no IPsec secret: ${file} does not exist; create one with: kmeshctl --store dir:${root} secret create\n`,
  });
  t.same(fs.readdirSync(root).sort(), ['kmesh-ipsec'], 'no lock or bookkeeping left behind');
});

t.test('after delete, SPIs continue above those in kmeshnodeinfos/*.json', async (t) => {
  const { root, run } = dirStore(t);
  fs.mkdirSync(path.join(root, 'kmeshnodeinfos'));
  fs.writeFileSync(path.join(root, 'kmeshnodeinfos', 'node-a.json'), JSON.stringify(nodeInfo('node-a', 4)));
  fs.writeFileSync(path.join(root, 'kmeshnodeinfos', 'node-b.json'), JSON.stringify(nodeInfo('node-b', 6)));
  t.same(await run('secret', 'create'), { code: 0, stdout: 'IPsec secret created (SPI 7)\n', stderr: '' });
});

t.test('create, create, delete, create: never an SPI a node holds but has not advertised', async (t) => {
  const { root, run } = dirStore(t);
  t.equal((await run('secret', 'create')).code, 0);
  t.equal((await run('secret', 'create')).code, 0);
  // The node took SPI 2 (installed its SAs) but has not advertised it yet: only its status says so.
  fs.mkdirSync(path.join(root, 'kmeshnodeinfos'));
  const lagging = { ...nodeInfo('node-a', 1), status: { heldSpis: [1, 2], highestSpi: 2, sendSpis: [1] } };
  fs.writeFileSync(path.join(root, 'kmeshnodeinfos', 'node-a.json'), JSON.stringify(lagging));
  t.equal((await run('secret', 'delete')).code, 0);
  t.same(await run('secret', 'create'), { code: 0, stdout: 'IPsec secret created (SPI 3)\n', stderr: '' });
});

t.test('a malformed file is reported by get and replaced by create', async (t) => {
  const { root, file, run } = dirStore(t);
  fs.mkdirSync(path.dirname(file));
  fs.writeFileSync(file, '{"spi":3,"aeadKeyName":"rfc4106(gcm(aes))","aeadKey":"AAAA","length":128}');
  t.same(await run('secret', 'get'), {
    code: 1,
    stdout: '',
    stderr: `error: ${file} is malformed: aeadKey decodes to 3 bytes, need 36; replace it with: kmeshctl --store dir:${root} secret create\n`,
  });
  t.same(await run('secret', 'create'), { code: 0, stdout: 'IPsec key rotated (SPI 3 -> 4)\n', stderr: '' });
});

t.test('concurrent creates in one directory hand out distinct SPIs', async (t) => {
  const { file, run } = dirStore(t);
  const results = await Promise.all([1, 2, 3, 4].map(() => run('secret', 'create')));
  t.same(
    results.map((r) => r.code),
    [0, 0, 0, 0],
  );
  const spis = results.map((r) => Number(/SPI (?:\d+ -> )?(\d+)\)/.exec(r.stdout)?.[1])).sort();
  t.same(spis, [1, 2, 3, 4]);
  t.equal(decodeIpsecPayload(fs.readFileSync(file)).spi, 4);
});

t.test('a bad key or a missing directory changes nothing', async (t) => {
  const { root, run } = dirStore(t);
  const bad = await run('secret', 'create', '--key', 'abc');
  t.equal(bad.code, 2);
  t.same(fs.readdirSync(root), []);
  const missing = path.join(root, 'absent');
  t.same(await kmeshctl(['--store', `dir:${missing}`, 'secret', 'create'], {}), {
    code: 1,
    stdout: '',
    stderr: `error: store directory ${missing} does not exist; create it first (mkdir -p ${missing})\n`,
  });
  t.notOk(fs.existsSync(missing));
});

t.test('ipsec status: per node facts and verdict; --wait until converged or --timeout', async (t) => {
  const { root, run } = dirStore(t);
  t.equal((await run('secret', 'create')).code, 0);
  t.equal((await run('secret', 'create')).code, 0);
  const dir = path.join(root, 'kmeshnodeinfos');
  fs.mkdirSync(dir);
  const write = (name: string, spi: number, held: number[], send: number[]) =>
    fs.writeFileSync(
      path.join(dir, `${name}.json`),
      JSON.stringify({
        ...nodeInfo(name, spi),
        status: { heldSpis: held, highestSpi: Math.max(...held), sendSpis: send, peerCount: 1, failingPeerCount: 0 },
      }),
    );
  write('node-a', 2, [1, 2], [2]);
  write('node-b', 1, [1, 2], [1]);
  const text = await run('ipsec', 'status');
  t.equal(text.code, 0, 'without --wait: exit 0 whatever the verdict');
  t.match(text.stdout, /^Secret .*kmesh-ipsec\/ipSec: SPI 2\nNODE/);
  t.match(text.stdout, /\nnode-b +1 +1,2 +1 /);
  t.match(text.stdout, /not converged on SPI 2: 1 of 2 nodes lag: node-b: advertises SPI 1; still sends with SPI 1\n$/);
  const json = JSON.parse((await run('ipsec', 'status', '-o', 'json')).stdout) as {
    secretSpi: number;
    converged: boolean;
  };
  t.match(json, { secretSpi: 2, converged: false });

  const timedOut = await run('ipsec', 'status', '--wait', '--timeout', '1.5');
  t.equal(timedOut.code, 1);
  t.equal(
    timedOut.stderr,
    'error: still not converged on SPI 2: 1 of 2 nodes lag: node-b: advertises SPI 1; still sends with SPI 1 after 1.5 s (--timeout)\n',
  );
  const waiting = run('ipsec', 'status', '--wait', '--timeout', '20');
  setTimeout(() => write('node-b', 2, [1, 2], [2]), 1500);
  const converged = await waiting;
  t.equal(converged.code, 0, 'returns once node-b switched');
  t.match(
    converged.stdout,
    /converged on SPI 2; old SPIs still held \(removed once every peer acknowledged\): node-a \(SPI 1\), node-b \(SPI 1\)\n$/,
  );
  t.equal((await run('ipsec', 'status', '--wait', '--timeout', 'x')).code, 2);
});
