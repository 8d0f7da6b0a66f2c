// XFRM error counters of the daemon's network namespace: parses /proc/net/xfrm_stat ("XfrmInError  0" per
// line) and reads it (the file is per netns: /proc/net follows the reading process's namespace).
import fsp from 'node:fs/promises';

export type XfrmStat = Record<string, number>;

export function parseXfrmStat(text: string): XfrmStat {
  const out: XfrmStat = {};
  for (const line of text.split('\n')) {
    const m = /^(Xfrm\w+)\s+(\d+)\s*$/.exec(line.trim());
    if (m?.[1] !== undefined && m[2] !== undefined) out[m[1]] = Number(m[2]);
  }
  return out;
}

/** Counters that went up between two readings (name -> delta); counters that did not move are left out. */
export function xfrmStatDelta(before: XfrmStat, after: XfrmStat): XfrmStat {
  const out: XfrmStat = {};
  for (const [name, value] of Object.entries(after)) {
    const d = value - (before[name] ?? 0);
    if (d !== 0) out[name] = d;
  }
  return out;
}

/** Current counters, or {} when the kernel has no XFRM statistics (CONFIG_XFRM_STATISTICS off). */
export async function readXfrmStat(file = '/proc/net/xfrm_stat'): Promise<XfrmStat> {
  try {
    return parseXfrmStat(await fsp.readFile(file, 'utf8'));
  } catch {
    return {};
  }
}
