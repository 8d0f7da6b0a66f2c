// Which MSS tc_mark_encrypt clamps TCP SYN / SYN-ACK to (pure): the MTU/MSS rule of src/model/esp-overhead.ts
// applied to --ipsec-mtu, or by default to the smallest MTU of the underlay interfaces (those holding the
// node's InternalIPs, where the ESP packets leave). A failure to derive it is a problem line for the status;
// the clamp is then off, as it is with --ipsec-mss-clamp=false.
import { mssClampForMtu, NO_MSS_CLAMP, type MssClamp } from '../model/esp-overhead.js';
import type { HostLink } from './pod-interfaces.js';

/** --ipsec-mtu: a number of bytes, or 'auto' = the underlay interfaces' smallest MTU. */
export type IpsecMtuSetting = number | 'auto';

export interface MssClampSetting {
  /** --ipsec-mss-clamp (default true). */
  enabled: boolean;
  mtu: IpsecMtuSetting;
}

export interface MssClampStatus {
  /** The MTU the limits were computed for; 0 when clamping is off. */
  mtu: number;
  /** Where that MTU came from: the flag, the underlay interfaces, or 'off' (disabled, or not derivable). */
  mtuSource: 'flag' | 'underlay' | 'off';
  /** MSS limits per family (0 = not clamped). */
  ipv4: number;
  ipv6: number;
}

export interface MssClampDecision {
  clamp: MssClamp;
  status: MssClampStatus;
  /** Why clamping is off although it was asked for (one line), if so. */
  problem?: string;
}

const off = (problem?: string): MssClampDecision => ({
  clamp: NO_MSS_CLAMP,
  status: { mtu: 0, mtuSource: 'off', ...NO_MSS_CLAMP },
  ...(problem === undefined ? {} : { problem }),
});

export function decideMssClamp(setting: MssClampSetting, underlays: readonly HostLink[]): MssClampDecision {
  if (!setting.enabled) return off();
  let mtu: number;
  let source: 'flag' | 'underlay';
  if (setting.mtu === 'auto') {
    const known = underlays.filter((l) => l.mtu !== undefined && l.mtu > 0);
    if (known.length === 0) {
      return off('MSS clamp off: no underlay interface with a known MTU to derive it from; pass --ipsec-mtu');
    }
    mtu = Math.min(...known.map((l) => l.mtu ?? 0));
    source = 'underlay';
  } else {
    mtu = setting.mtu;
    source = 'flag';
  }
  let clamp: MssClamp;
  try {
    clamp = mssClampForMtu(mtu);
  } catch (err) {
    const from = source === 'underlay' ? 'the underlay MTU' : '--ipsec-mtu';
    return off(`MSS clamp off: ${from}: ${(err as Error).message}; pass --ipsec-mtu`);
  }
  return { clamp, status: { mtu, mtuSource: source, ...clamp } };
}
