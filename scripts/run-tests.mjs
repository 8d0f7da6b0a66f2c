#!/usr/bin/env node
// Runs every test phase of the project and prints one closing line `N passed, N failed, N skipped`.
// Phases: static checks (type check, lint, format: one test each), the tap suites on the host (unit,
// integration against the fake API server, root kernel tests), and the kernel-test VM suites.
// Usage: node scripts/run-tests.mjs [--no-vm]
import { spawn } from 'node:child_process';

const noVm = process.argv.includes('--no-vm');
const totals = { pass: 0, fail: 0, skip: 0 };
const failures = [];

function run(cmd, args) {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const keep = (chunk) => {
      process.stdout.write(chunk);
      out += chunk.toString();
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    child.on('close', (code, signal) => resolve({ code: code ?? (signal ? 128 : 1), out }));
  });
}

/** Parses tap's closing `# { total: N, pass: N, fail: N, skip: N }` line (the VM runner prints the same). */
function tapSummary(out) {
  const lines = out.split('\n').filter((l) => /^# \{ total: \d+/.test(l.trim()));
  const last = lines.at(-1);
  if (!last) return undefined;
  const num = (k) => Number(new RegExp(`${k}: (\\d+)`).exec(last)?.[1] ?? 0);
  return { pass: num('pass'), fail: num('fail'), skip: num('skip') + num('todo') };
}

async function check(name, cmd, args) {
  console.log(`\n=== ${name}`);
  const { code } = await run(cmd, args);
  if (code === 0) totals.pass += 1;
  else {
    totals.fail += 1;
    failures.push(name);
  }
}

async function suite(name, cmd, args) {
  console.log(`\n=== ${name}`);
  const { code, out } = await run(cmd, args);
  const s = tapSummary(out);
  if (s) {
    totals.pass += s.pass;
    totals.fail += s.fail;
    totals.skip += s.skip;
  }
  if (code !== 0 && (!s || s.fail === 0)) {
    // The phase failed without a failing test to show for it (crash, timeout, bad setup): count it.
    totals.fail += 1;
  }
  if (code !== 0) failures.push(name);
}

await check('type check', 'npx', ['tsc', '--noEmit', '-p', 'tsconfig.json']);
await check('lint', 'npx', ['eslint', '.']);
await check('format', 'npx', ['prettier', '--check', '.']);
await suite('tap suites (host)', 'npx', ['tap']);
if (!noVm) await suite('kernel-test VM suites', 'npm', ['run', '--silent', 'test:vm']);

if (failures.length) console.log(`\nfailed phases: ${failures.join(', ')}`);
console.log(`${totals.pass} passed, ${totals.fail} failed, ${totals.skip} skipped`);
process.exit(totals.fail === 0 ? 0 : 1);
