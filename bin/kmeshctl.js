#!/usr/bin/env node
// kmeshctl executable: runs the compiled CLI (dist/src/cli/kmeshctl.js; `npm run build:ts` produces it).
let cli;
try {
  cli = await import('../dist/src/cli/kmeshctl.js');
} catch (err) {
  if (err?.code !== 'ERR_MODULE_NOT_FOUND' || !String(err.message).includes('dist/src/cli/kmeshctl.js')) throw err;
  process.stderr.write('error: kmeshctl is not built (dist/ is missing): run "npm run build:ts" first\n');
  process.exit(1);
}
process.exitCode = await cli.main(process.argv.slice(2));
