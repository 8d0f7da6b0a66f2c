// `npm run bench:dump` (issue 15, memory): what a whole-table SA dump costs the daemon's process in resident
// memory, against the bytes the kernel sends. In a namespace of its own it installs --sas N SAs (default 20,000:
// 5,000 peers with both keys held, as during a rotation), then dumps them --dumps K times (default 3) through
// NetlinkXfrmKernel.dumpStates, as the kept view does, holding the decoded SAs until the dump is read. Per dump it
// resets the process's peak RSS (/proc/self/clear_refs) and prints how far the peak rose above the RSS before the
// dump, as a ratio to the reply's bytes (measured by one raw dump first): the reply must be held once, the decoded
// SAs add their share, anything more is copying. Then the RSS after a collection (the dump's memory given back).
// Runs under the daemon's memory settings (restarting itself with them); where this kernel cannot run ESP it runs
// in the kernel-test VM. Figures only; nothing here asserts on them.
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { parseArgs } from 'node:util';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { addonXfrmTransact } from '../../src/xfrm/netlink-addon.js';
import { encodeDumpStates } from '../../src/xfrm/netlink-codec.js';
import { NetlinkXfrmKernel } from '../../src/xfrm/netlink-kernel.js';
import type { XfrmOp } from '../../src/xfrm/types.js';
import { describeMemorySettings, underDaemonMemorySettings } from './daemon-memory-settings.js';
import { runInVmWithoutEsp } from './esp-or-vm.js';

const MIB = 1024 * 1024;
const say = (line: string): void => console.log(line);

/** VmRSS or VmHWM of this process, in bytes. */
function vm(field: 'VmRSS' | 'VmHWM'): number {
  const line = readFileSync('/proc/self/status', 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`${field}:`));
  if (line === undefined) throw new Error(`/proc/self/status has no ${field}`);
  return Number(line.split(/\s+/)[1]) * 1024;
}

function gc(): void {
  (runInNewContext('gc') as () => void)();
}

/**
 * Memory at rest: three full collections 100 ms apart. A Buffer over memory the addon allocated is freed by a
 * callback that runs on the event loop once V8 has swept its ArrayBuffer (a collection, then a later one, then a
 * turn of the loop); a Buffer V8 allocated itself is freed by the sweep. Measured with one wait, the first kind
 * still held its last reply.
 */
async function settle(): Promise<void> {
  for (let i = 0; i < 3; i++) {
    gc();
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

function addStates(n: number): XfrmOp[] {
  const key = Buffer.alloc(36, 9);
  const ops: XfrmOp[] = [];
  for (let i = 0; i < n; i++) {
    const dst = [198, 18 + (i >> 17), (i >> 9) & 0xff, (i >> 1) & 0xff].join('.');
    ops.push({
      kind: 'addState',
      state: {
        family: 4,
        src: '198.17.0.1',
        dst,
        spi: 1 + (i & 1),
        proto: 50,
        mode: 'tunnel',
        reqid: 1,
        aead: { name: 'rfc4106(gcm(aes))', key, icvBits: 128 },
        mark: { value: 0xe0, mask: 0xff },
        esn: true,
        replayWindow: 128,
      },
    });
  }
  return ops;
}

async function bench(sas: number, dumps: number): Promise<void> {
  setFlagsFromString('--expose-gc');
  const ns = `kmt-dump-bench-${process.pid}`;
  execFileSync('ip', ['netns', 'add', ns]);
  try {
    const netns = `/run/netns/${ns}`;
    const kernel = new NetlinkXfrmKernel({ netns });
    let ops: XfrmOp[] | undefined = addStates(sas);
    const failed = (await kernel.apply(ops)).filter((r) => r.errno !== 0);
    if (failed.length > 0) throw new Error(`${failed.length} of ${sas} SAs were refused: ${failed[0]?.message}`);
    ops = undefined;
    let raw: Buffer | undefined = await addonXfrmTransact()(netns, encodeDumpStates(1));
    const replyBytes = raw.length;
    raw = undefined;
    await settle();
    say(`# ${describeMemorySettings()}; kernel ${os.release()}, node ${process.version}`);
    say(`# ${sas} SAs installed; one dump's reply: ${(replyBytes / MIB).toFixed(1)} MiB`);
    const rows: { rise: number; ms: number; after: number; before: number }[] = [];
    for (let d = 0; d < dumps; d++) {
      const before = vm('VmRSS');
      writeFileSync('/proc/self/clear_refs', '5'); // the peak (VmHWM) starts again from the current RSS
      const t0 = performance.now();
      let states = await kernel.dumpStates();
      const ms = performance.now() - t0;
      const rise = vm('VmHWM') - before;
      if (states.length !== sas) throw new Error(`dump ${d + 1} returned ${states.length} SAs, not ${sas}`);
      states = [];
      await settle();
      const after = vm('VmRSS');
      rows.push({ rise, ms, after, before });
      say(
        `#   dump ${d + 1}: ${ms.toFixed(0)} ms, peak ${(rise / MIB).toFixed(1)} MiB above the ${(before / MIB).toFixed(1)} MiB before ` +
          `(${(rise / replyBytes).toFixed(2)}x the reply), RSS after a collection ${(after / MIB).toFixed(1)} MiB`,
      );
    }
    const median = <T>(xs: T[], by: (x: T) => number): T =>
      [...xs].sort((a, b) => by(a) - by(b))[Math.floor(xs.length / 2)] as T;
    const m = median(rows, (r) => r.rise);
    say(
      `xfrm dump N=${sas} SAs: reply ${(replyBytes / MIB).toFixed(1)} MiB, peak rise ${(m.rise / MIB).toFixed(1)} MiB = ` +
        `${(m.rise / replyBytes).toFixed(2)}x the reply (median of ${dumps}), RSS after ${(m.after / MIB).toFixed(1)} MiB ` +
        `(${((m.after - m.before) / MIB).toFixed(1)} MiB over before), ${median(rows, (r) => r.ms).ms.toFixed(0)} ms per dump`,
    );
  } finally {
    execFileSync('ip', ['netns', 'del', ns]);
  }
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      sas: { type: 'string', default: '20000' },
      dumps: { type: 'string', default: '3' },
      'in-vm': { type: 'boolean', default: false },
    },
  });
  const sas = Number(values.sas);
  const dumps = Number(values.dumps);
  if (!Number.isInteger(sas) || sas < 1 || sas > 200_000) {
    say(`--sas ${values.sas}: expected a whole number of SAs from 1 to 200000`);
    return 2;
  }
  if (!Number.isInteger(dumps) || dumps < 1 || dumps > 50) {
    say(`--dumps ${values.dumps}: expected a whole number of dumps from 1 to 50`);
    return 2;
  }
  if (process.getuid?.() !== 0) {
    say('bench:dump needs root (a network namespace and its SAs)');
    return 1;
  }
  if (!values['in-vm']) {
    const inVm = await runInVmWithoutEsp(
      {
        command: `node dist/test/bench/dump-memory.js --in-vm --sas ${sas} --dumps ${dumps}`,
        timeoutMs: 30 * 60_000,
        memoryMb: 2048,
      },
      (line) => say(`# ${line}`),
    );
    if (inVm !== undefined) return inVm;
  }
  const relaunched = await underDaemonMemorySettings();
  if (relaunched !== undefined) return relaunched;
  await bench(sas, dumps);
  return 0;
}

process.exitCode = await main();
