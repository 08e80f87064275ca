import { crc32cWithView } from '../crc/crc32c.js';
import { encodePayload, payloadSize } from '../entry/codec.js';
import type { PerCoreWalEntry } from '../entry/entry.js';

/**
 * Record framing: `[length u32 LE][crc32c u32 LE][payload]`, the CRC over the payload only.
 * A zero length at a record boundary followed only by zeros is the end of the log
 * (preallocated space); any other zero length is corruption.
 */
export const RECORD_HEADER_SIZE = 8;
export const DEFAULT_MAX_RECORD_SIZE = 256 * 1024 * 1024;

/** Frames the payload already written at `buf[off + 8, off + 8 + payloadLen)`. */
export function frameAt(buf: Uint8Array, dv: DataView, off: number, payloadLen: number): void {
  dv.setUint32(off, payloadLen, true);
  dv.setUint32(off + 4, crc32cWithView(dv, buf, off + RECORD_HEADER_SIZE, off + RECORD_HEADER_SIZE + payloadLen), true);
}

/** A whole framed record for `entry` (cold path: allocates). */
export function encodeRecord(entry: PerCoreWalEntry, syncedBoundary = entry.syncedBoundary): Buffer {
  const plen = payloadSize(entry);
  const buf = Buffer.allocUnsafe(RECORD_HEADER_SIZE + plen);
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  encodePayload(entry, buf, dv, RECORD_HEADER_SIZE, syncedBoundary);
  frameAt(buf, dv, 0, plen);
  return buf;
}

/** True when `buf[start, end)` is all zero bytes. */
export function isAllZero(buf: Uint8Array, start: number, end: number): boolean {
  for (let i = start; i < end; i++) if (buf[i] !== 0) return false;
  return true;
}
