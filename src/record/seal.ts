import { crc32cJs, crc32cWithView } from '../crc/crc32c.js';
import { assert } from '../util/assert.js';
import { nativeAddon, type NativeBinding } from '../util/native.js';
import { RECORD_HEADER_SIZE } from './framing.js';

/**
 * Sealing: the writer appends frames with their CRC left blank and computes every CRC of
 * a run of frames in one go, just before the run is written. With the native addon
 * (native/frames.c, built at install) that is one call per write using the CPU's CRC-32C
 * instruction — at record sizes several times cheaper than a table CRC per record, and
 * than a binding call per record; without it, the table CRC per frame, as before.
 */

function load(): { binding: NativeBinding | null; reason: string | null; hardware: boolean } {
  const { binding: b, reason } = nativeAddon();
  if (b === null) return { binding: null, reason, hardware: false };
  // Self-check against the TypeScript CRC before trusting it with records.
  const probe = Buffer.from('123456789');
  if (b.crc32c(probe, 0, probe.length) !== 0xe3069283) return { binding: null, reason: 'the native addon computes a wrong CRC-32C', hardware: false };
  const frame = Buffer.alloc(RECORD_HEADER_SIZE + 61, 0xa5);
  frame.writeUInt32LE(61, 0);
  b.sealFrames(frame, 0, frame.length);
  if (frame.readUInt32LE(4) !== crc32cJs(frame, RECORD_HEADER_SIZE, frame.length)) return { binding: null, reason: 'the native addon seals frames wrongly', hardware: false };
  return { binding: b, reason: null, hardware: b.hardware() };
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
