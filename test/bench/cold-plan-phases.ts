// bench:xfrm's cold first plan, phase by phase, each run in a fresh process under the daemon's memory settings (as
// the bench's own first plan): peer ids, screening every peer and planning them (planScreened) timed apart. With
// --retained, what screening and the plan keep after a forced GC instead (the GCs would change the timings, so a
// run measures one or the other). For A/B runs of two builds: run each build's copy alternately.
//   node dist/test/bench/cold-plan-phases.js [--peers 5000] [--runs 9] [--retained]
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { allocatePeerIds } from '../../src/ipsec/peer-ids.js';
import { screenPeers } from '../../src/ipsec/peer-screen.js';
import { planScreened } from '../../src/ipsec/planner.js';
import { loadAddon } from '../../src/native/addon.js';
import { benchCluster } from './bench-cluster.js';
import { underDaemonMemorySettings } from './daemon-memory-settings.js';
import { inFreshProcess } from './fresh-process.js';
import { median } from './median.js';
import { runAsMain } from './run-as-main.js';

/** One run: milliseconds per phase, or MiB kept after each phase (--retained). */
export interface Phases {
  ids: number;
  screen: number;
  plan: number;
  states: number;
  policies: number;
}

/** One cold plan in this process (a fresh one), timed or weighed phase by phase. */
function measure(peers: number, retained: boolean): Phases {
  loadAddon(); // as bench:xfrm and the daemon load it before the first plan
  const cluster = benchCluster(peers);
  const gc = (globalThis as { gc?: () => void }).gc;
  if (retained && gc === undefined) throw new Error('--retained needs node --expose-gc');
  const mark = (): number => {
    if (!retained) return performance.now();
    (gc as () => void)();
    return process.memoryUsage().heapUsed / 1048576;
  };
  const t0 = mark();
  const peerIds = allocatePeerIds(
    new Map(),
    cluster.peers.map((p) => p.name),
  ).ids;
  const t1 = mark();
  const { accepted, rejected } = screenPeers(cluster.local, cluster.peers);
  const t2 = mark();
  const plan = planScreened({ local: cluster.local, accepted, rejected, keys: cluster.keys, peerIds });
  const t3 = mark();
  return { ids: t1 - t0, screen: t2 - t1, plan: t3 - t2, states: plan.states.length, policies: plan.policies.length };
}

/**
 * `runs` cold plans of the bench cluster, each in a fresh process (this program as a child, under the daemon's
 * memory settings), timed or weighed (`retained`, which needs --expose-gc: added here) phase by phase.
 */
export async function coldPlans(peers: number, runs: number, retained = false): Promise<Phases[]> {
  const args = ['--child', '--peers', String(peers), ...(retained ? ['--retained'] : [])];
  const all: Phases[] = [];
  for (let r = 0; r < runs; r++) {
    all.push(await inFreshProcess<Phases>(fileURLToPath(import.meta.url), args, retained ? ['--expose-gc'] : []));
  }
  return all;
}

/** The three phases of a run together. */
export const together = (p: Phases): number => p.ids + p.screen + p.plan;

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      peers: { type: 'string', default: '5000' },
      runs: { type: 'string', default: '9' },
      retained: { type: 'boolean', default: false },
      child: { type: 'boolean', default: false },
    },
  });
  const peers = Number(values.peers);
  const runs = Number(values.runs);
  if (!Number.isInteger(peers) || peers < 1 || peers > 60000)
    throw new Error(`--peers ${values.peers} is not 1..60000`);
  if (!Number.isInteger(runs) || runs < 1 || runs > 999) throw new Error(`--runs ${values.runs} is not 1..999`);
  const code = await underDaemonMemorySettings();
  if (code !== undefined) return code;
  if (values.child) {
    console.log(JSON.stringify(measure(peers, values.retained)));
    return 0;
  }
  const unit = values.retained ? 'MiB kept' : 'ms';
  const all = await coldPlans(peers, runs, values.retained);
  all.forEach((p, r) =>
    console.log(
      `# run ${r + 1}: peer ids ${p.ids.toFixed(1)}, screening ${p.screen.toFixed(1)}, plan ${p.plan.toFixed(1)}, ` +
        `together ${together(p).toFixed(1)} ${unit} (${p.states} SAs, ${p.policies} policies)`,
    ),
  );
  const m = (k: 'ids' | 'screen' | 'plan'): string => median(all.map((p) => p[k])).toFixed(1);
  console.log(
    `cold plan of ${peers} peers, medians of ${runs} fresh processes: peer ids ${m('ids')}, screening ${m('screen')}, ` +
      `plan ${m('plan')}, together ${median(all.map(together)).toFixed(1)} ${unit}`,
  );
  return 0;
}

runAsMain(import.meta.url, 'cold-plan phases', main);
