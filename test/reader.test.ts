import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { CoreWalWriter, PerCoreWalError, PerCoreWalReader, type WalReadResult } from '../src/index.js';
import { b, tempDir } from './helpers/tmp.js';

/** Writes `n` puts (plus a commit) and returns the path, the file bytes and the record boundaries. */
function segment(dir: string, n: number, opts = {}): { path: string; bytes: Buffer; bounds: number[] } {
  const path = join(dir, 'wal-0.log');
  const w = CoreWalWriter.create(0, path, { preallocate: 0, ...opts });
  const bounds: number[] = [];
  for (let i = 0; i < n; i++) bounds.push(w.appendPut(b(`key-${i}`), b(`value-${i}`.repeat(i % 3 + 1))));
  bounds.push(w.appendCommit({ src: BigInt(n) }, 7n));
  w.sync();
  bounds.push(w.position());
  w.close();
  return { path, bytes: readFileSync(path), bounds };
}

function readAllResults(path: string): { entries: number; last: WalReadResult } {
  const r = PerCoreWalReader.open(0, path);
  let entries = 0;
  for (;;) {
    const x = r.readNext();
    if (x.kind !== 'entry') { r.close(); return { entries, last: x }; }
    entries++;
  }
}

test('the last record torn at every byte offset: tornWrite at its start, findValidEnd at the previous boundary', () => {
  const dir = tempDir();
  const { path, bytes, bounds } = segment(dir, 5);
  const lastStart = bounds[bounds.length - 2]!;
  const end = bounds[bounds.length - 1]!;
  const torn = join(dir, 'torn.log');
  for (let cut = lastStart + 1; cut < end; cut++) {
    writeFileSync(torn, bytes.subarray(0, cut));
    const { entries, last } = readAllResults(torn);
    assert.equal(entries, 5, `cut at ${cut}`);
    assert.equal(last.kind, 'tornWrite', `cut at ${cut}`);
    assert.equal((last as { position: number }).position, lastStart);
    assert.equal(PerCoreWalReader.open(0, torn).findValidEnd(), lastStart);
    // The same tear inside preallocated space: the rest of the record is zeros.
    const padded = Buffer.alloc(end + 4096);
    bytes.copy(padded, 0, 0, cut);
    writeFileSync(torn, padded);
    const z = readAllResults(torn);
    // If the cut-off bytes were zeros anyway, zero padding restored the record exactly.
    const restored = bytes.subarray(cut, end).every((x) => x === 0);
    assert.equal(z.entries, restored ? 6 : 5, `zero-padded cut at ${cut}`);
    if (!restored) assert.ok(z.last.kind === 'tornWrite' || (cut - lastStart < 4 && z.last.kind === 'eof'), `zero-padded cut at ${cut}: ${z.last.kind}`);
  }
  assert.equal(readAllResults(path).last.kind, 'eof');
});

test('every single-bit flip in a record is never read as an entry', () => {
  const dir = tempDir();
  const { bytes, bounds } = segment(dir, 3);
  const start = bounds[1]!, end = bounds[2]!;
  const flipped = join(dir, 'flip.log');
  for (let i = start; i < end; i++) {
    for (let bit = 0; bit < 8; bit++) {
      const copy = Buffer.from(bytes);
      copy[i]! ^= 1 << bit;
      writeFileSync(flipped, copy);
      const r = PerCoreWalReader.open(0, flipped);
      assert.equal(r.readNext().kind, 'entry');
      const x = r.readNext();
      assert.notEqual(x.kind, 'entry', `flip byte ${i} bit ${bit} read as an entry`);
      assert.notEqual(x.kind, 'eof');
      assert.equal((x as { position: number }).position, start);
      r.close();
    }
  }
});

test('zeros from a record boundary to the end are the end of the log; a zero length before other bytes is corruption', () => {
  const dir = tempDir();
  const { bytes, bounds } = segment(dir, 4);
  const p = join(dir, 'z.log');
  writeFileSync(p, Buffer.concat([bytes, Buffer.alloc(1 << 20)]));
  assert.equal(readAllResults(p).entries, 5);
  assert.equal(readAllResults(p).last.kind, 'eof');
  // A few zero bytes (fewer than a header) are preallocated space too.
  writeFileSync(p, Buffer.concat([bytes, Buffer.alloc(3)]));
  assert.equal(readAllResults(p).last.kind, 'eof');
  // Zero length, then a non-zero byte far away.
  const z = Buffer.concat([bytes, Buffer.alloc(100000)]);
  z[z.length - 1] = 1;
  writeFileSync(p, z);
  const r = readAllResults(p);
  assert.equal(r.entries, 5);
  assert.equal(r.last.kind, 'corrupted');
  assert.equal((r.last as { position: number }).position, bounds[bounds.length - 1]);
  // A zero length in the middle, with valid records after it.
  const mid = Buffer.from(bytes);
  mid.fill(0, bounds[1]!, bounds[1]! + 4);
  writeFileSync(p, mid);
  const m = readAllResults(p);
  assert.equal(m.entries, 1);
  assert.notEqual(m.last.kind, 'eof');
});

test('a length above the maximum is corruption, with no allocation of that size', () => {
  const dir = tempDir();
  const { bytes, bounds } = segment(dir, 2);
  const p = join(dir, 'big.log');
  const copy = Buffer.from(bytes);
  copy.writeUInt32LE(0xfffffff0, bounds[1]!);
  writeFileSync(p, copy);
  const before = process.memoryUsage().arrayBuffers;
  const r = PerCoreWalReader.open(0, p);
  r.readNext();
  const x = r.readNext();
  assert.equal(x.kind, 'corrupted');
  assert.match((x as { reason: string }).reason, /above the maximum/);
  assert.ok(process.memoryUsage().arrayBuffers - before < 64 << 20);
  // Below the maximum but past the end of the file: a torn write, still no big allocation.
  copy.writeUInt32LE(200 << 20, bounds[1]!);
  writeFileSync(p, copy);
  const r2 = PerCoreWalReader.open(0, p);
  r2.readNext();
  assert.equal(r2.readNext().kind, 'tornWrite');
  assert.ok(process.memoryUsage().arrayBuffers - before < 64 << 20);
  // A configured maximum applies too.
  const r3 = PerCoreWalReader.open(0, p, { maxRecordSize: 40 });
  assert.equal(r3.readNext().kind, 'corrupted');
});

test('iteration throws a typed error on a bad record; readAll tolerates a torn tail only', () => {
  const dir = tempDir();
  const { bytes, bounds } = segment(dir, 3);
  const p = join(dir, 'it.log');
  writeFileSync(p, bytes.subarray(0, bounds[bounds.length - 1]! - 2));
  assert.throws(() => [...PerCoreWalReader.open(0, p)], (e: unknown) => e instanceof PerCoreWalError && e.code === 'TORN_WRITE' && e.position === bounds[bounds.length - 2]);
  assert.equal(PerCoreWalReader.open(0, p).readAll().length, 3);
  const c = Buffer.from(bytes);
  c[bounds[1]! + 20]! ^= 0xff;
  writeFileSync(p, c);
  assert.throws(() => PerCoreWalReader.open(0, p).readAll(), (e: unknown) => e instanceof PerCoreWalError && e.code === 'CHECKSUM_MISMATCH' && e.path === p);
  assert.throws(() => PerCoreWalReader.open(1, p).readAll(), (e: unknown) => e instanceof PerCoreWalError && e.code === 'CORRUPTED');
});

test('openFrom, readUpToEpoch, a missing segment, bad arguments', () => {
  const dir = tempDir();
  const path = join(dir, 'wal-0.log');
  const w = CoreWalWriter.create(0, path);
  w.appendPut(b('a'), b('1'));
  w.setEpoch(2);
  const second = w.appendPut(b('b'), b('2'));
  w.setEpoch(3);
  w.appendPut(b('c'), b('3'));
  w.sync();
  w.close();
  const r = PerCoreWalReader.open(0, path);
  assert.deepEqual(r.readUpToEpoch(2).map((e) => e.epoch), [0n, 2n]);
  assert.deepEqual(r.readAll().map((e) => e.epoch), [3n]);
  assert.deepEqual(PerCoreWalReader.openFrom(0, path, second).readAll().map((e) => String(e.key())), ['b', 'c']);
  assert.throws(() => PerCoreWalReader.open(0, join(dir, 'nope.log')), (e: unknown) => (e as PerCoreWalError).code === 'SEGMENT_NOT_FOUND');
  assert.throws(() => PerCoreWalReader.openFrom(0, path, -1), (e: unknown) => (e as PerCoreWalError).code === 'INVALID_POSITION');
  assert.throws(() => PerCoreWalReader.openFrom(0, path, 1e12), (e: unknown) => (e as PerCoreWalError).code === 'INVALID_POSITION');
});

test('records larger than the read block are read whole', () => {
  const dir = tempDir();
  const path = join(dir, 'wal-0.log');
  const w = CoreWalWriter.create(0, path);
  const big = Buffer.alloc(3 << 20, 9);
  w.appendPut(b('small'), b('x'));
  w.appendPut(b('big'), big);
  w.appendPut(b('after'), b('y'));
  w.sync();
  w.close();
  const e = PerCoreWalReader.open(0, path).readAll();
  assert.equal(e.length, 3);
  assert.ok(Buffer.from(e[1]!.value()!).equals(big));
  assert.equal(Buffer.from(e[2]!.key()!).toString(), 'after');
});
