import assert from 'node:assert/strict';
import { openSync, writeSync, closeSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { inspect } from 'node:util';
import fc from 'fast-check';
import {
  CoreWalWriter, PerCoreWalConfig, PerCoreWalEntry, PerCoreWalManager, PerCoreWalReader, WalMergeIterator, realFs, type WalFs,
} from '../src/index.js';
import { decodePayloadBuffer, encodePayloadToBuffer } from '../src/entry/codec.js';
import { tempDir } from './helpers/tmp.js';

// Entries read from a segment build their Put/Delete operation on first use, from the read
// block they came from; the reader then reads on into fresh blocks. These tests keep
// entries untouched while the reader (or merge) moves through many blocks, then look.

const noSyncFs: WalFs = { ...realFs, fdatasyncSync: () => {}, fsyncSync: () => {}, fsyncDir: () => {} };
const key = (core: number, i: number) => `core${core}-key${i}`;
const value = (core: number, i: number) => Buffer.alloc(20 + ((i * 37 + core) % 300), (i + core) & 0xff);

/** One segment per core, `n` entries each (Puts, and every 7th a Delete), interleaved in time. */
function writeWal(dir: string, cores: number, n: number): PerCoreWalConfig {
  let now = 1_000n;
  const cfg = new PerCoreWalConfig(dir, cores, { preallocate: 0, fs: noSyncFs, clock: () => now });
  const m = PerCoreWalManager.create(cfg);
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < cores; c++) {
      if (i % 7 === 6) m.writer(c).appendDelete(Buffer.from(key(c, i)));
      else m.writer(c).appendPut(Buffer.from(key(c, i)), value(c, i));
      now += 3n;
    }
    if (i % 100 === 99) m.advanceEpoch();
  }
  m.close();
  return cfg;
}

function check(e: PerCoreWalEntry, i: number): void {
  const c = e.coreId;
  assert.equal(Buffer.from(e.key()!).toString(), key(c, i));
  if (i % 7 === 6) {
    assert.equal(e.operationType, 'delete');
    assert.equal(e.value(), undefined);
  } else {
    assert.equal(e.operationType, 'put');
    assert.ok(Buffer.from(e.value()!).equals(value(c, i)), `value of core ${c} entry ${i}`);
  }
}

test('reader: entries kept untouched stay valid after the reader has moved through many blocks and closed', () => {
  const cfg = writeWal(tempDir(), 1, 3000);
  const path = cfg.segmentPath(0);
  // 4 KiB blocks: ~20 records each, so 3000 entries span ~150 blocks.
  const r = PerCoreWalReader.open(0, path, { blockSize: 4096 });
  const kept: PerCoreWalEntry[] = [];
  for (const e of r) kept.push(e);
  r.close();
  assert.equal(kept.length, 3000);
  kept.forEach((e, i) => check(e, i));
  // Touched twice: the same operation, and the same bytes.
  const op = kept[5]!.operation;
  assert.equal(kept[5]!.operation, op);
  assert.equal(kept[5]!.key(), op.type === 'put' ? op.key : undefined);
});

test('reader: entries do not change when the file is overwritten after they were read', () => {
  const cfg = writeWal(tempDir(), 1, 500);
  const path = cfg.segmentPath(0);
  const kept = PerCoreWalReader.open(0, path, { blockSize: 4096 }).readAll();
  const fd = openSync(path, 'r+');
  writeSync(fd, Buffer.alloc(statSync(path).size, 0xee), 0, statSync(path).size, 0);
  closeSync(fd);
  kept.forEach((e, i) => check(e, i));
});

test('reader: an entry touched at any point, before or after later reads, has its own bytes', () => {
  const cfg = writeWal(tempDir(), 1, 1200);
  const r = PerCoreWalReader.open(0, cfg.segmentPath(0), { blockSize: 4096 });
  const kept: PerCoreWalEntry[] = [];
  for (let e = r.readNext(); e.kind === 'entry'; e = r.readNext()) {
    kept.push(e.entry);
    const n = kept.length;
    if (n % 3 === 0) check(e.entry, n - 1); // touched at once
    if (n % 50 === 0) check(kept[n - 40]!, n - 40); // touched a few blocks later
  }
  r.close();
  kept.forEach((e, i) => check(e, i));
  // The built key and value are copies, not views of anything the reader owned.
  const k = kept[0]!.key() as Buffer;
  assert.equal(k.byteLength, Buffer.byteLength(key(0, 0)));
  assert.ok(k.buffer.byteLength < 64 * 1024, 'the key does not view a read block');
});

test('merge: entries kept untouched stay valid after the merge has moved through many blocks of every segment', () => {
  const cores = 5;
  const cfg = writeWal(tempDir(), cores, 800);
  const sources = Array.from({ length: cores }, (_, c) => ({ coreId: c, path: cfg.segmentPath(c) }));
  const kept = WalMergeIterator.open(sources, { blockSize: 4096 }).toArray();
  assert.equal(kept.length, cores * 800);
  // Round-robin appends with a rising clock: the merge order is (i, core).
  kept.forEach((e, n) => {
    assert.equal(e.coreId, n % cores);
    check(e, Math.floor(n / cores));
  });
  const sorted = [...kept].sort(PerCoreWalEntry.compare);
  assert.deepEqual(sorted.map((e) => [e.coreId, e.sequence]), kept.map((e) => [e.coreId, e.sequence]));
});

test('lazy entries: isPut/isDelete/operationType without building, inspect shows the operation, encode round-trips', () => {
  const dir = tempDir();
  const path = join(dir, 'wal-0.log');
  const w = CoreWalWriter.create(0, path);
  w.appendPut(Buffer.from('k1'), Buffer.from('v1'));
  w.appendDelete(Buffer.from('k2'));
  w.appendCheckpoint(9n);
  w.appendPut(Buffer.alloc(0), Buffer.alloc(0));
  w.sync();
  w.close();
  const [put, del, cp, empty] = PerCoreWalReader.open(0, path).readAll();
  assert.deepEqual([put!.isPut(), put!.isDelete(), put!.isStateOperation(), put!.operationType], [true, false, true, 'put']);
  assert.deepEqual([del!.isPut(), del!.isDelete(), del!.isStateOperation(), del!.operationType], [false, true, true, 'delete']);
  assert.deepEqual([cp!.isCheckpoint(), cp!.isStateOperation(), cp!.operationType], [true, false, 'checkpoint']);
  assert.equal(Buffer.from(empty!.key()!).length, 0);
  assert.equal(Buffer.from(empty!.value()!).length, 0);
  assert.match(inspect(put), /PerCoreWalEntry .*type: 'put'/s);
  assert.match(inspect(del), /sequence: 1n/);
  // Re-encoding a lazy entry gives the record's payload back.
  const again = decodePayloadBuffer(encodePayloadToBuffer(put!));
  assert.equal(Buffer.from(again.value()!).toString(), 'v1');
  // The writer takes a read entry as it is.
  const w2 = CoreWalWriter.create(0, join(dir, 'copy.log'));
  w2.append(del!);
  w2.sync();
  w2.close();
  assert.equal(Buffer.from(PerCoreWalReader.open(0, join(dir, 'copy.log')).readAll()[0]!.key()!).toString(), 'k2');
});

// The merge compares heads by the epoch and the timestamp as one rounded double each; these
// must never mis-order entries: epochs past 2^53, timestamps far from the first one read,
// timestamps that differ only below a double's precision, and exact ties across cores.
const U64 = (1n << 64n) - 1n;
const tsStep = fc.constantFrom(0n, 1n, 2n, 255n, 256n, 257n, (1n << 32n) - 1n, 1n << 32n, 1n << 52n, (1n << 53n) + 1n, 1n << 60n);
const epochStep = fc.constantFrom(0n, 0n, 0n, 1n, 1n << 52n, 1n << 53n, (1n << 60n) + 3n);

test('property: merge order equals PerCoreWalEntry.compare with epochs past 2^53 and timestamps anywhere in u64', () => {
  const root = tempDir();
  let run = 0;
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 6 }),
      fc.bigInt({ min: 0n, max: U64 >> 1n }),
      fc.bigInt({ min: 0n, max: (1n << 53n) + 5n }),
      fc.array(fc.tuple(fc.nat(5), tsStep, epochStep), { maxLength: 60 }),
      (cores, ts0, epoch0, steps) => {
        const dir = join(root, `run-${run++}`);
        let now = ts0;
        const cfg = new PerCoreWalConfig(dir, cores, { preallocate: 0, fs: noSyncFs, clock: () => now });
        const m = PerCoreWalManager.create(cfg);
        try {
          const epochs = new Array<bigint>(cores).fill(epoch0);
          for (let c = 0; c < cores; c++) m.writer(c).setEpoch(epoch0);
          steps.forEach(([c0, dt, de], i) => {
            const c = c0 % cores;
            if (now + dt <= U64) now += dt;
            if (epochs[c]! + de <= U64) { epochs[c]! += de; m.writer(c).setEpoch(epochs[c]!); }
            m.writer(c).appendPut(Buffer.from(`e${i}`), Buffer.from([i & 0xff]));
          });
          const merged = m.mergeSegments();
          const expected = Array.from({ length: cores }, (_, c) => PerCoreWalReader.open(c, cfg.segmentPath(c)).readAll()).flat().sort(PerCoreWalEntry.compare);
          assert.deepEqual(merged.map((e) => Buffer.from(e.key()!).toString()), expected.map((e) => Buffer.from(e.key()!).toString()));
          for (let i = 1; i < merged.length; i++) assert.ok(PerCoreWalEntry.compare(merged[i - 1]!, merged[i]!) < 0);
        } finally {
          m.close();
        }
      },
    ),
    { numRuns: 150 },
  );
});
