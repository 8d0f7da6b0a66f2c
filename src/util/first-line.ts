// The first line of an error's message, for one-line problem reports, status fields and log lines: multi-line
// messages (a libbpf verifier log, a stack of causes, a command's stderr) are cut to the line that says what failed.

/** The first line of err's message (an Error) or of String(err) (anything else); '' for an empty message. */
export function firstLine(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  const end = text.indexOf('\n');
  return end < 0 ? text : text.slice(0, end);
}
