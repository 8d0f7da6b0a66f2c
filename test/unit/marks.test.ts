import t from 'tap';
import { inboundEspMark, MARK_INBOUND_MASK, MARK_DECRYPT } from '../../src/model/marks.js';

t.test('inbound ESP mark carries the peer id above the type byte', (t) => {
  t.equal(inboundEspMark(1), 0x000100d0);
  t.equal(inboundEspMark(0xffff), 0xffff00d0);
  t.equal(MARK_INBOUND_MASK, 0xffff00ff);
  t.equal(inboundEspMark(7) & 0xff, MARK_DECRYPT);
  t.throws(() => inboundEspMark(0), /outside/);
  t.throws(() => inboundEspMark(0x10000), /outside/);
  t.end();
});
