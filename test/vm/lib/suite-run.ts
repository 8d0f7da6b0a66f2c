// How run-suites.ts runs tap suites inside one VM boot (pure parts): selecting suites, the guest shell
// loop that runs each compiled suite as a node program under `timeout`, framing its output with marker
// lines, and reading back per-suite tap summaries (`# { total: N, pass: N, fail: N, skip: N }`).

export interface TapCounts {
  total: number;
  pass: number;
  fail: number;
  skip: number;
}

export const ZERO_COUNTS: TapCounts = { total: 0, pass: 0, fail: 0, skip: 0 };

export function addCounts(a: TapCounts, b: TapCounts): TapCounts {
  return { total: a.total + b.total, pass: a.pass + b.pass, fail: a.fail + b.fail, skip: a.skip + b.skip };
}

export function formatCounts(c: TapCounts): string {
  return `# { total: ${c.total}, pass: ${c.pass}, fail: ${c.fail}, skip: ${c.skip} }`;
}

/** The last top-level tap summary in `output` (todo counts as skip), or undefined when there is none. */
export function parseTapSummary(output: string): TapCounts | undefined {
  const line = output
    .split('\n')
    .filter((l) => /^# \{ total: \d+/.test(l))
    .at(-1);
  if (line === undefined) return undefined;
  const num = (key: string): number => Number(new RegExp(`\\b${key}: (\\d+)`).exec(line)?.[1] ?? 0);
  return { total: num('total'), pass: num('pass'), fail: num('fail'), skip: num('skip') + num('todo') };
}

/** Suite names (file names without .test.ts) chosen by a comma-separated filter; all when empty. */
export function selectSuites(available: readonly string[], filter: string | undefined): string[] {
  const wanted = (filter ?? '')
    .split(',')
    .map((s) => s.trim().replace(/\.test\.[jt]s$/, ''))
    .filter((s) => s !== '');
  if (wanted.length === 0) return [...available];
  const unknown = wanted.filter((w) => !available.includes(w));
  if (unknown.length > 0) {
    throw new Error(`unknown VM suite(s) ${unknown.join(', ')} (available: ${available.join(', ') || 'none'})`);
  }
  return available.filter((s) => wanted.includes(s));
}

const BEGIN = 'KMESH_VM_SUITE_BEGIN';
const END = 'KMESH_VM_SUITE_END';

/** Seconds a suite may run in the guest: KMESH_VM_SUITE_TIMEOUT_S if set, else 900 for the daemon
 * end-to-end suites (three nodes of real daemons under TCG) and 300 for the others. */
export function suiteTimeoutFor(name: string, override: number | undefined): number {
  if (override !== undefined) return override;
  return name.startsWith('e2e-') ? 900 : 300;
}

/** Guest shell command running each compiled suite in turn; a suite is killed after its timeoutS (+30 s). */
export function suiteLoopCommand(
  suites: readonly { name: string; file: string; timeoutS: number }[],
  nodeOptions: string,
): string {
  const parts = suites.map(({ name, file, timeoutS }) =>
    [
      `echo "${BEGIN} ${name}"`,
      `TAP_TIMEOUT=${timeoutS} timeout -k 10 ${timeoutS + 30} node ${nodeOptions} '${file}' 2>&1`,
      `echo "${END} ${name} rc=$?"`,
    ].join('; '),
  );
  return `${parts.join('; ')}; true`;
}

export interface SuiteOutcome {
  name: string;
  counts: TapCounts;
  /** Exit status of the suite process (124/137 when `timeout` ended it), undefined if it never finished. */
  exitCode: number | undefined;
  output: string;
  /** Why the suite counts as failed beyond its own failing tests (crash, timeout, no summary). */
  problem: string | undefined;
}

/** Splits the boot's output into per-suite outcomes, in the order the suites were meant to run. */
export function suiteOutcomes(suites: readonly { name: string; timeoutS: number }[], output: string): SuiteOutcome[] {
  const lines = output.split('\n');
  return suites.map(({ name, timeoutS }) => {
    const begin = lines.indexOf(`${BEGIN} ${name}`);
    if (begin < 0) {
      return {
        name,
        counts: ZERO_COUNTS,
        exitCode: undefined,
        output: '',
        problem: 'never started (the VM run ended before it)',
      };
    }
    const endAt = lines.findIndex((l, i) => i > begin && l.startsWith(`${END} ${name} rc=`));
    const body = lines.slice(begin + 1, endAt < 0 ? undefined : endAt).join('\n');
    const counts = parseTapSummary(body) ?? ZERO_COUNTS;
    if (endAt < 0)
      return {
        name,
        counts,
        exitCode: undefined,
        output: body,
        problem: 'did not finish (the VM run ended during it)',
      };
    const exitCode = Number(/rc=(\d+)/.exec(lines[endAt]!)?.[1]);
    let problem: string | undefined;
    if (exitCode === 124 || exitCode === 137) problem = `killed after ${timeoutS + 30} s in the guest`;
    else if (parseTapSummary(body) === undefined) problem = `exited with ${exitCode} without a tap summary`;
    else if (exitCode !== 0 && counts.fail === 0) problem = `exited with ${exitCode} although no test failed`;
    return { name, counts, exitCode, output: body, problem };
  });
}

/**
 * The failing tests of a suite's tap output (subtests and their parents, in order), each with the first
 * `diagLines` lines of its diagnostic block, so a run's closing summary says what failed without the whole
 * console log (which CI does not keep); at most `maxLines` lines in all.
 */
export function failureExcerpt(output: string, maxLines = 40, diagLines = 8): string[] {
  const lines = output.split('\n');
  const out: string[] = [];
  for (let i = 0; i < lines.length && out.length < maxLines; i++) {
    const line = lines[i]!;
    if (!/^\s*not ok \d+/.test(line)) continue;
    out.push(line.trimEnd());
    const indent = /^\s*/.exec(line)![0].length;
    // The YAML block tap writes after a failing assertion: `  ---` … `  ...`, indented past the result.
    if (lines[i + 1]?.trim() !== '---') continue;
    let j = i + 2;
    for (; j < lines.length && lines[j]!.trim() !== '...'; j++) {
      if (j - i - 1 <= diagLines && /^\s*/.exec(lines[j]!)![0].length > indent) out.push(lines[j]!.trimEnd());
    }
    i = j;
  }
  return out.slice(0, maxLines);
}
