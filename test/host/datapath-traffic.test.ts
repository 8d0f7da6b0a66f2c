// Real traffic through veths in our own namespaces, marks checked by nftables counters, for both attach
// modes the host kernel has (clsact filters and TCX links) and for the automatic choice.
import t from 'tap';
import { markingScenario } from './lib/marking-scenario.js';
import { kernelSkipReason } from './lib/kernel.js';

const skip = kernelSkipReason();

t.test('clsact filters', { skip }, (t) => markingScenario(t, { tag: 'cls', mode: 'clsact', expectMode: 'clsact' }));
t.test('TCX links', { skip }, (t) => markingScenario(t, { tag: 'tcx', mode: 'tcx', expectMode: 'tcx' }));
t.test('automatic mode picks TCX on this kernel', { skip }, (t) =>
  markingScenario(t, { tag: 'auto', mode: 'auto', expectMode: 'tcx' }),
);
