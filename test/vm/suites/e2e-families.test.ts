// End-to-end in the kernel-test VM over IPv6: an IPv6-only cluster and a dual-stack one (underlay and pods in
// both families), three nodes each, one kmesh-daemon per node with the directory store, real ESP on the wire.
// The assertions are in test/vm/lib/e2e-families.ts.
import path from 'node:path';
import t from 'tap';
import { DirClusterStore } from '../../../src/demo/cluster-store.js';
import { espSupport } from '../../../src/demo/esp-support.js';
import { runFamilyScenarios } from '../lib/e2e-families.js';

const esp = process.getuid?.() === 0 ? await espSupport() : { ok: false as const, reason: 'not root' };
const skip = esp.ok
  ? {}
  : { skip: `kernel cannot run ESP here (${esp.reason}); this suite runs in the kernel-test VM` };
for (const [name, prefix, families] of [
  ['IPv6 only', 'kf6', [6]],
  ['dual-stack, IPv4 first', 'kfd', [4, 6]],
] as const) {
  t.test(`daemon end to end, ${name}`, skip, async (t) => {
    const work = t.testdir();
    await runFamilyScenarios(
      { prefix, workDir: work, store: new DirClusterStore(path.join(work, 'store')), families },
      {
        ok: (cond, what, extra) => t.ok(cond, what, cond || extra === undefined ? {} : { found: extra }),
        log: (l) => t.comment(l),
      },
    );
  });
}
