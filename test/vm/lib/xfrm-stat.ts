// XFRM error counters of a network namespace (/proc/net/xfrm_stat, e.g. `XfrmInNoStates 3`): parsing,
// reading, and the assertion datapath tests end with. Every counter in that file counts an error or a
// drop, so any counter that moved between two readings is a failure; the message names each one.
import { execOk } from './netns.js';

export type XfrmStat = Readonly<Record<string, number>>;

/** Parses /proc/net/xfrm_stat text; throws naming the first line that is not `Name <integer>`. */
export function parseXfrmStat(text: string): XfrmStat {
  const stat: Record<string, number> = {};
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    const m = /^\s*(Xfrm\w+)\s+(\d+)\s*$/.exec(line);
    if (!m) throw new Error(`unexpected line in xfrm_stat: '${line}'`);
    stat[m[1]!] = Number(m[2]);
  }
  if (Object.keys(stat).length === 0) throw new Error('xfrm_stat is empty (kernel without CONFIG_XFRM_STATISTICS?)');
  return stat;
}

/** The XFRM counters as seen from inside `netns` (undefined: this process's namespace). */
export async function readXfrmStat(netns: string | undefined): Promise<XfrmStat> {
  return parseXfrmStat(await execOk(netns, ['cat', '/proc/net/xfrm_stat']));
}

export interface XfrmCounterChange {
  name: string;
  before: number;
  after: number;
  delta: number;
}

/** Counters whose value differs between the two readings, in the kernel's order. */
export function xfrmCounterChanges(before: XfrmStat, after: XfrmStat): XfrmCounterChange[] {
  const names = [...new Set([...Object.keys(after), ...Object.keys(before)])];
  const changes: XfrmCounterChange[] = [];
  for (const name of names) {
    const b = before[name] ?? 0;
    const a = after[name] ?? 0;
    if (a !== b) changes.push({ name, before: b, after: a, delta: a - b });
  }
  return changes;
}

/** Throws when any XFRM error counter moved, naming each: `XfrmInNoStates moved by 4 (0 -> 4)`. */
export function assertXfrmCountersUnchanged(before: XfrmStat, after: XfrmStat, where = ''): void {
  const changes = xfrmCounterChanges(before, after);
  if (changes.length === 0) return;
  const list = changes.map((c) => `${c.name} moved by ${c.delta} (${c.before} -> ${c.after})`).join(', ');
  throw new Error(`XFRM error counters moved${where === '' ? '' : ` in ${where}`}: ${list}`);
}
