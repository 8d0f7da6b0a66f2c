// The directory source writes this node's KmeshNodeInfo status as a status subresource would: only into its
// own file, only once the spec exists, never when unchanged, and a later spec write keeps it.
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { DirSource } from '../../src/daemon/sources/dir-source.js';
import { nodeKeyStatus, nodeKeyStatusJson } from '../../src/model/node-key-status.js';

t.test('status written into the own file, kept across spec writes, not rewritten when unchanged', async (t) => {
  const root = t.testdir({ kmeshnodeinfos: {} });
  const source = new DirSource(root, 'node-1', { pollMs: 60_000 });
  const file = path.join(root, 'kmeshnodeinfos', 'node-1.json');
  const status = nodeKeyStatus({ heldSpis: [1, 2], sendSpis: [2], keyProblem: '', peerCount: 2, failingPeers: [] });
  await source.publishNodeStatus(status);
  t.notOk(fs.existsSync(file), 'no object yet: nothing written');
  const info = { name: 'node-1', spi: 1, addresses: ['198.18.0.1'], bootID: 'b', podCIDRs: ['10.244.1.0/24'] };
  await source.publishNodeInfo(info);
  await source.publishNodeStatus(status);
  const read = () => JSON.parse(fs.readFileSync(file, 'utf8')) as { spec: { spi: number }; status: unknown };
  t.same(read().status, nodeKeyStatusJson(status));
  const mtime = fs.statSync(file).mtimeMs;
  const ino = fs.statSync(file).ino;
  await source.publishNodeStatus(status);
  t.equal(fs.statSync(file).ino, ino, 'unchanged status: the file is not replaced');
  t.equal(fs.statSync(file).mtimeMs, mtime);
  await source.publishNodeInfo({ ...info, spi: 2 });
  t.equal(read().spec.spi, 2);
  t.same(read().status, nodeKeyStatusJson(status), 'a spec write keeps the status');
  await source.stop();
});
