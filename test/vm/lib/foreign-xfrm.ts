// XFRM objects of "another tool" that the daemon must never touch: an ESP tunnel state and an outbound policy
// between 192.0.2.1 and 192.0.2.2 (TEST-NET-1, never a node address in the suites), as `ip xfrm ... add`
// arguments. Suites install them before the daemon starts and compare them afterwards.

export interface ForeignXfrm {
  /** The reqid that marks the objects as foreign (hex `0x…` or decimal, as ip(8) accepts). */
  reqid: string;
  spi: string;
  /** One byte repeated into the 36-byte AEAD key. */
  keyByte: string;
  /** The policy's selector destination (its source is 192.0.2.0/24). */
  policyDst: string;
  /** Policy priority, when not the kernel's default. */
  priority?: string;
}

const TUNNEL = ['src', '192.0.2.1', 'dst', '192.0.2.2'];

/** Arguments after `ip xfrm state add`. */
export function foreignStateArgs(f: ForeignXfrm): string[] {
  return [
    ...TUNNEL,
    ...['proto', 'esp', 'spi', f.spi, 'reqid', f.reqid, 'mode', 'tunnel'],
    ...['aead', 'rfc4106(gcm(aes))', `0x${f.keyByte.repeat(36)}`, '128'],
  ];
}

/** Arguments after `ip xfrm policy add`. */
export function foreignPolicyArgs(f: ForeignXfrm): string[] {
  return [
    ...['src', '192.0.2.0/24', 'dst', f.policyDst, 'dir', 'out'],
    ...(f.priority === undefined ? [] : ['priority', f.priority]),
    ...['tmpl', ...TUNNEL, 'proto', 'esp', 'reqid', f.reqid, 'mode', 'tunnel'],
  ];
}
