import assert from 'node:assert/strict';
import { readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  CoreWalWriter, encodeRecord, mergeSegmentFiles, PerCoreWalEntry, PerCoreWalError, WalMergeIterator,
} from '../src/index.js';
import { b, tempDir } from './helpers/tmp.js';

function segment(dir: string, core: number, n: number): { path: string; starts: number[] } {
  const path = join(dir, `wal-${core}.log`);
  const w = CoreWalWriter.create(core, path, { preallocate: 0 });
  const starts: number[] = [];
  for (let i = 0; i < n; i++) starts.push(w.appendPut(b(`c${core}-${i}`), b('value')));
  w.sync();
  w.close();
  return { path, starts };
}

test('merge: a torn tail ends that segment at its valid end; the others go on', () => {
  const dir = tempDir();
  const s0 = segment(dir, 0, 5), s1 = segment(dir, 1, 5);
  truncateSync(s0.path, s0.starts[4]! + 10);
  const out = mergeSegmentFiles([{ coreId: 0, path: s0.path }, { coreId: 1, path: s1.path }]);
  assert.equal(out.filter((e) => e.coreId === 0).length, 4);
  assert.equal(out.filter((e) => e.coreId === 1).length, 5);
});

test('merge: a checksum mismatch before the end throws CHECKSUM_MISMATCH naming file and position', () => {
  const dir = tempDir();
  const s0 = segment(dir, 0, 5), s1 = segment(dir, 1, 5);
  const bytes = readFileSync(s1.path);
  bytes[s1.starts[2]! + 20] ^= 1;
  writeFileSync(s1.path, bytes);
  const it = WalMergeIterator.open([{ coreId: 0, path: s0.path }, { coreId: 1, path: s1.path }]);
  assert.throws(() => it.toArray(), (e: unknown) =>
    e instanceof PerCoreWalError && e.code === 'CHECKSUM_MISMATCH' && e.path === s1.path && e.position === s1.starts[2] && e.coreId === 1);
  assert.equal(it.next().done, true, 'the iterator closed its files');
});

test('merge: a segment whose entries go backwards is CORRUPTED, not silently mis-merged', () => {
  const dir = tempDir();
  const path = join(dir, 'wal-0.log');
  writeFileSync(path, Buffer.concat([
    encodeRecord(PerCoreWalEntry.put(0, 5, 0, b('a'), b('1'), 100)),
    encodeRecord(PerCoreWalEntry.put(0, 3, 1, b('b'), b('2'), 200)),
  ]));
  assert.throws(() => mergeSegmentFiles([{ coreId: 0, path }]), (e: unknown) =>
    e instanceof PerCoreWalError && e.code === 'CORRUPTED' && e.position !== undefined && e.position > 0);
});

test('merge: missing segment is SEGMENT_NOT_FOUND; from past end is INVALID_POSITION; end bounds the read', () => {
  const dir = tempDir();
  const s0 = segment(dir, 0, 3);
  assert.throws(() => mergeSegmentFiles([{ coreId: 0, path: s0.path }, { coreId: 1, path: join(dir, 'nope') }]),
    (e: unknown) => e instanceof PerCoreWalError && e.code === 'SEGMENT_NOT_FOUND');
  assert.throws(() => mergeSegmentFiles([{ coreId: 0, path: s0.path, from: 10, end: 5 }]),
    (e: unknown) => e instanceof PerCoreWalError && e.code === 'INVALID_POSITION');
  assert.equal(mergeSegmentFiles([{ coreId: 0, path: s0.path, end: s0.starts[2]! }]).length, 2);
  assert.equal(mergeSegmentFiles([{ coreId: 0, path: s0.path, from: s0.starts[1]! }]).length, 2);
});
