import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import fc from 'fast-check';
import { crc32cJs, encodeRecord, PerCoreWalEntry, PerCoreWalReader, realFs } from '../src/index.js';
import { RECOVERY_MODES, SegmentCursor, type RecoveryMode } from '../src/recovery/cursor.js';
import { corruptionSweep, describeResult, sweepSegment } from './helpers/corrupt-sweep.js';
import { tempDir } from './helpers/tmp.js';
import { runModule } from './helpers/run-module.js';

// The reader checks CRCs a run of frames at a time (verifyFrames) and trusts a record only
// when a run vouches for it; everything else takes the per-record path. These tests hold
// it to giving exactly what the per-record path alone (batchVerify: false) gives, on
// damaged files, with blocks replaced under it and with the reader moved around.

const digest = (lines: string[]): string => createHash('sha256').update(lines.join('\n')).digest('hex');

test('damage at every byte, and a cut at every byte: the same result and position with batches as without, native or not', () => {
  const dir = tempDir();
  const batched = corruptionSweep(dir, true);
  const perRecord = corruptionSweep(dir, false);
  assert.equal(batched.length, perRecord.length);
  for (let i = 0; i < batched.length; i++) assert.equal(batched[i], perRecord[i]);
  // The sweep does reach every kind of result.
  for (const kind of ['eof', 'tornWrite', 'checksumMismatch', 'corrupted']) {
    assert.ok(perRecord.some((l) => l.includes(` ${kind}`)), kind);
  }

  // The TypeScript batch (addon off) in a child process.
  const url = (p: string): string => new URL(p, import.meta.url).href;
  const script = `
    const { corruptionSweep } = await import(${JSON.stringify(url('./helpers/corrupt-sweep.js'))});
    const { verifyBackend } = await import(${JSON.stringify(url('../src/record/verify.js'))});
    const { createHash } = await import('node:crypto');
    const lines = corruptionSweep(${JSON.stringify(dir)}, true);
    console.log(JSON.stringify([verifyBackend.native, lines.length, createHash('sha256').update(lines.join('\\n')).digest('hex')]));
  `;
  const r = runModule(script, { env: { ...process.env, COREWAL_FRAMES_ADDON: 'off' } });
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), [false, perRecord.length, digest(perRecord)]);
});

type Op =
  | { op: 'read'; n: number }
  | { op: 'seek'; to: number }
  | { op: 'resync'; from: number }
  | { op: 'upTo'; epoch: number }
  | { op: 'validEnd' };
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ op: fc.constant('read' as const), n: fc.integer({ min: 1, max: 6 }) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('seek' as const), to: fc.nat({ max: 10_000 }) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('resync' as const), from: fc.nat({ max: 10_000 }) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('upTo' as const), epoch: fc.integer({ min: 0, max: 4 }) }) },
  { weight: 1, arbitrary: fc.constant({ op: 'validEnd' as const }) },
);

/** Runs `ops` on a reader; what each op returned, and the position after it. */
function trace(path: string, blockSize: number, batchVerify: boolean, ops: Op[], bounds: number[], len: number): string[] {
  const r = PerCoreWalReader.open(0, path, { blockSize, batchVerify });
  const out: string[] = [];
  try {
    for (const o of ops) {
      let what: string;
      switch (o.op) {
        case 'read': {
          const got: string[] = [];
          for (let i = 0; i < o.n; i++) got.push(describeResult(r.readNext()));
          what = got.join(', ');
          break;
        }
        case 'seek': {
          // Mostly record boundaries (where a reader is moved to); sometimes any byte.
          const to = o.to % 3 === 0 ? o.to % (len + 1) : bounds[o.to % bounds.length]!;
          r.seek(Math.min(to, len));
          what = `seek ${to}`;
          break;
        }
        case 'resync': {
          const at = r.resyncFrom(o.from % (len + 1));
          if (at >= 0) r.seek(at);
          what = `resync ${at}`;
          break;
        }
        case 'upTo': {
          try {
            what = `upTo ${r.readUpToEpoch(o.epoch).map((e) => e.sequence).join(' ')}`;
          } catch (e) {
            what = `upTo threw ${(e as Error).message}`;
          }
          break;
        }
        case 'validEnd':
          what = `validEnd ${r.findValidEnd()}`;
          break;
      }
      out.push(`${what} @${r.position()}`);
    }
  } finally {
    r.close();
  }
  return out;
}

test('property: seeks, resyncs, readUpToEpoch and reads over damaged segments, any block size: batches change nothing', () => {
  const dir = tempDir();
  const { bytes, bounds } = sweepSegment();
  const path = join(dir, 'ops.log');
  fc.assert(fc.property(
    fc.array(fc.record({ at: fc.nat({ max: bytes.length - 1 }), x: fc.integer({ min: 1, max: 255 }) }), { maxLength: 3 }),
    fc.nat({ max: 60 }),
    fc.constantFrom(24, 64, 100, 200, 333, 1 << 20),
    fc.array(opArb, { minLength: 1, maxLength: 25 }),
    (damage, cut, blockSize, ops) => {
      const b = Buffer.from(bytes.subarray(0, bytes.length - cut));
      for (const d of damage) if (d.at < b.length) b[d.at] ^= d.x;
      writeFileSync(path, b);
      assert.deepEqual(trace(path, blockSize, true, ops, bounds, b.length), trace(path, blockSize, false, ops, bounds, b.length));
    }), { numRuns: 600 });
});

test('a verified run never outlives its block: after a reload, frames at the old run\'s offsets are checked afresh', () => {
  // A record of another core with a good CRC stops the reader at 0, with a run verified
  // from block offset 0 over the first block. resyncFrom then loads a block that starts
  // at a good record past the first block (block offset 0 again), followed by one whose
  // CRC field is damaged, at an offset the old run covered. Had the old run survived the
  // reload, the reader would take the damaged record as verified.
  const dir = tempDir();
  const { bytes, bounds } = sweepSegment();
  const other = encodeRecord(PerCoreWalEntry.put(1, 0n, 0n, Buffer.from('x'), Buffer.alloc(20), 5n));
  const BLOCK = 256;
  const j = bounds.findIndex((x) => x + other.length >= BLOCK);
  const from = other.length + bounds[j]!;
  const bad = other.length + bounds[j + 1]!;
  assert.ok(bad - from < BLOCK - other.length, 'the damaged record sits where the old run reached');
  const b = Buffer.concat([other, bytes]);
  b[bad + 4] ^= 0x04;
  const path = join(dir, 'reload.log');
  writeFileSync(path, b);
  const expected = `checksumMismatch ${bad} ${b.readUInt32LE(bad + 4)} ${crc32cJs(b, bad + 8, bad + 8 + b.readUInt32LE(bad))}`;
  for (const batchVerify of [true, false]) {
    const r = PerCoreWalReader.open(0, path, { blockSize: BLOCK, batchVerify });
    for (let i = 0; i < 2; i++) assert.match(describeResult(r.readNext()), /^corrupted 0 entry of core 1/);
    assert.equal(r.resyncFrom(from), from);
    r.seek(from);
    assert.equal(describeResult(r.readNext()), `entry ${j}`);
    for (let i = 0; i < 2; i++) assert.equal(describeResult(r.readNext()), expected, `batchVerify ${batchVerify}, read ${i}`);
    r.close();
  }
});

test('a verified run vouches only for the frames its lengths lead to: a frame inside a verified value, reached by a seek, is checked', () => {
  // The second record's value is itself a record of this core, its CRC field damaged:
  // inside the run verified from the first record, but not one of its frames.
  const dir = tempDir();
  const inner = encodeRecord(PerCoreWalEntry.put(0, 0n, 7n, Buffer.from('in'), Buffer.alloc(30, 1), 9n));
  inner[4] ^= 0x20;
  const first = encodeRecord(PerCoreWalEntry.put(0, 0n, 0n, Buffer.from('a'), Buffer.alloc(10), 1n));
  const carrier = encodeRecord(PerCoreWalEntry.put(0, 0n, 1n, Buffer.from('b'), inner, 2n));
  // The first record is read by the full path (no block yet), the second by the fast path,
  // which verifies the run from it to the end: the carrier is next when the reader moves.
  const b = Buffer.concat([first, first, carrier, first]);
  const at = b.indexOf(inner);
  const path = join(dir, 'inner.log');
  writeFileSync(path, b);
  const expected = `checksumMismatch ${at} ${inner.readUInt32LE(4)} ${crc32cJs(inner, 8)}`;
  for (const batchVerify of [true, false]) {
    const r = PerCoreWalReader.open(0, path, { batchVerify });
    for (let i = 0; i < 2; i++) assert.equal(describeResult(r.readNext()), 'entry 0');
    r.seek(at);
    assert.equal(describeResult(r.readNext()), expected, `batchVerify ${batchVerify}`);
    r.close();
  }
});

/** A recovery cursor's whole reading of `path`: every head, then how the segment ended. */
function cursorRead(path: string, mode: RecoveryMode, batchVerify: boolean): string {
  const cur = new SegmentCursor(0, path, { fs: realFs, maxRecordSize: undefined, mode, from: 0, batchVerify });
  const out: string[] = [];
  try {
    while (cur.advance()) out.push(`${cur.hSLo}@${cur.consumed}`);
    out.push(`${cur.end} ${cur.entries} ${cur.consumed} ${JSON.stringify(cur.bad)} ${cur.skippedBytes}/${cur.skippedRegions}`);
  } catch (e) {
    out.push(`threw ${(e as Error).message}`);
  } finally {
    cur.close();
  }
  return out.join(' ');
}

test('recovery\'s cursor: damage at every byte and a cut at every byte read the same with batches as without, in every mode', () => {
  const dir = tempDir();
  const { bytes } = sweepSegment();
  const path = join(dir, 'cursor.log');
  const seen = new Set<string>();
  const check = (what: string): void => {
    for (const mode of RECOVERY_MODES) {
      const per = cursorRead(path, mode, false);
      assert.equal(cursorRead(path, mode, true), per, `${what}, ${mode}`);
      seen.add(per.slice(per.lastIndexOf('@')).split(' ')[1]!);
    }
  };
  for (let at = 0; at < bytes.length; at++) {
    for (const flip of [0x01, 0x80]) {
      const b = Buffer.from(bytes);
      b[at] ^= flip;
      writeFileSync(path, b);
      check(`byte ${at} ^ ${flip}`);
    }
  }
  for (let cut = 0; cut <= bytes.length; cut += 3) {
    writeFileSync(path, bytes.subarray(0, cut));
    check(`cut ${cut}`);
  }
  // The sweep reaches the ways a segment's replay ends.
  for (const end of ['clean', 'torn', 'cut', 'skipped']) assert.ok(seen.has(end), `${end} in ${[...seen].join(', ')}`);
});
