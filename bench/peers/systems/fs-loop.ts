import { closeSync, fdatasyncSync, openSync, readSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { crc32c } from '../../../src/crc/crc32c.js';
import { FS_LOOP } from '../names.js';
import type { PeerSystem, ReadBack, Store } from '../types.js';
import { TurnGroupCommit } from './turn-group.js';

// [length u32][crc32c u32][key length u16][key][value]: the least a hand-written log needs to be read back and checked.
const HEADER = 10;

/** Records framed into one growing buffer, written with one `writeSync` per commit. */
class FrameBuffer {
  buf = Buffer.allocUnsafe(1 << 16);
  len = 0;

  add(key: Buffer, value: Buffer): void {
    const n = HEADER + key.length + value.length;
    if (this.len + n > this.buf.length) this.grow(this.len + n);
    const b = this.buf, at = this.len;
    b.writeUInt32LE(n - 8, at);
    b.writeUInt16LE(key.length, at + 8);
    key.copy(b, at + HEADER);
    value.copy(b, at + HEADER + key.length);
    b.writeUInt32LE(crc32c(b, at + 8, at + n), at + 4);
    this.len += n;
  }

  private grow(min: number): void {
    const next = Buffer.allocUnsafe(Math.max(min, this.buf.length * 2));
    this.buf.copy(next, 0, 0, this.len);
    this.buf = next;
  }
}

/**
 * The floor a Node user gets by hand: one file, `fs.writeSync` per commit and
 * `fs.fdatasyncSync` for a durable one; no preallocation, so every sync also commits the
 * file's new size. Concurrent producers share one write + fdatasync per event-loop turn.
 */
export const fsLoop: PeerSystem = {
  name: FS_LOOP,
  notes: 'one file, framed records [len][crc32c][klen][key][value], fs.writeSync per commit + fs.fdatasyncSync when durable, '
    + 'no preallocation; concurrent producers: one write + fdatasync per event-loop turn',
  open(dir, durable): Store {
    const fd = openSync(join(dir, 'log.bin'), 'w+');
    const frames = new FrameBuffer();
    let pos = 0;
    const write = (): void => {
      let done = 0;
      while (done < frames.len) done += writeSync(fd, frames.buf, done, frames.len - done, pos + done);
      pos += frames.len;
      frames.len = 0;
    };
    const commit = (): void => {
      write();
      if (durable) fdatasyncSync(fd);
    };
    const group = new TurnGroupCommit(commit);
    return {
      commit(keys, value) {
        for (const k of keys) frames.add(k, value);
        commit();
      },
      put(key, value) {
        frames.add(key, value);
        return group.enqueue();
      },
      close() {
        commit();
        closeSync(fd);
      },
    };
  },
  readBack(dir): ReadBack {
    const fd = openSync(join(dir, 'log.bin'), 'r');
    let buf = Buffer.allocUnsafe(1 << 20);
    let have = 0, filePos = 0, records = 0, bytes = 0;
    try {
      for (;;) {
        const n = readSync(fd, buf, have, buf.length - have, filePos);
        filePos += n;
        have += n;
        let at = 0;
        while (have - at >= 8) {
          const len = buf.readUInt32LE(at);
          if (have - at < 8 + len) break;
          if (crc32c(buf, at + 8, at + 8 + len) !== buf.readUInt32LE(at + 4)) throw new Error(`fs loop: bad record at ${filePos - have + at}`);
          records++;
          bytes += len - 2;
          at += 8 + len;
        }
        buf.copy(buf, 0, at, have);
        have -= at;
        if (have === buf.length) buf = Buffer.concat([buf, Buffer.allocUnsafe(buf.length)]);
        if (n === 0) break;
      }
    } finally {
      closeSync(fd);
    }
    return { records, bytes };
  },
};
