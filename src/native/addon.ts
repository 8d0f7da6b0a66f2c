// Loads the kmesh_native addon (prebuilt for this platform, or built from source by node-gyp).
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const require = createRequire(import.meta.url);

/** Repository (or installed package) root: src/native -> ../.. ; dist/src/native -> ../../.. */
export function packageRoot(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const up = here.includes(`${path.sep}dist${path.sep}`) ? '../../..' : '../..';
  return path.resolve(here, up);
}

let cached: unknown;

/** The raw addon object. Typed views over it live next to their users (src/datapath, src/xfrm). */
export function loadAddon(): unknown {
  if (cached === undefined) {
    const load = require('node-gyp-build') as (dir: string) => unknown;
    cached = load(packageRoot());
  }
  return cached;
}
