// The named struct layouts of src/xfrm/netlink-layout.ts against the kernel headers: the addon exports offsetof and
// sizeof of linux/xfrm.h's own structs (native/xfrm_encode.cc), and every table must equal its struct field by field,
// with no field missing on either side. Also checks each table's own shape (offsets inside the struct, in order).
import t from 'tap';
import { addonXfrmLayout } from '../../src/xfrm/netlink-addon.js';
import { XFRM_LAYOUTS } from '../../src/xfrm/netlink-layout.js';

t.test('every table lists its fields in struct order, inside the struct', (t) => {
  for (const [name, table] of Object.entries(XFRM_LAYOUTS)) {
    const { SIZE, ...fields } = table as Record<string, number>;
    const offsets = Object.values(fields);
    t.ok(offsets.length > 0, `${name} has fields`);
    t.same(
      offsets,
      [...offsets].sort((a, b) => a - b),
      `${name}: offsets ascend in declaration order`,
    );
    t.ok(
      offsets.every((o) => o <= (SIZE ?? 0)),
      `${name}: offsets within sizeof (${SIZE}); a flexible array member sits at sizeof`,
    );
  }
  t.end();
});

const native = addonXfrmLayout();

t.test(
  'the TypeScript tables equal offsetof/sizeof of the kernel structs',
  { skip: native ? false : 'addon not built' },
  (t) => {
    t.same(Object.keys(native ?? {}).sort(), Object.keys(XFRM_LAYOUTS).sort(), 'the same structs');
    for (const [name, table] of Object.entries(XFRM_LAYOUTS)) {
      t.same(native?.[name], table, `struct ${name}`);
    }
    t.end();
  },
);
