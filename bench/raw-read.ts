import { closeSync, openSync, readSync } from 'node:fs';
import { crc32cWithView } from '../src/crc/crc32c.js';
import { verifyFrames } from '../src/record/verify.js';

/**
 * The baseline: every record of every file read in `block`-byte reads (default 1 MiB, the
 * block of PerCoreWalReader and of recovery; the merge case passes 256 KiB) and its
 * CRC checked, with the CRC-32C the reader uses (`crc32cWithView`: the table for short
 * records, SIMD for long ones). The buffer holds two blocks, so a record cut by a block's
 * end is completed by the next read after moving its start to the front.
 */
export function rawReadCrc(paths: string[], block = 1 << 20): { records: number; bytes: number } {
  const buf = Buffer.allocUnsafe(block * 2);
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let records = 0, bytes = 0;
  for (const p of paths) {
    const fd = openSync(p, 'r');
    try {
      let have = 0, off = 0, pos = 0;
      for (;;) {
        if (have - off < 8 || have - off < 8 + dv.getUint32(off, true)) {
          buf.copy(buf, 0, off, have);
          have -= off; off = 0;
          const n = readSync(fd, buf, have, Math.min(block, buf.length - have), pos);
          if (n === 0) break;
          pos += n; have += n;
          continue;
        }
        const len = dv.getUint32(off, true);
        if (len === 0) break;
        if (crc32cWithView(dv, buf, off + 8, off + 8 + len) !== dv.getUint32(off + 4, true)) throw new Error(`bad CRC in ${p}`);
        off += 8 + len;
        bytes += 8 + len;
        records++;
      }
    } finally {
      closeSync(fd);
    }
  }
  return { records, bytes };
}

/**
 * {@link rawReadCrc} with the CRCs checked a buffer at a time by {@link verifyFrames}
 * (native where the addon is built): what the reader itself now does. Informational only:
 * the merge's target is set against {@link rawReadCrc}, the loop a Node user writes by
 * hand; this one shows how much of the gap to it was the per-record JavaScript CRC.
 */
export function rawReadBatchCrc(paths: string[], block = 1 << 20): { records: number; bytes: number } {
  const buf = Buffer.allocUnsafe(block * 2);
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let records = 0, bytes = 0;
  for (const p of paths) {
    const fd = openSync(p, 'r');
    try {
      let have = 0, off = 0, pos = 0;
      for (;;) {
        const good = verifyFrames(buf, dv, off, have, 0xffffffff);
        bytes += good - off;
        for (; off < good; off += 8 + dv.getUint32(off, true)) records++;
        // At `off`: a frame cut off by the end of what was read, a zero length (the end), or a bad CRC.
        if (have - off >= 8) {
          const len = dv.getUint32(off, true);
          if (len === 0) break;
          if (have - off >= 8 + len) throw new Error(`bad CRC in ${p}`);
        }
        buf.copy(buf, 0, off, have);
        have -= off; off = 0;
        const n = readSync(fd, buf, have, Math.min(block, buf.length - have), pos);
        if (n === 0) break;
        pos += n; have += n;
      }
    } finally {
      closeSync(fd);
    }
  }
  return { records, bytes };
}
