import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The optional native addon `corewal_frames.node` (native/frames.c and native/pool-io.c,
 * built by node-gyp at install): CRC sealing of buffered records, batch CRC verification of
 * records read back, and the thread pool's write-then-fdatasync jobs and sticky lanes. Loaded once, on first use; everything that uses it has a
 * TypeScript path for where it was not built. `COREWAL_FRAMES_ADDON` names another build of
 * it, or `off` to do without.
 */
export interface NativeBinding {
  sealFrames(buf: Uint8Array, from: number, to: number): number;
  /** Absent in builds from before it existed. */
  verifyFrames?(buf: Uint8Array, from: number, to: number, maxRecord: number): number;
  crc32c(buf: Uint8Array, from: number, to: number): number;
  hardware(): boolean;
  writevDatasync(fd: number, buffers: Uint8Array[], position: number,
    callback: (writeErrno: number, written: number, syncErrno: number) => void): void;
  /** Sticky pool lanes (native/pool-lane.c, Linux builds only). */
  createLane?(callback: (writeErrno: number, written: number, syncErrno: number) => void, lingerUs: number): NativeLane;
  laneSubmit?(lane: NativeLane, fd: number, buffers: Uint8Array[], position: number, sync: boolean): void;
  laneClose?(lane: NativeLane): void;
  laneStats?(lane: NativeLane): { jobs: number; threads: number; wakes: number };
  /** The lane's hand-over protocol under stress, without I/O (tests). */
  laneStress?(handOvers: number, lingerUs: number, maxPauseUs: number, seed: number):
    { handOvers: number; threads: number; wakes: number; lost: number; threadsExited: boolean };
}

/** An opaque handle to a native lane. */
export type NativeLane = { readonly __lane: unique symbol };

const ADDON = 'corewal_frames.node';
let loaded: { binding: NativeBinding | null; reason: string | null } | null = null;

export function nativeAddon(): { binding: NativeBinding | null; reason: string | null } {
  if (loaded !== null) return loaded;
  const env = process.env['COREWAL_FRAMES_ADDON'];
  if (env === 'off' || env === '0') return (loaded = { binding: null, reason: 'disabled by COREWAL_FRAMES_ADDON=off' });
  // dist/src/util/native.js → the package root, where node-gyp puts build/.
  const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
  const candidates = env ? [env] : [join(root, 'build', 'Release', ADDON), join(root, 'build', 'Debug', ADDON)];
  const found = candidates.find((p) => existsSync(p));
  if (found === undefined) return (loaded = { binding: null, reason: `the native addon is not built (no ${candidates[0]})` });
  try {
    return (loaded = { binding: createRequire(import.meta.url)(found) as NativeBinding, reason: null });
  } catch (e) {
    return (loaded = { binding: null, reason: `${found} failed to load: ${(e as Error).message}` });
  }
}
