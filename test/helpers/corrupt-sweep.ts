import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { encodeRecord, PerCoreWalEntry, PerCoreWalReader, type WalReadResult } from '../../src/index.js';

/**
 * A small segment of core 0 with every kind of record, lengths from a few bytes to longer
 * than the smallest read blocks, then a zero tail (preallocated space). Deterministic, so
 * a child process builds the same bytes.
 */
export function sweepSegment(): { bytes: Buffer; bounds: number[] } {
  const recs: Buffer[] = [];
  for (let i = 0; i < 14; i++) {
    const k = Buffer.from(`k${i}`);
    const seq = BigInt(i), ts = 1000n + BigInt(i) * 7n, ep = BigInt(i >> 2);
    switch (i % 7) {
      case 3: recs.push(encodeRecord(PerCoreWalEntry.delete(0, ep, seq, k, ts))); break;
      case 4: recs.push(encodeRecord(PerCoreWalEntry.checkpoint(0, ep, seq, 9n, ts))); break;
      case 5: recs.push(encodeRecord(PerCoreWalEntry.commit(0, ep, seq, { s: i }, null, ts))); break;
      case 6: recs.push(encodeRecord(PerCoreWalEntry.epochBarrier(0, ep, seq, ts))); break;
      default: recs.push(encodeRecord(PerCoreWalEntry.put(0, ep, seq, k, Buffer.alloc(i === 8 ? 300 : i * 5, i), ts)));
    }
  }
  const bounds = [0];
  for (const r of recs) bounds.push(bounds[bounds.length - 1]! + r.length);
  return { bytes: Buffer.concat([...recs, Buffer.alloc(48)]), bounds };
}

/** One line per read to the first non-entry result: entries read, the result, where the reader stopped. */
export function describeRead(path: string, blockSize: number, batchVerify: boolean): string {
  const r = PerCoreWalReader.open(0, path, { blockSize, batchVerify });
  try {
    let n = 0;
    for (;;) {
      const x = r.readNext();
      if (x.kind !== 'entry') return `${n} ${describeResult(x)} @${r.position()}`;
      n++;
    }
  } finally {
    r.close();
  }
}

export function describeResult(x: WalReadResult): string {
  switch (x.kind) {
    case 'entry': return `entry ${x.entry.sequence}`;
    case 'eof': return 'eof';
    case 'checksumMismatch': return `checksumMismatch ${x.position} ${x.expected} ${x.actual}`;
    default: return `${x.kind} ${x.position} ${x.reason}`;
  }
}

/** Read blocks: smaller than some records, a few records, the default. */
export const SWEEP_BLOCKS = [64, 200, 1 << 20];

/**
 * Every byte of the segment spoilt three ways (one bit, the top bit, the byte zeroed),
 * then the segment cut at every byte; each file read with every block size.
 */
export function corruptionSweep(dir: string, batchVerify: boolean): string[] {
  const { bytes } = sweepSegment();
  const path = join(dir, 'sweep.log');
  const out: string[] = [];
  const readAll = (what: string): void => {
    for (const bs of SWEEP_BLOCKS) out.push(`${what} b${bs}: ${describeRead(path, bs, batchVerify)}`);
  };
  for (let at = 0; at < bytes.length; at++) {
    for (const flip of [0x01, 0x80, -1]) {
      const b = Buffer.from(bytes);
      b[at] = flip < 0 ? 0 : b[at]! ^ flip;
      if (b[at] === bytes[at]) continue;
      writeFileSync(path, b);
      readAll(`byte ${at} ${flip}`);
    }
  }
  for (let cut = 0; cut <= bytes.length; cut++) {
    writeFileSync(path, bytes.subarray(0, cut));
    readAll(`cut ${cut}`);
  }
  return out;
}
