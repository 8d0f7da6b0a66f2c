// Builders of the XFRM objects tests feed to the codec, the adapters and the fake kernel: ESP tunnel-mode SAs and
// marked policies shaped like the planner's (rfc4106(gcm(aes)), reqid 0x6b6d), between this node 198.18.0.1
// (pods 10.244.1.0/24) and its peer 198.18.0.2 (pods 10.244.2.0/24). Each builder takes field overrides.

import type { XfrmAead, XfrmPolicy, XfrmState, XfrmTemplate } from '../../src/xfrm/types.js';

const REQID = 0x6b6d;
export const AEAD_NAME = 'rfc4106(gcm(aes))';

/** A 36-byte AEAD key (32 key + 4 salt) filled with one byte. */
export const aeadKey = (byte: number): Buffer => Buffer.alloc(36, byte);

/** rfc4106(gcm(aes)) with ICV 128 and a key filled with `byte`. */
export function aead(byte: number): XfrmAead {
  return { name: AEAD_NAME, key: aeadKey(byte), icvBits: 128 };
}

/** Outbound SA 198.18.0.1 -> 198.18.0.2, SPI 1, matched by the encrypt mark 0xe0/0xff. */
export function makeOutboundSa(over: Partial<XfrmState> = {}): XfrmState {
  return {
    family: 4,
    src: '198.18.0.1',
    dst: '198.18.0.2',
    spi: 1,
    proto: 50,
    mode: 'tunnel',
    reqid: REQID,
    aead: aead(0x11),
    mark: { value: 0xe0, mask: 0xff },
    esn: true,
    replayWindow: 1024,
    ...over,
  };
}

/** Inbound SA 198.18.0.2 -> 198.18.0.1, SPI 1, matched by peer id 1's decrypt mark, output mark 0xd0. */
export function makeInboundSa(over: Partial<XfrmState> = {}): XfrmState {
  return {
    family: 4,
    src: '198.18.0.2',
    dst: '198.18.0.1',
    spi: 1,
    proto: 50,
    mode: 'tunnel',
    reqid: REQID,
    aead: aead(0x11),
    mark: { value: 0x100d0, mask: 0xffff00ff },
    outputMark: { value: 0xd0, mask: 0xffff00ff },
    esn: true,
    replayWindow: 1024,
    ...over,
  };
}

/** ESP tunnel-mode template with our reqid. */
export function espTemplate(src: string, dst: string, spi: number, family: 4 | 6 = 4): XfrmTemplate {
  return { family, src, dst, proto: 50, mode: 'tunnel', reqid: REQID, spi };
}

/** Out policy: encrypt-marked traffic to the peer's pods goes through the tunnel 198.18.0.1 -> 198.18.0.2, SPI 1. */
export function makeOutPolicy(over: Partial<XfrmPolicy> = {}): XfrmPolicy {
  return {
    dir: 'out',
    selector: { family: 4, src: '0.0.0.0/0', dst: '10.244.2.0/24', proto: 0 },
    mark: { value: 0xe0, mask: 0xff },
    priority: 100,
    action: 'allow',
    templates: [espTemplate('198.18.0.1', '198.18.0.2', 1)],
    ...over,
  };
}

/** In policy: decrypt-marked traffic from the peer's pods to ours came through the tunnel, any SPI. */
export function makeInPolicy(over: Partial<XfrmPolicy> = {}): XfrmPolicy {
  return {
    dir: 'in',
    selector: { family: 4, src: '10.244.2.0/24', dst: '10.244.1.0/24', proto: 0 },
    mark: { value: 0xd0, mask: 0xff },
    priority: 100,
    action: 'allow',
    templates: [espTemplate('198.18.0.2', '198.18.0.1', 0)],
    ...over,
  };
}

/** The IPv4 catch-all block policy for encrypt-marked traffic that matched no peer. */
export function makeBlockPolicy(over: Partial<XfrmPolicy> = {}): XfrmPolicy {
  return {
    dir: 'out',
    selector: { family: 4, src: '0.0.0.0/0', dst: '0.0.0.0/0', proto: 0 },
    mark: { value: 0xe0, mask: 0xff },
    priority: 1000,
    action: 'block',
    templates: [],
    ...over,
  };
}

/**
 * `ip xfrm state add` arguments (the `ip` included) for an ESP tunnel SA with our AEAD, a key filled with
 * `keyByte` and ICV 128: what kernel-capability probes install to learn whether the kernel has ESP + AEAD.
 */
export function ipAddEspStateArgs(src: string, dst: string, spi: number, keyByte: number): string[] {
  const key = `0x${aeadKey(keyByte).toString('hex')}`;
  const words = `ip xfrm state add src ${src} dst ${dst} proto esp spi ${spi} mode tunnel aead ${AEAD_NAME}`;
  return [...words.split(' '), key, '128'];
}
