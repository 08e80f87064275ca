import { closeSync, openSync, readSync } from 'node:fs';
import { crc32c } from '../src/crc/crc32c.js';

/** Read block size of the raw baseline: 1 MiB (the buffer holds two). */
const BLOCK = 1 << 20;

/** The baseline: every record of every file read in 1 MiB blocks and its CRC checked. */
export function rawReadCrc(paths: string[]): { records: number; bytes: number } {
  const buf = Buffer.allocUnsafe(BLOCK * 2);
  let records = 0, bytes = 0;
  for (const p of paths) {
    const fd = openSync(p, 'r');
    try {
      let have = 0, off = 0, pos = 0;
      for (;;) {
        if (have - off < 8 || have - off < 8 + buf.readUInt32LE(off)) {
          buf.copy(buf, 0, off, have);
          have -= off; off = 0;
          const n = readSync(fd, buf, have, buf.length - have, pos);
          if (n === 0) break;
          pos += n; have += n;
          continue;
        }
        const len = buf.readUInt32LE(off);
        if (len === 0) break;
        if (crc32c(buf, off + 8, off + 8 + len) !== buf.readUInt32LE(off + 4)) throw new Error(`bad CRC in ${p}`);
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
