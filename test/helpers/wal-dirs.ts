import { mkdirSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CoreWalWriter } from '../../src/writer/writer.js';

/**
 * Real WAL directories in the states a command line must handle, written with
 * CoreWalWriter and then damaged the way crashes and bad disks do.
 */

export const seg = (dir: string, core: number): string => join(dir, `wal-${core}.log`);

/** Appends a mix of every operation; keys and values are printable text except every 7th, which is binary. */
function fill(w: CoreWalWriter, n: number, syncEach: boolean): number[] {
  const starts: number[] = [];
  for (let i = 0; i < n; i++) {
    if (i > 0 && i % 10 === 0) w.setEpoch(w.epoch() + 1n);
    const key = i % 7 === 3 ? Buffer.from([0, 1, 2, 0xff, i & 0xff]) : Buffer.from(`key-${w.coreId()}-${i}`);
    let at: number;
    if (i % 13 === 5) at = w.appendDelete(key);
    else if (i % 17 === 9) at = w.appendCheckpoint(BigInt(i));
    else if (i % 19 === 11) at = w.appendCommit({ kafka: i * 10 }, i);
    else if (i % 23 === 13) at = w.appendEpochBarrier();
    else at = w.appendPut(key, i % 7 === 3 ? Buffer.from([0xde, 0xad, i & 0xff]) : Buffer.from(`value ${i} of core ${w.coreId()}`));
    starts.push(at);
    if (syncEach) w.sync();
  }
  return starts;
}

/** `cores` clean segments of `n` entries each, synced, with the writer's preallocated zeros after them. */
export function healthyWal(dir: string, cores = 2, n = 40): void {
  mkdirSync(dir, { recursive: true });
  for (let c = 0; c < cores; c++) {
    const w = CoreWalWriter.create(c, seg(dir, c));
    fill(w, n, false);
    w.sync();
    w.close();
  }
}

/** Healthy, except that core 1's last record was cut short mid-write. Returns the bytes torn off core 1. */
export function tornWal(dir: string, n = 40): { validEnd: number; size: number } {
  healthyWal(dir, 1, n);
  const w = CoreWalWriter.create(1, seg(dir, 1), { preallocate: 0 });
  fill(w, n, false);
  w.sync();
  const validEnd = w.position();
  w.appendPut(Buffer.from('torn-key'), Buffer.alloc(100, 0x61));
  w.sync();
  const full = w.position();
  w.close();
  truncateSync(seg(dir, 1), full - 30);
  return { validEnd, size: full - 30 };
}

function flipByte(path: string, at: number): void {
  const buf = readFileSync(path);
  buf[at] = buf[at]! ^ 0x5a;
  writeFileSync(path, buf);
}

/**
 * Core 0 healthy; core 1 synced after every record, then one byte of record `bad` flipped:
 * valid records written after that record was synced follow it, so this is damage.
 */
export function damagedWal(dir: string, n = 30, bad = 12): { badPosition: number } {
  healthyWal(dir, 1, n);
  const w = CoreWalWriter.create(1, seg(dir, 1), { preallocate: 0 });
  const starts = fill(w, n, true);
  w.close();
  flipByte(seg(dir, 1), starts[bad]! + 20);
  return { badPosition: starts[bad]! };
}

/**
 * Core 0 healthy; core 1 synced once after `synced` records, the rest written but never
 * synced, and one of those garbled: crash debris past the last synced byte.
 */
export function debrisWal(dir: string, n = 30, synced = 5, bad = 20): { badPosition: number } {
  healthyWal(dir, 1, n);
  const w = CoreWalWriter.create(1, seg(dir, 1), { preallocate: 0 });
  const starts = fill(w, synced, false);
  w.sync();
  starts.push(...fill(w, n - synced, false));
  w.close();
  flipByte(seg(dir, 1), starts[bad]! + 20);
  return { badPosition: starts[bad]! };
}

/** A segment that was created and never written: zero bytes. */
export function emptyWal(dir: string): void {
  mkdirSync(dir, { recursive: true });
  CoreWalWriter.create(0, seg(dir, 0)).close();
}
