import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { crc32cJs, crc32cWithView } from '../crc/crc32c.js';
import { assert } from '../util/assert.js';
import { RECORD_HEADER_SIZE } from './framing.js';

/**
 * Sealing: the writer appends frames with their CRC left blank and computes every CRC of
 * a run of frames in one go, just before the run is written. With the native addon
 * (native/frames.c, built at install) that is one call per write using the CPU's CRC-32C
 * instruction — at record sizes several times cheaper than a table CRC per record, and
 * than a binding call per record; without it, the table CRC per frame, as before.
 */

interface FramesBinding {
  sealFrames(buf: Uint8Array, from: number, to: number): number;
  crc32c(buf: Uint8Array, from: number, to: number): number;
  hardware(): boolean;
}

const ADDON = 'corewal_frames.node';

function load(): { binding: FramesBinding | null; reason: string | null; hardware: boolean } {
  const env = process.env['COREWAL_FRAMES_ADDON'];
  if (env === 'off' || env === '0') return { binding: null, reason: 'disabled by COREWAL_FRAMES_ADDON=off', hardware: false };
  // dist/src/record/seal.js → the package root, where node-gyp puts build/.
  const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
  const candidates = env ? [env] : [join(root, 'build', 'Release', ADDON), join(root, 'build', 'Debug', ADDON)];
  const found = candidates.find((p) => existsSync(p));
  if (found === undefined) return { binding: null, reason: `the native addon is not built (no ${candidates[0]})`, hardware: false };
  try {
    const b = createRequire(import.meta.url)(found) as FramesBinding;
    // Self-check against the TypeScript CRC before trusting it with records.
    const probe = Buffer.from('123456789');
    if (b.crc32c(probe, 0, probe.length) !== 0xe3069283) return { binding: null, reason: `${found} computes a wrong CRC-32C`, hardware: false };
    const frame = Buffer.alloc(RECORD_HEADER_SIZE + 61, 0xa5);
    frame.writeUInt32LE(61, 0);
    b.sealFrames(frame, 0, frame.length);
    if (frame.readUInt32LE(4) !== crc32cJs(frame, RECORD_HEADER_SIZE, frame.length)) return { binding: null, reason: `${found} seals frames wrongly`, hardware: false };
    return { binding: b, reason: null, hardware: b.hardware() };
  } catch (e) {
    return { binding: null, reason: `${found} failed to load: ${(e as Error).message}`, hardware: false };
  }
}

const loaded = load();
const native = loaded.binding;

/** How frames are sealed here: natively (with or without a CRC instruction) or in TypeScript, and why not natively. */
export const sealBackend: { native: boolean; hardware: boolean; reason: string | null } = {
  native: native !== null, hardware: loaded.hardware, reason: loaded.reason,
};

/**
 * Computes and stores the CRC of every frame in `buf[from, to)` (`dv` views `buf`). The
 * frames' length fields must be written and must end exactly at `to`.
 */
export function sealFrames(buf: Buffer, dv: DataView, from: number, to: number): void {
  if (native !== null) {
    native.sealFrames(buf, from, to);
    return;
  }
  let at = from;
  while (at < to) {
    const plen = dv.getUint32(at, true);
    const end = at + RECORD_HEADER_SIZE + plen;
    assert(end <= to, 'sealed frames end at the end of the run');
    dv.setUint32(at + 4, crc32cWithView(dv, buf, at + RECORD_HEADER_SIZE, end), true);
    at = end;
  }
}
