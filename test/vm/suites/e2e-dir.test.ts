// End-to-end in the kernel-test VM with the directory store (the no-cluster default): three nodes with two
// pods each in network namespaces, one kmesh-daemon per node through start_kmesh.sh, real ESP on the wire.
// Every scenario of issue 6 item 5 is an assertion here (see test/vm/lib/e2e-scenarios.ts).
import path from 'node:path';
import t from 'tap';
import { DirClusterStore } from '../../../src/demo/cluster-store.js';
import { espSupport } from '../../../src/demo/esp-support.js';
import { runScenarios } from '../lib/e2e-scenarios.js';

const esp = process.getuid?.() === 0 ? await espSupport() : { ok: false as const, reason: 'not root' };
const skip = esp.ok
  ? {}
  : { skip: `kernel cannot run ESP here (${esp.reason}); this suite runs in the kernel-test VM` };
{
  t.test('daemon end to end, directory store', skip, async (t) => {
    const work = t.testdir();
    await runScenarios(
      { prefix: 'kme', workDir: work, store: new DirClusterStore(path.join(work, 'store')) },
      {
        ok: (cond, what, extra) => t.ok(cond, what, cond || extra === undefined ? {} : { found: extra }),
        log: (l) => t.comment(l),
      },
    );
  });
}
