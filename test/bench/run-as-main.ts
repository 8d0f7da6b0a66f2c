// The entry point of a bench file that is also imported (by another bench, or to run parts of it in a fresh
// process): runs `main` only when the file is the program node was started with, sets the exit code it resolves
// with, and prints a one-line error prefixed with `name` when it fails.
import { pathToFileURL } from 'node:url';

export function runAsMain(moduleUrl: string, name: string, main: () => Promise<number>): void {
  if (!process.argv[1] || moduleUrl !== pathToFileURL(process.argv[1]).href) return;
  main().then(
    (code) => (process.exitCode = code),
    (e: unknown) => {
      console.error(`${name}: ${e instanceof Error ? e.message : String(e)}`);
      process.exitCode = 1;
    },
  );
}
