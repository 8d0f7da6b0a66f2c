// Real traffic through veths in our own namespaces, marks checked by nftables counters: clsact filters on any
// kernel, TCX links where the kernel has them (6.6+, skipped with the reason on older ones), and the automatic
// choice, which must pick TCX exactly when the kernel has it.
import t from 'tap';
import { markingScenario } from './lib/marking-scenario.js';
import { kernelHasTcx, kernelSkipReason, requireKernel, TCX_KERNEL } from './lib/kernel.js';

const skip = kernelSkipReason();
const auto = kernelHasTcx() ? 'tcx' : 'clsact';

t.test('clsact filters', { skip }, (t) => markingScenario(t, { tag: 'cls', mode: 'clsact', expectMode: 'clsact' }));
t.test('TCX links', { skip: skip || requireKernel(TCX_KERNEL.major, TCX_KERNEL.minor, 'TCX link') }, (t) =>
  markingScenario(t, { tag: 'tcx', mode: 'tcx', expectMode: 'tcx' }),
);
t.test(`automatic mode picks ${auto} on this kernel`, { skip }, (t) =>
  markingScenario(t, { tag: 'auto', mode: 'auto', expectMode: auto }),
);
