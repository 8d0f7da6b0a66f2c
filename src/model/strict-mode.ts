// Strict ingress (--ipsec-strict): what the node does with plaintext that arrives on the underlay from a peer
// node's pod CIDR for a managed local pod, which should only ever arrive inside ESP. Such packets are counted
// in every mode (continuous evidence of a plaintext path); `audit` is the mode to watch before `enforce`,
// which drops them. The numbers are bpf/maps.h's enum km_strict.

export const STRICT_MODES = ['off', 'audit', 'enforce'] as const;
export type StrictMode = (typeof STRICT_MODES)[number];

export function strictModeNumber(mode: StrictMode): number {
  return STRICT_MODES.indexOf(mode);
}

/** The mode for a number read from the kernel; throws a one-line error for a number outside the enum. */
export function strictModeOf(n: number): StrictMode {
  const mode = STRICT_MODES[n];
  if (mode === undefined) throw new Error(`strict mode ${n} is not one of 0 (off), 1 (audit), 2 (enforce)`);
  return mode;
}
