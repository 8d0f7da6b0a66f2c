#!/usr/bin/env node
// kmesh-daemon executable: runs the compiled node daemon (dist/src/daemon/main.js; `npm run build` produces it).
// Exits as soon as main returns, so no lingering watch connection can keep a stopped daemon alive.
import { main } from '../dist/src/daemon/main.js';

process.exit(await main(process.argv.slice(2)));
