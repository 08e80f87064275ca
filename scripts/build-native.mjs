#!/usr/bin/env node
// Builds the optional native addons with node-gyp: corewal_frames (native/frames.c, the
// writer's one-call CRC sealing of appended records) and corewal_uring (native/uring.c,
// UringStorageIo). It must never make `npm install` fail: anywhere they cannot build (not
// Linux, no compiler, kernel headers without io_uring) corewal works without them — records
// are sealed by the TypeScript CRC, and UringStorageIo.isSupported() says why it is off.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const verbose = process.argv.includes('--verbose') || process.env.COREWAL_NATIVE_VERBOSE === '1';

function skip(why) {
  console.log(`corewal: native addons not built (${why}); UringStorageIo will be unavailable and records are sealed in TypeScript, everything else works.`);
  process.exit(0);
}

if (process.platform !== 'linux') skip(`io_uring is Linux-only, this is ${process.platform}`);
if (process.env.COREWAL_URING_ADDON === 'off') skip('COREWAL_URING_ADDON=off');

// node-gyp: the one npm runs scripts with, else the one bundled with npm next to node, else PATH.
function findNodeGyp() {
  const fromNpm = process.env.npm_config_node_gyp;
  if (fromNpm && existsSync(fromNpm)) return [process.execPath, fromNpm];
  const prefix = join(dirname(process.execPath), '..');
  for (const p of [
    join(prefix, 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
    join(dirname(process.execPath), 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
  ]) {
    if (existsSync(p)) return [process.execPath, p];
  }
  try {
    return [process.execPath, createRequire(import.meta.url).resolve('node-gyp/bin/node-gyp.js')];
  } catch {
    return ['node-gyp'];
  }
}

const args = ['rebuild'];
// Headers shipped with this node: no download needed (and none possible offline).
const prefix = join(dirname(process.execPath), '..');
if (!process.env.npm_config_nodedir && existsSync(join(prefix, 'include', 'node', 'node_api.h'))) args.push(`--nodedir=${prefix}`);

const [cmd, ...pre] = findNodeGyp();
const r = spawnSync(cmd, [...pre, ...args], { cwd: root, stdio: verbose ? 'inherit' : 'pipe', encoding: 'utf8' });
if (r.error) skip(`cannot run node-gyp: ${r.error.message}`);
// corewal_frames builds first: a failure in uring.c (old kernel headers) still leaves it.
const built = ['corewal_frames', 'corewal_uring'].filter((n) => existsSync(join(root, 'build', 'Release', `${n}.node`)));
let failure = '';
if (r.status !== 0) {
  const out = `${r.stdout ?? ''}\n${r.stderr ?? ''}`;
  const line = out.split('\n').find((l) => /error:|not found|No such file|ERR! stack Error/.test(l))?.trim();
  failure = `node-gyp exited with ${r.status}${line ? `: ${line.slice(0, 200)}` : ''}; run \`node scripts/build-native.mjs --verbose\` for details`;
}
if (built.length === 0) skip(failure || 'node-gyp produced no build/Release/*.node');
console.log(`corewal: native addons built (${built.map((n) => `build/Release/${n}.node`).join(', ')})${failure ? `; the rest not (${failure})` : ''}.`);
