import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  PerCoreWalConfig, PerCoreWalError, PerCoreWalManager, PerCoreWalReader, realFs,
} from '../src/index.js';
import { b, tempDir } from './helpers/tmp.js';

const code = (c: string) => (e: unknown) => e instanceof PerCoreWalError && e.code === c;

test('config: validates its arguments and names segments from the pattern', () => {
  const c = new PerCoreWalConfig('/data/wal', 4);
  assert.equal(c.segmentPath(0), '/data/wal/wal-0.log');
  assert.equal(c.segmentPath(3), '/data/wal/wal-3.log');
  assert.equal(new PerCoreWalConfig('/d', 2, { segmentPattern: 'c{core_id}-{core_id}.seg' }).segmentPath(1), '/d/c1-1.seg');
  assert.equal(new PerCoreWalConfig('/d', 65536).numCores, 65536);
  assert.throws(() => c.segmentPath(4), code('INVALID_CORE_ID'));
  assert.throws(() => c.segmentPath(-1), code('INVALID_CORE_ID'));
  assert.throws(() => c.segmentPath(1.5), code('INVALID_CORE_ID'));
  assert.throws(() => new PerCoreWalConfig('/d', 0), code('INVALID_ARGUMENT'));
  assert.throws(() => new PerCoreWalConfig('/d', 65537), code('INVALID_ARGUMENT'));
  assert.throws(() => new PerCoreWalConfig('/d', 2.5), code('INVALID_ARGUMENT'));
  assert.throws(() => new PerCoreWalConfig('', 2), code('INVALID_ARGUMENT'));
  assert.throws(() => new PerCoreWalConfig('/d', 2, { segmentPattern: 'wal.log' }), code('INVALID_ARGUMENT'));
  assert.throws(() => new PerCoreWalConfig('/d', 2, { segmentPattern: 'x/{core_id}.log' }), code('INVALID_ARGUMENT'));
  assert.throws(() => new PerCoreWalConfig('/d', 2, { preallocate: -1 }), code('INVALID_ARGUMENT'));
});

test('create: makes the directory and every segment; writer ids are checked', () => {
  const dir = join(tempDir(), 'nested', 'wal');
  const m = PerCoreWalManager.create(new PerCoreWalConfig(dir, 3, { preallocate: 0 }));
  for (let c = 0; c < 3; c++) {
    assert.ok(existsSync(join(dir, `wal-${c}.log`)));
    assert.equal(m.writer(c).coreId(), c);
    assert.equal(m.writerChecked(c).coreId(), c);
    assert.equal(m.segmentPath(c), join(dir, `wal-${c}.log`));
  }
  assert.equal(m.numCores(), 3);
  assert.equal(m.config().baseDir, dir);
  for (const bad of [3, -1, 0.5, NaN, '0' as unknown as number]) {
    assert.throws(() => m.writer(bad), code('INVALID_CORE_ID'));
    assert.throws(() => m.writerChecked(bad), code('INVALID_CORE_ID'));
  }
  assert.deepEqual(m.openReport().map((r) => r.created), [true, true, true]);
  m.close();
  m.close();
  assert.throws(() => m.syncAll(), code('CLOSED'));
});

test('epoch: advanceEpoch moves the global epoch and every writer; setEpochAll refuses to go down', () => {
  const m = PerCoreWalManager.create(new PerCoreWalConfig(tempDir(), 2, { preallocate: 0 }));
  assert.equal(m.epoch(), 0n);
  assert.equal(m.advanceEpoch(), 1n);
  assert.equal(m.advanceEpoch(), 2n);
  assert.deepEqual([m.writer(0).epoch(), m.writer(1).epoch()], [2n, 2n]);
  m.setEpochAll(10);
  assert.equal(m.epoch(), 10n);
  assert.deepEqual([m.writer(0).epoch(), m.writer(1).epoch()], [10n, 10n]);
  assert.throws(() => m.setEpochAll(9n), code('EPOCH_MISMATCH'));
  assert.equal(m.epoch(), 10n);
  // A writer that went ahead on its own pulls the global epoch along.
  m.writer(1).setEpoch(20n);
  assert.throws(() => m.setEpochAll(15n), code('EPOCH_MISMATCH'));
  assert.equal(m.writer(0).epoch(), 10n, 'a refused setEpochAll changed nothing');
  assert.equal(m.advanceEpoch(), 21n);
  assert.equal(m.epochRef().load(), 21n);
  m.close();
});

test('positions, syncAll, truncateAll, resetAll, totalSize, writeEpochBarrierAll', () => {
  const m = PerCoreWalManager.create(new PerCoreWalConfig(tempDir(), 2, { preallocate: 0 }));
  const w0 = m.writer(0), w1 = m.writer(1);
  w0.appendPut(b('a'), b('1'));
  const cut = w0.position();
  w0.appendPut(b('b'), b('2'));
  w1.appendDelete(b('x'));
  assert.deepEqual(m.syncedPositions(), [0, 0]);
  m.syncAll();
  assert.deepEqual(m.syncedPositions(), m.positions());
  assert.equal(m.totalSize(), w0.position() + w1.position());
  assert.throws(() => m.truncateAll([cut + 1, 0]), code('INVALID_POSITION'));
  assert.throws(() => m.truncateAll([cut]), code('INVALID_ARGUMENT'));
  assert.throws(() => m.truncateAll([cut, w1.position() + 1]), code('INVALID_POSITION'));
  assert.equal(m.mergeSegments().length, 3, 'refused truncations cut nothing');
  m.truncateAll([cut, w1.position()]);
  const left = m.mergeSegments();
  assert.equal(left.length, 2);
  assert.ok(left.some((e) => e.coreId === 0 && e.sequence === 0n));
  assert.ok(!left.some((e) => e.coreId === 0 && e.sequence === 1n));
  m.advanceEpoch();
  m.writeEpochBarrierAll();
  const barriers = m.mergeSegments().filter((e) => e.operation.type === 'epochBarrier');
  assert.deepEqual(barriers.map((e) => [e.coreId, e.epoch]).sort(), [[0, 1n], [1, 1n]]);
  m.resetAll();
  assert.deepEqual(m.positions(), [0, 0]);
  assert.equal(m.mergeSegments().length, 0);
  // Sequences keep counting after a reset.
  assert.equal(w0.appendPut(b('c'), b('3')), 0);
  assert.equal(m.mergeSegments()[0]!.sequence, 3n);
  m.close();
});

test('open: missing segment is SEGMENT_NOT_FOUND; sequences, epoch and timestamps resume', () => {
  const dir = tempDir();
  let now = 5_000_000n;
  const clock = () => now;
  const cfg = new PerCoreWalConfig(dir, 2, { preallocate: 0, clock });
  assert.throws(() => PerCoreWalManager.open(cfg), code('SEGMENT_NOT_FOUND'));
  const m = PerCoreWalManager.create(cfg);
  m.writer(0).appendPut(b('a'), b('1'));
  m.advanceEpoch();
  m.advanceEpoch();
  m.writer(0).appendPut(b('b'), b('2'));
  now += 1000n;
  m.writer(1).appendPut(b('c'), b('3'));
  m.close();
  now = 1n; // the wall clock stepped back across the restart
  const m2 = PerCoreWalManager.open(cfg);
  assert.equal(m2.epoch(), 2n);
  assert.deepEqual([m2.writer(0).epoch(), m2.writer(1).epoch()], [2n, 2n]);
  assert.deepEqual([m2.writer(0).sequence(), m2.writer(1).sequence()], [2n, 1n]);
  const survived = m2.mergeSegments();
  m2.writer(0).appendPut(b('d'), b('4'));
  const all = m2.mergeSegments();
  assert.equal(all.length, survived.length + 1);
  assert.deepEqual(all.slice(0, survived.length).map((e) => e.key()), survived.map((e) => e.key()));
  assert.deepEqual(all.at(-1)!.key(), b('d'));
  m2.close();
  const r = PerCoreWalManager.open(cfg, { minEpoch: 7, minSequences: [100, 0] });
  assert.equal(r.epoch(), 7n);
  assert.equal(r.writer(0).sequence(), 100n);
  assert.equal(r.writer(1).sequence(), 1n);
  assert.throws(() => PerCoreWalManager.open(cfg, { minSequences: [1] }), code('INVALID_ARGUMENT'));
  r.close();
  assert.equal(PerCoreWalReader.open(0, cfg.segmentPath(0)).readAll().length, 3);
});

test('create: every new directory and segment is made durable (fsync of each parent directory, through the injected fs)', () => {
  const root = tempDir();
  const synced: string[] = [];
  const fs = { ...realFs, fsyncDir: (p: string) => { synced.push(p); realFs.fsyncDir(p); } };
  const base = join(root, 'a', 'b');
  const m = PerCoreWalManager.create(new PerCoreWalConfig(base, 2, { preallocate: 0, fs }));
  m.close();
  assert.ok(synced.includes(root), 'the new directory a is durable in root');
  assert.ok(synced.includes(join(root, 'a')), 'the new directory b is durable in a');
  assert.equal(synced.filter((p) => p === base).length >= 1, true, 'the segments are durable in b');
});
