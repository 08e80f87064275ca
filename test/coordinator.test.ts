import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  CheckpointStore, PerCoreCheckpointCoordinator, PerCoreRecoveryManager, PerCoreWalConfig, PerCoreWalError, PerCoreWalManager,
  PerCoreWalReader, recoverPerCore, type IoFd, type StorageIo,
} from '../src/index.js';
import { b, tempDir } from './helpers/tmp.js';

const code = (c: string) => (e: unknown) => e instanceof PerCoreWalError && e.code === c;

function setup(numCores = 2, storeOpts: { maxRetained?: number; fullEvery?: number } = { maxRetained: 3 }) {
  const dir = tempDir();
  const walDir = join(dir, 'wal');
  const cpDir = join(dir, 'checkpoints');
  const config = new PerCoreWalConfig(walDir, numCores, { preallocate: 0 });
  const wal = PerCoreWalManager.create(config);
  const store = CheckpointStore.open({ checkpointDir: cpDir, ...storeOpts });
  const coord = PerCoreCheckpointCoordinator.create(wal, store);
  return { dir, walDir, cpDir, config, wal, store, coord };
}

test('an empty checkpoint merges the two epoch barriers', () => {
  const { coord, wal } = setup();
  assert.equal(coord.epoch(), 0n);
  const m = coord.createCheckpoint(1);
  assert.equal(m.checkpoint.id, 1n);
  assert.equal(m.entriesMerged, 2);
  assert.equal(m.walPositions.length, 2);
  assert.ok(m.walPositions.every((p) => p > 0), 'positions are taken after the barriers');
  assert.equal(m.checkpoint.epoch, 1n);
  assert.equal(coord.epoch(), 1n);
  assert.equal(wal.totalSize(), 0);
});

test('createCheckpoint: entries of every core in the state, segments reset, sequences continue', () => {
  const { coord, wal, store } = setup();
  wal.setEpochAll(1);
  wal.writer(0).appendPut(b('key0'), b('value0'));
  wal.writer(1).appendPut(b('key1'), b('value1'));
  wal.writer(1).appendDelete(b('missing'));
  const m = coord.createCheckpoint(1);
  assert.equal(m.entriesMerged, 5, '3 state entries and 2 barriers');
  assert.equal(wal.totalSize(), 0);
  assert.equal(store.get('key0')!.toString(), 'value0');
  assert.equal(store.get('key1')!.toString(), 'value1');
  assert.deepEqual(m.checkpoint.nextSequences, [2n, 3n], 'after put+barrier on core 0, put+delete+barrier on core 1');
  assert.equal(m.checkpoint.keyCount, 2);
  wal.writer(0).appendPut(b('key2'), b('v'));
  wal.syncAll();
  const [e] = PerCoreWalReader.open(0, wal.segmentPath(0)).readAll();
  assert.equal(e!.sequence, 2n, 'the reset segment continues the sequence');
  assert.equal(e!.epoch, m.checkpoint.epoch, 'and writes at the checkpoint epoch, which recovery replays');
});

test('global order across cores decides conflicting writes; commits set offsets and watermark', () => {
  let t = 1000n;
  const dir = tempDir();
  const config = new PerCoreWalConfig(join(dir, 'wal'), 3, { preallocate: 0, clock: () => ++t });
  const wal = PerCoreWalManager.create(config);
  const store = CheckpointStore.open({ checkpointDir: join(dir, 'cp') });
  const coord = PerCoreCheckpointCoordinator.create(wal, store);
  wal.writer(2).appendPut(b('k'), b('first'));
  wal.writer(0).appendPut(b('k'), b('second'));
  wal.writer(1).appendDelete(b('k'));
  wal.writer(2).appendPut(b('k'), b('last'));
  wal.writer(0).appendPut(b('gone'), b('x'));
  wal.writer(2).appendDelete(b('gone'));
  wal.writer(0).appendCommit({ topic1: 100, topic2: 200 }, 5000);
  wal.writer(1).appendCommit(new Map([['topic1', 150n]]));
  coord.createCheckpoint(1);
  assert.equal(store.get('k')!.toString(), 'last');
  assert.equal(store.has('gone'), false);
  assert.deepEqual(coord.sourceOffsets(), new Map([['topic1', 150n], ['topic2', 200n]]));
  assert.equal(coord.watermark(), 5000n);
  const r = CheckpointStore.open({ checkpointDir: join(dir, 'cp') });
  assert.equal(r.get('k')!.toString(), 'last');
  assert.equal(r.watermark(), 5000n);
});

test('createCheckpointNoTruncate keeps the WAL, and the next checkpoint does not apply those entries again', () => {
  const { coord, wal, store, config, cpDir } = setup();
  wal.writer(0).appendPut(b('a'), b('1'));
  const m1 = coord.createCheckpointNoTruncate(1);
  assert.equal(m1.entriesMerged, 3);
  assert.ok(wal.totalSize() > 0);
  wal.writer(1).appendPut(b('b'), b('2'));
  const m2 = coord.createCheckpoint(2);
  assert.equal(m2.entriesMerged, 3, 'the new put and the 2 new barriers: not what checkpoint 1 holds');
  assert.equal(store.size, 2);
  const r = new PerCoreRecoveryManager(config, { checkpointDir: cpDir }).recover();
  assert.equal(r.checkpointId, 2n);
  assert.equal(r.entriesReplayed, 0);
});

test('several checkpoints are listed; cleanupOldCheckpoints keeps exactly the newest', () => {
  const { coord, wal } = setup(2, { maxRetained: 3 });
  wal.writer(0).appendPut(b('key1'), b('value1'));
  coord.createCheckpoint(1);
  wal.writer(0).appendPut(b('key2'), b('value2'));
  coord.createCheckpoint(2);
  assert.equal(coord.listCheckpoints().length, 2);
  for (let i = 3; i <= 5; i++) coord.createCheckpoint(i);
  coord.cleanupOldCheckpoints(2);
  const left = coord.listCheckpoints();
  assert.deepEqual(left.map((m) => m.id), [4n, 5n]);
  const r = coord.store().loadCheckpoint(5);
  assert.equal(r.state.get('key1')!.toString(), 'value1');
  assert.equal(r.state.get('key2')!.toString(), 'value2');
});

test('flush syncs every segment without checkpointing', () => {
  const { coord, wal } = setup();
  wal.writer(0).appendPut(b('key0'), b('value0'));
  coord.flush();
  assert.deepEqual(wal.syncedPositions(), wal.positions());
  assert.equal(coord.listCheckpoints().length, 0);
});

test('bad arguments and poisoned writers fail before any barrier is written', () => {
  const { coord, wal } = setup();
  coord.createCheckpoint(5);
  wal.writer(0).appendPut(b('k'), b('v'));
  wal.syncAll();
  const before = wal.positions();
  const epoch = coord.epoch();
  assert.throws(() => coord.createCheckpoint(5), code('INVALID_ARGUMENT'));
  assert.throws(() => coord.createCheckpoint(-2), code('INVALID_ARGUMENT'));
  assert.throws(() => coord.createCheckpointNoTruncate(1.5), code('INVALID_ARGUMENT'));
  assert.deepEqual(wal.positions(), before);
  assert.equal(coord.epoch(), epoch);
  assert.throws(() => PerCoreCheckpointCoordinator.create({} as PerCoreWalManager, coord.store()), code('INVALID_ARGUMENT'));
  // A write submitted through StorageIo and not completed: refused before any barrier.
  let token = 0;
  const sio = { submitWrite: () => ++token, flush: () => 0 } as unknown as StorageIo;
  wal.writer(1).appendPutViaStorageIo(b('k'), b('v'), sio, 99 as IoFd);
  const pos = wal.positions();
  assert.throws(() => coord.createCheckpoint(6), code('SYNC_IN_FLIGHT'));
  assert.deepEqual(wal.positions(), pos);
  assert.equal(coord.epoch(), epoch);
});

test('create() moves a WAL reopened without options up to the checkpoint; entries written before that still recover', () => {
  const { coord, wal, config, cpDir, walDir } = setup();
  for (let i = 0; i < 3; i++) wal.writer(0).appendPut(b(`k${i}`), b('v'));
  coord.createCheckpoint(1);
  wal.close();
  // Reopened plainly: the reset segments carry no epoch or sequence any more.
  const plain = PerCoreWalManager.open(config);
  assert.equal(plain.epoch(), 0n);
  plain.writer(1).appendPut(b('early'), b('e'));
  const c2 = PerCoreCheckpointCoordinator.create(plain, CheckpointStore.open({ checkpointDir: cpDir }));
  assert.equal(plain.epoch(), 1n);
  assert.equal(plain.writer(0).sequence(), 4n);
  plain.writer(0).appendPut(b('after'), b('x'));
  plain.syncAll();
  const r = recoverPerCore(walDir, cpDir, 2);
  assert.equal(r.state.get('after')!.toString(), 'x');
  assert.equal(r.state.get('early')!.toString(), 'e', 'written at epoch 0, below the checkpoint: a reset segment replays whole');
  assert.equal(r.state.size, 5);
  const m2 = c2.createCheckpoint(2);
  assert.equal(m2.entriesMerged, 4);
  plain.close();
  const again = PerCoreWalManager.open(config);
  again.writer(1).appendPut(b('late'), b('y'));
  again.syncAll();
  again.close();
  const r2 = recoverPerCore(walDir, cpDir, 2);
  assert.equal(r2.checkpointId, 2n);
  assert.equal(r2.state.size, 6);
  assert.equal(r2.entriesReplayed, 1);
});
