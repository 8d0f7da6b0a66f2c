// shellWord: what a hint prints is what the shell reads back.
import { spawnSync } from 'node:child_process';
import t from 'tap';
import { shellWord } from '../../src/util/shell-word.js';

t.test('safe words stay as they are; others are single-quoted and read back unchanged by sh', (t) => {
  t.equal(shellWord('dir:/var/lib/kmesh-store'), 'dir:/var/lib/kmesh-store');
  t.equal(shellWord('dir:/srv/my store'), "'dir:/srv/my store'");
  for (const word of ['dir:/srv/my store', "it's", '$HOME', 'a"b', 'x;rm -rf /', '', 'tab\there']) {
    const echoed = spawnSync('sh', ['-c', `printf %s ${shellWord(word)}`], { encoding: 'utf8' }).stdout;
    t.equal(echoed, word, JSON.stringify(word));
  }
  t.end();
});
