import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import fc from 'fast-check';
import { encodeRecord, PerCoreWalEntry, PerCoreWalError, WalMergeIterator } from '../src/index.js';
import { tempDir } from './helpers/tmp.js';

// Segments that mix Puts and Deletes (the reader's fast path) with every other operation,
// records longer than the read block, read blocks from a few records to many, from/end
// bounds and upToEpoch, compared with sorting what was written; and damaged records.

type Kind = 'put' | 'delete' | 'checkpoint' | 'commit' | 'barrier' | 'big';
const kindArb = fc.constantFrom<Kind>('put', 'put', 'put', 'put', 'delete', 'checkpoint', 'commit', 'barrier', 'big');
const stepArb = fc.record({ kind: kindArb, dt: fc.constantFrom(0n, 1n, 7n, 1n << 33n), de: fc.constantFrom(0n, 0n, 0n, 1n) });

interface Written { entry: PerCoreWalEntry; start: number; end: number }

function makeEntry(core: number, seq: bigint, epoch: bigint, ts: bigint, kind: Kind, i: number): PerCoreWalEntry {
  const k = Buffer.from(`c${core}-${i}`);
  switch (kind) {
    case 'put': return PerCoreWalEntry.put(core, epoch, seq, k, Buffer.alloc(i % 50, i & 0xff), ts);
    case 'big': return PerCoreWalEntry.put(core, epoch, seq, k, Buffer.alloc(700 + (i % 300), i & 0xff), ts);
    case 'delete': return PerCoreWalEntry.delete(core, epoch, seq, k, ts);
    case 'checkpoint': return PerCoreWalEntry.checkpoint(core, epoch, seq, BigInt(i), ts);
    case 'commit': return PerCoreWalEntry.commit(core, epoch, seq, { s: i }, null, ts);
    case 'barrier': return PerCoreWalEntry.epochBarrier(core, epoch, seq, ts);
  }
}

/** Writes one segment of `steps`; returns its path and every record's entry and extent. */
function writeSegment(dir: string, core: number, steps: { kind: Kind; dt: bigint; de: bigint }[]): { path: string; records: Written[] } {
  const records: Written[] = [];
  const bufs: Buffer[] = [];
  let at = 0, ts = 1_000n + BigInt(core), epoch = 0n;
  steps.forEach((s, i) => {
    ts += s.dt;
    epoch += s.de;
    const e = makeEntry(core, BigInt(i), epoch, ts, s.kind, i);
    const r = encodeRecord(e);
    records.push({ entry: e, start: at, end: at + r.length });
    bufs.push(r);
    at += r.length;
  });
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `wal-${core}.log`);
  writeFileSync(path, Buffer.concat(bufs));
  return { path, records };
}

const id = (e: PerCoreWalEntry) => `${e.coreId}/${e.sequence}`;
const same = (a: PerCoreWalEntry, b: PerCoreWalEntry) => {
  assert.equal(id(a), id(b));
  assert.equal(a.epoch, b.epoch);
  assert.equal(a.timestampNs, b.timestampNs);
  assert.deepEqual(a.operation, b.operation);
};

test('property: the merge equals sorting every entry, with from, end, upToEpoch and any block size', () => {
  const root = tempDir();
  let run = 0;
  fc.assert(
    fc.property(
      fc.array(fc.array(stepArb, { maxLength: 80 }), { minLength: 1, maxLength: 4 }),
      fc.integer({ min: 44, max: 4096 }),
      fc.option(fc.nat(3), { nil: undefined }),
      fc.array(fc.tuple(fc.nat(), fc.nat()), { minLength: 4, maxLength: 4 }),
      (segs, blockSize, upTo, cuts) => {
        const dir = join(root, `run-${run++}`);
        const written = segs.map((steps, c) => writeSegment(dir, c, steps));
        // from and end: record boundaries picked by `cuts` (end at the file's end if it picks past it).
        const sources = written.map((w, c) => {
          const n = w.records.length;
          const [a, b] = cuts[c]!;
          const from = n === 0 ? 0 : a % (n + 1);
          const endAt = n === 0 ? n : from + (b % (n - from + 2));
          return { coreId: c, path: w.path, fromIdx: from, endIdx: Math.min(n, endAt) };
        });
        const bounds = (w: Written[], i: number) => (i < w.length ? w[i]!.start : (w.at(-1)?.end ?? 0));
        const merge = WalMergeIterator.open(sources.map((s, c) => ({
          coreId: c, path: s.path, from: bounds(written[c]!.records, s.fromIdx), end: bounds(written[c]!.records, s.endIdx),
        })), { blockSize, upToEpoch: upTo });
        const got = merge.toArray();

        const taken = written.map((w, c) => {
          const s = sources[c]!;
          const out: Written[] = [];
          for (const r of w.records.slice(s.fromIdx, s.endIdx)) {
            if (upTo !== undefined && r.entry.epoch > BigInt(upTo)) break;
            out.push(r);
          }
          return out;
        });
        const expected = taken.flat().map((r) => r.entry).sort(PerCoreWalEntry.compare);
        assert.equal(got.length, expected.length);
        got.forEach((e, i) => same(e, expected[i]!));
        assert.deepEqual(merge.positions(), taken.map((t, c) => (t.length > 0 ? t.at(-1)!.end : bounds(written[c]!.records, sources[c]!.fromIdx))));
      },
    ),
    { numRuns: 200 },
  );
});

test('property: a damaged record stops the merge where taking the record before it would, with its error', () => {
  const root = tempDir();
  let run = 0;
  fc.assert(
    fc.property(
      fc.array(fc.array(stepArb, { minLength: 3, maxLength: 60 }), { minLength: 1, maxLength: 3 }),
      fc.integer({ min: 44, max: 2048 }),
      fc.nat(), fc.nat(), fc.constantFrom('crc', 'length', 'core', 'order'),
      (segs, blockSize, segPick, recPick, damage) => {
        const dir = join(root, `run-${run++}`);
        const written = segs.map((steps, c) => writeSegment(dir, c, steps));
        const c = segPick % written.length;
        const recs = written[c]!.records;
        // Never the last record: a bad last record is a torn tail, not an error.
        const bad = recPick % (recs.length - 1);
        const file = Buffer.concat(recs.map((r) => encodeRecord(r.entry)));
        const at = recs[bad]!.start;
        let code: string;
        if (damage === 'crc') { file[at + 8 + 20] ^= 1; code = 'CHECKSUM_MISMATCH'; }
        else if (damage === 'length') { file.writeUInt32LE(0xffffffff, at); code = 'CORRUPTED'; }
        else if (damage === 'core') {
          const e = recs[bad]!.entry;
          const other = PerCoreWalEntry.put(c + 1, e.epoch, e.sequence, Buffer.from('x'), Buffer.from('y'), e.timestampNs);
          const r = encodeRecord(other);
          recs[bad] = { entry: other, start: at, end: at + r.length };
          const rest = Buffer.concat(recs.slice(bad + 1).map((x) => encodeRecord(x.entry)));
          writeFileSync(written[c]!.path, Buffer.concat([file.subarray(0, at), r, rest]));
          code = 'CORRUPTED';
        } else {
          // An entry ordering before the one before it: sequence and time go back.
          const prev = bad > 0 ? recs[bad - 1]!.entry : null;
          if (prev === null) return; // nothing to go back from
          const back = PerCoreWalEntry.put(c, prev.epoch, prev.sequence, Buffer.from('x'), Buffer.from('y'), prev.timestampNs);
          const r = encodeRecord(back);
          const rest = Buffer.concat(recs.slice(bad + 1).map((x) => encodeRecord(x.entry)));
          writeFileSync(written[c]!.path, Buffer.concat([file.subarray(0, at), r, rest]));
          code = 'CORRUPTED';
        }
        if (damage === 'crc' || damage === 'length') writeFileSync(written[c]!.path, file);

        const merge = WalMergeIterator.open(written.map((w, i) => ({ coreId: i, path: w.path })), { blockSize });
        const got: PerCoreWalEntry[] = [];
        let err: unknown = null;
        try {
          for (const e of merge) got.push(e);
        } catch (e) {
          err = e;
        }
        assert.ok(err instanceof PerCoreWalError, `expected an error, got ${String(err)}`);
        assert.equal(err.code, code);
        // Every entry ordering before the damaged segment's last good one is yielded, in order;
        // that one is not (taking it is what reads the damaged record), nor anything after.
        const good = written.flatMap((w, i) => (i === c ? recs.slice(0, bad) : w.records)).map((r) => r.entry).sort(PerCoreWalEntry.compare);
        const lastGood = bad > 0 ? recs[bad - 1]!.entry : null;
        const expected = lastGood === null ? [] : good.filter((e) => PerCoreWalEntry.compare(e, lastGood) < 0);
        assert.equal(got.length, expected.length);
        got.forEach((e, i) => same(e, expected[i]!));
      },
    ),
    { numRuns: 200 },
  );
});
