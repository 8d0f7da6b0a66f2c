// The kernel-version gate of the kernel tests (test/host/lib/kernel.ts): which release strings count as new enough
// for a feature, and the skip reason that names the feature and the kernel it needs.
import os from 'node:os';
import t from 'tap';
import { kernelAtLeast, requireKernel } from '../host/lib/kernel.js';

t.test('release strings against a major.minor requirement', (t) => {
  t.equal(kernelAtLeast(6, 6, '6.1.0-57-amd64'), false, 'Debian 12 LTS: no TCX');
  t.equal(kernelAtLeast(6, 6, '6.12.95+deb12-amd64'), true, 'backports');
  t.equal(kernelAtLeast(6, 6, '6.6.0'), true, 'exactly the version');
  t.equal(kernelAtLeast(6, 6, '5.19.17'), false, 'older major');
  t.equal(kernelAtLeast(6, 6, '7.0.0'), true, 'newer major, lower minor');
  t.equal(kernelAtLeast(6, 6, 'garbage'), false, 'unparsable counts as too old');
  t.end();
});

t.test('requireKernel names the feature and this kernel when it is too old', (t) => {
  t.equal(requireKernel(0, 0, 'anything'), false);
  t.equal(requireKernel(999, 0, 'TCX link'), `TCX link needs kernel 999.0+, this is ${os.release()}`);
  t.end();
});
