// When a pinned map counts as changed (libbpf's reuse rule: type, key and value size, max_entries, flags) and when
// its entries can be carried into the new definition (src/datapath/map-migration.ts).
import t from 'tap';

import { definitionChange, notCarriable, oldPinOf } from '../../src/datapath/map-migration.js';
import type { MapDefinition } from '../../src/datapath/native-bpf.js';

const peers: MapDefinition = { name: 'km_ipsec_peers', type: 1, keySize: 20, valueSize: 4, maxEntries: 8192, flags: 0 };

t.test('every field libbpf compares makes a change, named with both values', (t) => {
  t.equal(definitionChange(peers, { ...peers }), undefined, 'same definition: reused as it is');
  t.equal(definitionChange(peers, { ...peers, name: 'other' }), undefined, 'the name is the pin, not compared');
  t.equal(
    definitionChange(peers, { ...peers, maxEntries: 32768, flags: 1 }),
    'max_entries 8192 -> 32768, flags 0x0 -> 0x1',
  );
  t.equal(definitionChange(peers, { ...peers, type: 5 }), 'type 1 -> 5');
  t.equal(definitionChange(peers, { ...peers, keySize: 24 }), 'key size 20 -> 24');
  t.equal(definitionChange(peers, { ...peers, valueSize: 8 }), 'value size 4 -> 8');
  t.end();
});

t.test('entries are carried unless the type, the key or value size changed, or the values are maps', (t) => {
  t.equal(notCarriable(peers, { ...peers, maxEntries: 32768, flags: 1 }), undefined);
  t.equal(notCarriable(peers, { ...peers, type: 9 }), 'its type changed');
  t.equal(notCarriable(peers, { ...peers, valueSize: 8 }), 'its key or value size changed');
  const outer = { ...peers, type: 12, keySize: 4, maxEntries: 1 };
  t.equal(notCarriable(outer, { ...outer, maxEntries: 2 }), 'its values are maps (its writer fills it again)');
  t.end();
});

t.test('the set-aside pin has no dot in its name (bpffs refuses those)', (t) => {
  t.equal(oldPinOf('/sys/fs/bpf/kmesh/map/km_ipsec_peers'), '/sys/fs/bpf/kmesh/map/km_ipsec_peers_old');
  t.end();
});
