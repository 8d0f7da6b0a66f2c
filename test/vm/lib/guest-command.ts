// Writes the command.sh a VM run executes in the guest (pure): exported environment, the guest preparation
// (test/vm/guest/prepare.sh), the working directory, then the command itself (run mode) or an interactive
// bash (shell mode). Every value is single-quoted for POSIX sh.

/** Quotes a string for POSIX sh: 'it'\''s'. */
export function shellQuote(value: string): string {
  return `'${value.replaceAll("'", `'\\''`)}'`;
}

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

export interface GuestCommandInput {
  /** Guest environment (merged over the defaults below by the caller). */
  env: Readonly<Record<string, string>>;
  prepareScript: string;
  cwd: string;
  /** Shell command to run (run mode), or undefined for an interactive shell. */
  command: string | undefined;
  /** Terminal size for the interactive shell, if known. */
  terminal?: { rows: number; columns: number };
}

export function guestCommandScript(input: GuestCommandInput): string {
  const lines = [
    '#!/bin/sh',
    '# Written by test/vm/runner.ts for one kernel-test VM run; executed chrooted in the guest by /init.',
  ];
  for (const [name, value] of Object.entries(input.env)) {
    if (!ENV_NAME.test(name)) throw new Error(`invalid environment variable name for the guest: '${name}'`);
    lines.push(`export ${name}=${shellQuote(value)}`);
  }
  lines.push(`. ${shellQuote(input.prepareScript)}`);
  lines.push(`cd ${shellQuote(input.cwd)} || exit 125`);
  lines.push('echo "kmesh-vm: guest ready, running the command" >/dev/console');
  if (input.command === undefined) {
    if (input.terminal) lines.push(`stty rows ${input.terminal.rows} cols ${input.terminal.columns} 2>/dev/null`);
    lines.push('exec /bin/bash -i');
  } else {
    if (input.command.trim() === '') throw new Error('the VM command is empty');
    lines.push(`exec /bin/sh -c ${shellQuote(input.command)}`);
  }
  return `${lines.join('\n')}\n`;
}
