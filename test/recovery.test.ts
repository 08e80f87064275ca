import assert from 'node:assert/strict';
import { appendFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  CheckpointStore, PerCoreCheckpointCoordinator, PerCoreRecoveryManager, PerCoreWalConfig, PerCoreWalError, PerCoreWalManager,
  PerCoreWalReader, recoverPerCore, type RecoveryProgress,
} from '../src/index.js';
import { b, tempDir } from './helpers/tmp.js';

const code = (c: string) => (e: unknown) => e instanceof PerCoreWalError && e.code === c;

function dirs() {
  const dir = tempDir();
  return { walDir: join(dir, 'wal'), cpDir: join(dir, 'checkpoints') };
}

test('recovering a WAL with only an empty checkpoint replays nothing', () => {
  const { walDir, cpDir } = dirs();
  const config = new PerCoreWalConfig(walDir, 2);
  const coord = PerCoreCheckpointCoordinator.create(PerCoreWalManager.create(config), CheckpointStore.open({ checkpointDir: cpDir }));
  coord.createCheckpoint(1);
  const r = new PerCoreRecoveryManager(config, { checkpointDir: cpDir }).recover();
  assert.equal(r.entriesReplayed, 0);
  assert.equal(r.stateChanges.length, 0);
  assert.equal(r.checkpointId, 1n);
  assert.equal(r.state.size, 0);
  assert.equal(r.warnings.length, 0);
});

test('checkpoint + WAL after it: the state holds both, the changes list holds only the WAL part', () => {
  const { walDir, cpDir } = dirs();
  let t = 0n;
  const config = new PerCoreWalConfig(walDir, 2, { clock: () => ++t, preallocate: 0 });
  const wal = PerCoreWalManager.create(config);
  const coord = PerCoreCheckpointCoordinator.create(wal, CheckpointStore.open({ checkpointDir: cpDir }));
  wal.setEpochAll(1);
  wal.writer(0).appendPut(b('key1'), b('value1'));
  wal.writer(1).appendPut(b('key2'), b('value2'));
  wal.writer(1).appendCommit({ src: 10 }, 99);
  coord.createCheckpoint(1);
  wal.setEpochAll(2);
  wal.writer(0).appendPut(b('key3'), b('value3'));
  wal.writer(1).appendDelete(b('key1'));
  wal.writer(1).appendCommit({ src: 20 });
  wal.syncAll();
  wal.close();
  const r = new PerCoreRecoveryManager(config, { checkpointDir: cpDir }).recover();
  assert.equal(r.checkpointId, 1n);
  assert.deepEqual([...r.state.entries()].map(([k, v]) => `${Buffer.from(k)}=${Buffer.from(v)}`).sort(), ['key2=value2', 'key3=value3']);
  assert.ok(r.state.has('key3'));
  assert.equal(r.state.get(b('key1')), undefined);
  assert.deepEqual(r.stateChanges.map((c) => [Buffer.from(c.key).toString(), c.value === null ? null : Buffer.from(c.value).toString(), c.coreId, c.epoch]),
    [['key3', 'value3', 0, 2n], ['key1', null, 1, 2n]]);
  assert.equal(r.entriesReplayed, 3);
  assert.deepEqual(r.sourceOffsets, new Map([['src', 20n]]));
  assert.equal(r.watermark, 99n, 'a commit without a watermark keeps the previous one');
  assert.equal(r.finalEpoch, 2n);
  assert.deepEqual(r.walPositions, [statSync(config.segmentPath(0)).size, statSync(config.segmentPath(1)).size]);
  assert.equal(r.checkpoint!.epoch, 2n, 'checkpoint 1 was taken at epoch 2 (advanced from 1)');
});

test('recoverWalOnly merges every segment in epoch order', () => {
  const { walDir, cpDir } = dirs();
  let t = 0n;
  const config = new PerCoreWalConfig(walDir, 2, { clock: () => ++t });
  const wal = PerCoreWalManager.create(config);
  wal.setEpochAll(1);
  wal.writer(0).appendPut(b('key1'), b('value1'));
  wal.writer(1).appendPut(b('key2'), b('value2'));
  wal.setEpochAll(2);
  wal.writer(0).appendPut(b('key3'), b('value3'));
  wal.syncAll();
  const entries = new PerCoreRecoveryManager(config, { checkpointDir: cpDir }).recoverWalOnly();
  assert.deepEqual(entries.map((e) => e.epoch), [1n, 1n, 2n]);
  assert.deepEqual(entries.map((e) => Buffer.from(e.key()!).toString()), ['key1', 'key2', 'key3']);
});

test('repairAllSegments cuts a torn tail; segmentStats reports sizes, counts, epochs and tails', () => {
  const { walDir, cpDir } = dirs();
  const config = new PerCoreWalConfig(walDir, 2, { preallocate: 0 });
  const wal = PerCoreWalManager.create(config);
  wal.setEpochAll(1);
  wal.writer(0).appendPut(b('key1'), b('value1'));
  wal.writer(0).appendPut(b('key2'), b('value2'));
  wal.setEpochAll(2);
  wal.writer(0).appendPut(b('key3'), b('value3'));
  wal.writer(1).appendPut(b('key4'), b('value4'));
  wal.syncAll();
  wal.close();
  appendFileSync(config.segmentPath(0), Buffer.from([0xff, 0xff, 0xff]));
  const rm = new PerCoreRecoveryManager(config, { checkpointDir: cpDir });
  const stats = rm.segmentStats();
  assert.deepEqual(stats.map((s) => [s.entryCount, s.minEpoch, s.maxEpoch, s.tail]), [[3, 1n, 2n, 'torn'], [1, 2n, 2n, 'clean']]);
  assert.equal(stats[0]!.fileSize, stats[0]!.validEnd + 3);
  const ends = rm.repairAllSegments();
  assert.equal(statSync(config.segmentPath(0)).size, ends[0]);
  assert.equal(ends[0], stats[0]!.validEnd);
  assert.equal(rm.segmentStats()[0]!.tail, 'clean');
  assert.equal(rm.recover().state.size, 4);
});

test('a missing segment reads as empty; a missing checkpoint directory means no checkpoint', () => {
  const { walDir, cpDir } = dirs();
  const config = new PerCoreWalConfig(walDir, 3);
  const wal = PerCoreWalManager.create(config);
  wal.writer(1).appendPut(b('x'), b('y'));
  wal.syncAll();
  wal.close();
  writeFileSync(config.segmentPath(2), '');
  const r = new PerCoreRecoveryManager(new PerCoreWalConfig(walDir, 4), { checkpointDir: cpDir }).recover();
  assert.equal(r.checkpointId, null);
  assert.equal(r.state.get('x')!.toString(), 'y');
  assert.deepEqual(r.walPositions.slice(2), [0, 0]);
});

test('recoverFromPositions replays from given positions; bad positions fail typed', () => {
  const { walDir, cpDir } = dirs();
  const config = new PerCoreWalConfig(walDir, 2);
  const wal = PerCoreWalManager.create(config);
  const coord = PerCoreCheckpointCoordinator.create(wal, CheckpointStore.open({ checkpointDir: cpDir }));
  wal.writer(0).appendPut(b('a'), b('1'));
  const m = coord.createCheckpointNoTruncate(1);
  wal.writer(0).appendPut(b('b'), b('2'));
  wal.writer(1).appendPut(b('c'), b('3'));
  wal.syncAll();
  const rm = new PerCoreRecoveryManager(config, { checkpointDir: cpDir });
  const r = rm.recoverFromPositions(m.walPositions);
  assert.equal(r.entriesReplayed, 2);
  assert.deepEqual(r.segments.map((s) => s.start), m.walPositions);
  assert.equal(r.state.size, 3);
  const auto = rm.recover();
  assert.deepEqual(auto.segments.map((s) => s.start), m.walPositions, 'the segments still hold the checkpoint barrier: replay starts after it');
  assert.equal(auto.state.size, 3);
  assert.equal(auto.entriesReplayed, 2);
  assert.throws(() => rm.recoverFromPositions([0]), code('INVALID_ARGUMENT'));
  assert.throws(() => rm.recoverFromPositions([0, -1]), code('INVALID_POSITION'));
  assert.throws(() => rm.recoverFromPositions([0, 1e9]), code('INVALID_POSITION'));
  assert.throws(() => new PerCoreRecoveryManager(config, { checkpointDir: cpDir, mode: 'bogus' as never }), code('INVALID_ARGUMENT'));
  assert.throws(() => new PerCoreRecoveryManager(config, { checkpointDir: '' }), code('INVALID_ARGUMENT'));
});

test('progress is reported, never goes back, and ends at the total', () => {
  const { walDir, cpDir } = dirs();
  const config = new PerCoreWalConfig(walDir, 2);
  const wal = PerCoreWalManager.create(config);
  for (let i = 0; i < 20000; i++) wal.writer(i & 1).appendPut(b(`k${i % 100}`), Buffer.alloc(50, i));
  wal.syncAll();
  wal.close();
  for (const mode of ['tolerateCorruptedTail', 'pointInTime'] as const) {
    const seen: RecoveryProgress[] = [];
    const r = new PerCoreRecoveryManager(config, { checkpointDir: cpDir, mode, onProgress: (p) => seen.push({ ...p }) }).recover();
    assert.equal(r.state.size, 100);
    const walBytes = r.segments.reduce((a, s) => a + s.fileLen, 0);
    const last = seen[seen.length - 1]!;
    assert.ok(seen.length >= 4, `${mode}: ${seen.length} reports`);
    assert.ok(seen.slice(1).every((p) => p.bytesTotal === last.bytesTotal), JSON.stringify(seen));
    assert.equal(last.bytesDone, last.bytesTotal);
    assert.equal(last.bytesTotal, mode === 'pointInTime' ? 2 * walBytes : walBytes, 'pointInTime reads the WAL twice');
    for (let i = 1; i < seen.length; i++) assert.ok(seen[i]!.bytesDone >= seen[i - 1]!.bytesDone || seen[i]!.phase !== seen[i - 1]!.phase, JSON.stringify(seen.slice(i - 1, i + 1)));
  }
});

test('resuming after recovery: new entries order after the recovered ones and sequences keep increasing', () => {
  const { walDir, cpDir } = dirs();
  const config = new PerCoreWalConfig(walDir, 2);
  const wal = PerCoreWalManager.create(config);
  const coord = PerCoreCheckpointCoordinator.create(wal, CheckpointStore.open({ checkpointDir: cpDir }));
  for (let i = 0; i < 5; i++) wal.writer(1).appendPut(b(`k${i}`), b('v'));
  coord.createCheckpoint(1);
  wal.close();
  const r = recoverPerCore(walDir, cpDir, 2);
  assert.deepEqual(r.nextSequences, [1n, 6n]);
  const again = PerCoreWalManager.open(config, { minEpoch: r.finalEpoch, minSequences: r.nextSequences });
  again.writer(1).appendPut(b('k0'), b('new'));
  again.syncAll();
  const [e] = PerCoreWalReader.open(1, config.segmentPath(1)).readAll();
  assert.equal(e!.sequence, 6n);
  assert.ok(e!.epoch >= r.checkpoint!.epoch);
  again.close();
  assert.equal(recoverPerCore(walDir, cpDir, 2).state.get('k0')!.toString(), 'new');
});
