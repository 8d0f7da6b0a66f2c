// Test oracle for the XFRM netlink adapter: runs iproute2 (`ip xfrm state|policy`) and parses its text output into
// the same shapes as src/xfrm/types.ts, so tests compare what the kernel holds, as another tool sees it, with ours.
// Shared by the host policy tests and the VM state suites. Also creates and removes the test's own namespaces.
import { execFileSync } from 'node:child_process';
import type { XfrmPolicy, XfrmState, XfrmTemplate } from '../../src/xfrm/types.js';

export function ip(args: string[], netns?: string): string {
  const full = netns ? ['-n', netns, ...args] : args;
  return execFileSync('ip', full, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 1 << 28 });
}

/** Runs `ip` and returns its failure text (stderr) instead of throwing; '' on success. */
export function ipFails(args: string[], netns?: string): string {
  try {
    ip(args, netns);
    return '';
  } catch (e) {
    return String((e as { stderr?: unknown }).stderr ?? e);
  }
}

export function addNetns(name: string): void {
  ipFails(['netns', 'del', name]);
  ip(['netns', 'add', name]);
}

export function delNetns(name: string): void {
  ipFails(['netns', 'del', name]);
}

/** Splits `ip xfrm` output into one token list per object (objects start with an unindented "src" line). */
function objects(text: string): string[][] {
  const out: string[][] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    if (!/^\s/.test(line)) out.push([]);
    out.at(-1)?.push(...line.trim().split(/\s+/));
  }
  return out;
}

function after(tokens: string[], key: string, from = 0): string | undefined {
  const i = tokens.indexOf(key, from);
  return i < 0 ? undefined : tokens[i + 1];
}

function markOf(text: string | undefined): { value: number; mask: number } | undefined {
  if (text === undefined) return undefined;
  const [v, m] = text.split('/');
  return { value: Number(v), mask: m === undefined ? 0xffffffff : Number(m) };
}

const PROTOS: Record<string, number> = { esp: 50, ah: 51, comp: 108, route2: 43, hao: 60, tcp: 6, udp: 17, icmp: 1 };
const protoOf = (p: string | undefined): number => (p === undefined ? 0 : (PROTOS[p] ?? Number(p)));
const modeOf = (m: string | undefined): XfrmTemplate['mode'] =>
  m === 'tunnel' ? 'tunnel' : m === 'transport' ? 'transport' : 'other';
const STATE_FLAGS = new Set(['esn', 'noecn', 'decap-dscp', 'nopmtudisc', 'wildrecv', 'icmp', 'af-unspec', 'align4']);
const familyOf = (addr: string): 4 | 6 => (addr.includes(':') ? 6 : 4);

/** `ip xfrm policy` (main type only, as we dump) parsed into XfrmPolicy shapes without kernel indexes. */
export function oraclePolicies(netns?: string): XfrmPolicy[] {
  return objects(ip(['xfrm', 'policy', 'list'], netns))
    .filter((t) => after(t, 'ptype') === undefined || after(t, 'ptype') === 'main')
    .map((t) => {
      const src = after(t, 'src') ?? '';
      const tmplStart = t.indexOf('tmpl');
      const head = tmplStart < 0 ? t : t.slice(0, tmplStart);
      const templates: XfrmTemplate[] = [];
      for (let i = tmplStart; i >= 0; i = t.indexOf('tmpl', i + 1)) {
        const next = t.indexOf('tmpl', i + 1);
        const tt = t.slice(i, next < 0 ? undefined : next);
        const tsrc = after(tt, 'src') ?? '';
        templates.push({
          family: familyOf(tsrc || (after(tt, 'dst') ?? '')),
          src: tsrc,
          dst: after(tt, 'dst') ?? '',
          proto: protoOf(after(tt, 'proto')),
          mode: modeOf(after(tt, 'mode')),
          reqid: Number(after(tt, 'reqid') ?? 0),
          spi: Number(after(tt, 'spi') ?? 0),
        });
      }
      const policy: XfrmPolicy = {
        dir: (after(head, 'dir') ?? 'in') as XfrmPolicy['dir'],
        selector: {
          family: familyOf(src),
          src,
          dst: after(head, 'dst') ?? '',
          proto: protoOf(after(head, 'proto')),
        },
        priority: Number(after(head, 'priority') ?? 0),
        action: after(head, 'action') === 'block' ? 'block' : 'allow',
        templates,
      };
      const mark = markOf(after(head, 'mark'));
      if (mark) policy.mark = mark;
      return policy;
    });
}

/** `ip xfrm state` parsed into XfrmState shapes (keys included: iproute2 prints them). */
export function oracleStates(netns?: string): XfrmState[] {
  return objects(ip(['xfrm', 'state', 'list'], netns)).map((t) => {
    const src = after(t, 'src') ?? '';
    const flags: string[] = [];
    for (let i = t.indexOf('flag') + 1; i > 0 && STATE_FLAGS.has(t[i] ?? ''); i++) flags.push(t[i] ?? '');
    const esnWindow = after(t, 'replay_window');
    const state: XfrmState = {
      family: familyOf(src),
      src,
      dst: after(t, 'dst') ?? '',
      spi: Number(after(t, 'spi') ?? 0),
      proto: protoOf(after(t, 'proto')),
      mode: modeOf(after(t, 'mode')),
      reqid: Number(after(t, 'reqid') ?? 0),
      esn: flags.includes('esn'),
      replayWindow:
        esnWindow !== undefined ? Number(esnWindow.replace(/,$/, '')) : Number(after(t, 'replay-window') ?? 0),
    };
    const aeadAt = t.indexOf('aead');
    if (aeadAt >= 0) {
      state.aead = {
        name: t[aeadAt + 1] ?? '',
        key: Buffer.from((t[aeadAt + 2] ?? '').replace(/^0x/, ''), 'hex'),
        icvBits: Number(t[aeadAt + 3] ?? 0),
      };
    }
    const mark = markOf(after(t, 'mark'));
    if (mark) state.mark = mark;
    const outputMark = markOf(after(t, 'output-mark'));
    if (outputMark) state.outputMark = outputMark;
    return state;
  });
}

/** JSON with object keys sorted and Buffers as hex, so equal objects give equal text whatever their key order. */
function stableJson(value: unknown): string {
  if (Buffer.isBuffer(value)) return JSON.stringify(value.toString('hex'));
  if (Array.isArray(value)) return `[${value.map(stableJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : 1));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${stableJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/** Order-independent canonical form for comparing sets of objects. */
export function canonical<T>(items: T[], strip: (item: T) => unknown = (x) => x): string[] {
  return items.map((x) => stableJson(strip(x))).sort();
}
