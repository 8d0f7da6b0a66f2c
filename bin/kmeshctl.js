#!/usr/bin/env node
// kmeshctl executable: runs the compiled CLI (dist/src/cli/kmeshctl.js; `npm run build` produces it).
import { main } from '../dist/src/cli/kmeshctl.js';

process.exitCode = await main(process.argv.slice(2));
