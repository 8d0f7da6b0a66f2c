// Can this kernel do ESP with rfc4106(gcm(aes))? Tries to add one SA in a scratch network namespace of our
// own (kmesh-espchk) and removes the namespace again; returns the kernel's reason when it cannot.
import { run } from './shell.js';
import { firstLine } from '../util/first-line.js';
import { AEAD_KEY_BYTES, AEAD_KEY_NAME, ICV_BITS } from '../model/ipsec-key.js';

export async function espSupport(): Promise<{ ok: true } | { ok: false; reason: string }> {
  const ns = 'kmesh-espchk';
  await run('ip', ['netns', 'del', ns]);
  const add = await run('ip', ['netns', 'add', ns]);
  if (add.code !== 0) return { ok: false, reason: `cannot create a network namespace: ${add.stderr.trim()}` };
  try {
    const r = await run('ip', [
      '-n',
      ns,
      'xfrm',
      'state',
      'add',
      'src',
      '198.18.255.1',
      'dst',
      '198.18.255.2',
      'proto',
      'esp',
      'spi',
      '0x1',
      'mode',
      'tunnel',
      'aead',
      AEAD_KEY_NAME,
      `0x${'ab'.repeat(AEAD_KEY_BYTES)}`,
      String(ICV_BITS),
    ]);
    return r.code === 0 ? { ok: true } : { ok: false, reason: firstLine(r.stderr.trim()) || `ip exited ${r.code}` };
  } finally {
    await run('ip', ['netns', 'del', ns]);
  }
}
