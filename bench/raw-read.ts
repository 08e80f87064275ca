import { closeSync, openSync, readSync } from 'node:fs';
import { crc32cWithView } from '../src/crc/crc32c.js';
import { verifyFrames } from '../src/record/verify.js';

/**
 * Consumes whole frames of `buf[off, have)`: returns where the first incomplete frame
 * starts (more bytes are read after it), or -1 at the end of the log (a zero length).
 */
type Parse = (buf: Buffer, dv: DataView, off: number, have: number, path: string) => number;

/**
 * Every file read front to back in `block`-byte reads into a buffer of two blocks: a frame
 * cut by a read's end is completed by the next read after moving its start to the front.
 */
function readFrames(paths: string[], block: number, parse: Parse): void {
  const buf = Buffer.allocUnsafe(block * 2);
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  for (const p of paths) {
    const fd = openSync(p, 'r');
    try {
      let have = 0, off = 0, pos = 0;
      for (;;) {
        off = parse(buf, dv, off, have, p);
        if (off < 0) break;
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
}

/**
 * The baseline: every record of every file read in `block`-byte reads (default 1 MiB, the
 * block of PerCoreWalReader and of recovery; the merge case passes 256 KiB) and its
 * CRC checked record by record, with the CRC-32C a Node user reaches for by hand
 * (`crc32cWithView`: the table for short records, SIMD for long ones).
 */
export function rawReadCrc(paths: string[], block = 1 << 20): { records: number; bytes: number } {
  let records = 0, bytes = 0;
  readFrames(paths, block, (buf, dv, off, have, p) => {
    while (have - off >= 8) {
      const len = dv.getUint32(off, true);
      if (len === 0) return -1;
      if (have - off < 8 + len) break;
      if (crc32cWithView(dv, buf, off + 8, off + 8 + len) !== dv.getUint32(off + 4, true)) throw new Error(`bad CRC in ${p}`);
      off += 8 + len;
      bytes += 8 + len;
      records++;
    }
    return off;
  });
  return { records, bytes };
}

/**
 * {@link rawReadCrc} with the CRCs checked a buffer at a time by {@link verifyFrames}
 * (native where the addon is built): what the reader itself now does. Informational only:
 * the merge's target is set against {@link rawReadCrc}, the loop a Node user writes by
 * hand; this one shows how much of the gap to it was the per-record JavaScript CRC.
 */
export function rawReadBatchCrc(paths: string[], block = 1 << 20): { records: number; bytes: number } {
  let records = 0, bytes = 0;
  readFrames(paths, block, (buf, dv, off, have, p) => {
    const good = verifyFrames(buf, dv, off, have, 0xffffffff);
    bytes += good - off;
    for (; off < good; off += 8 + dv.getUint32(off, true)) records++;
    // At `off`: a frame cut off by the end of what was read, a zero length (the end), or a bad CRC.
    if (have - off >= 8) {
      const len = dv.getUint32(off, true);
      if (len === 0) return -1;
      if (have - off >= 8 + len) throw new Error(`bad CRC in ${p}`);
    }
    return off;
  });
  return { records, bytes };
}
