// Quotes a word for a POSIX shell when it needs it, so a command printed in a hint can be pasted back as is
// (`kmeshctl --store 'dir:/srv/my store' secret create`).

const SAFE = /^[\w@%+=:,./-]+$/;

/** `word` as the shell reads it back: unchanged when it holds only safe characters, else in single quotes. */
export function shellWord(word: string): string {
  return SAFE.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`;
}
