import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The peer libraries live in bench/peers/node_modules, installed on demand: they are not
 * dependencies of corewal, so they are loaded with a require rooted there — `tsc` and
 * `npm test` never need them. (bench/peers/package.json says `"type": "module"` because it
 * is the package scope of these sources too: without it tsc would compile them as CommonJS.)
 */
const here = dirname(fileURLToPath(import.meta.url));
// Compiled to dist/bench/peers; the sources (and node_modules) are in bench/peers.
export const repoRoot = join(here, '..', '..', '..');
export const peersDir = join(repoRoot, 'bench', 'peers');

export function peersInstalled(): boolean {
  return existsSync(join(peersDir, 'node_modules'));
}

const requirePeer = createRequire(join(peersDir, 'package.json'));

export function loadPeer<T>(name: string): T {
  return requirePeer(name) as T;
}
