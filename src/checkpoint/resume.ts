import { crc32c } from '../crc/crc32c.js';
import { FORMAT_VERSION, PAYLOAD_HEADER_SIZE, TAG_EPOCH_BARRIER } from '../entry/codec.js';
import { ioError } from '../errors/errors.js';
import type { WalFs } from '../io/fs.js';
import { RECORD_HEADER_SIZE } from '../record/framing.js';
import type { CheckpointMetadata } from './format.js';

/**
 * Where the WAL after a checkpoint begins, per segment.
 *
 * A checkpoint ends every segment with an epoch barrier and records, per core, the
 * position just past it and the barrier record's CRC. If that exact record is still
 * there, the segment was not reset (a no-truncate checkpoint, or a crash before the reset
 * reached it): everything before it is in the checkpoint and replay starts after it.
 * Otherwise the segment was reset and everything in it came later: replay starts at 0.
 * This needs no trust in the epoch or sequences a restarted writer resumed at.
 */

/** Bytes of one epoch-barrier record: header, payload header, 8-byte epoch. */
export const BARRIER_RECORD_SIZE = RECORD_HEADER_SIZE + PAYLOAD_HEADER_SIZE + 8;

/**
 * The stored CRC of the epoch barrier of core `coreId` ending at `end` in `path`, or 0
 * when the bytes there are not such a record (or the file is shorter).
 */
export function barrierCrcAt(fs: WalFs, path: string, coreId: number, end: number): number {
  if (end < BARRIER_RECORD_SIZE) return 0;
  let fd: number;
  try {
    if (!fs.existsSync(path)) return 0;
    fd = fs.openSync(path, 'r');
  } catch (e) {
    throw ioError('open', e, path, undefined, coreId);
  }
  const buf = Buffer.alloc(BARRIER_RECORD_SIZE);
  let got = 0;
  try {
    const at = end - BARRIER_RECORD_SIZE;
    while (got < buf.length) {
      const n = fs.readSync(fd, buf, got, buf.length - got, at + got);
      if (n <= 0) break;
      got += n;
    }
  } catch (e) {
    throw ioError('read', e, path, end - BARRIER_RECORD_SIZE, coreId);
  } finally {
    try { fs.closeSync(fd); } catch { /* read-only */ }
  }
  if (got < buf.length) return 0;
  const plen = buf.readUInt32LE(0);
  const stored = buf.readUInt32LE(4);
  if (plen !== BARRIER_RECORD_SIZE - RECORD_HEADER_SIZE) return 0;
  const p = RECORD_HEADER_SIZE;
  if (buf[p] !== FORMAT_VERSION || buf[p + 1] !== TAG_EPOCH_BARRIER || buf.readUInt16LE(p + 2) !== coreId) return 0;
  if (crc32c(buf, p, buf.length) !== stored) return 0;
  return stored;
}

/**
 * Per core, where replay after checkpoint `meta` starts: `meta.walPositions[c]` when the
 * segment still holds the checkpoint's barrier there, else 0. No checkpoint: all zeros.
 */
export function replayStarts(meta: CheckpointMetadata | null, numCores: number, pathOf: (c: number) => string, fs: WalFs): number[] {
  const out = new Array<number>(numCores).fill(0);
  if (meta === null) return out;
  for (let c = 0; c < numCores && c < meta.walPositions.length; c++) {
    const crc = meta.barrierCrcs[c]!;
    if (crc !== 0 && barrierCrcAt(fs, pathOf(c), c, meta.walPositions[c]!) === crc) out[c] = meta.walPositions[c]!;
  }
  return out;
}
