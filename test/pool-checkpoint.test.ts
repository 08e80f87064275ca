import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { CheckpointStore, CoreWalPool, PerCoreWalError, recoverPerCore } from '../src/index.js';
import { readCore } from './helpers/read-core.js';
import { tempDir } from './helpers/tmp.js';

test('checkpoints while producers run: every acknowledged change is in checkpoint + WAL, segments reset, sequences go on', async () => {
  const root = tempDir();
  const walDir = join(root, 'wal');
  const cpDir = join(root, 'cp');
  const store = CheckpointStore.open({ checkpointDir: cpDir });
  const pool = await CoreWalPool.start({ dir: walDir, workers: 2, preallocate: 0, checkpointStore: store });
  const expected = new Map<string, string | null>();
  let stop = false;
  // Each lane owns its keys, so a key's changes are acknowledged in the order they were made.
  const lanes = Array.from({ length: 16 }, async (_, me) => {
    for (let j = 0; !stop; j++) {
      const key = `l${me}-${j % 40}`;
      if (j % 7 === 3) {
        await pool.delete(key);
        expected.set(key, null);
      } else {
        const v = `v${me}-${j}`;
        await pool.put(key, v);
        expected.set(key, v);
      }
    }
  });
  const metas = [];
  for (let id = 1; id <= 3; id++) {
    await new Promise((r) => setTimeout(r, 60));
    metas.push(await pool.createCheckpoint(BigInt(id)));
  }
  await assert.rejects(pool.createCheckpoint(2n), (e: unknown) => e instanceof PerCoreWalError && e.code === 'INVALID_ARGUMENT');
  stop = true;
  await Promise.all(lanes);
  assert.ok(expected.size > 100, `the producers wrote (${expected.size} keys)`);
  for (const m of metas) assert.ok(m.entriesMerged > 0);
  // Checkpoint epochs increase, and the pool's epoch followed.
  assert.ok(metas[0]!.checkpoint.epoch < metas[1]!.checkpoint.epoch && metas[1]!.checkpoint.epoch < metas[2]!.checkpoint.epoch);
  assert.equal(pool.epoch(), metas[2]!.checkpoint.epoch);
  await pool.close();

  // After the last checkpoint each segment holds only entries from its epoch on, and
  // sequences continue from the checkpoint's.
  const last = metas[2]!.checkpoint;
  for (let c = 0; c < 2; c++) {
    const entries = readCore(pool.segmentPath(c), c);
    for (const e of entries) assert.ok(e.epoch >= last.epoch);
    if (entries.length > 0) assert.equal(entries[0]!.sequence, last.nextSequences[c]);
  }
  const rec = recoverPerCore(walDir, cpDir, 2);
  assert.equal(rec.checkpointId, 3n);
  for (const [k, v] of expected) {
    const got = rec.state.get(k);
    if (v === null) assert.equal(got, undefined, `${k} was deleted`);
    else assert.equal(Buffer.from(got!).toString(), v, `${k}`);
  }
  assert.equal(rec.state.size, [...expected.values()].filter((v) => v !== null).length);

  // A restart resumes past the checkpoint: epoch and sequences keep increasing.
  const again = await CoreWalPool.start({ dir: walDir, workers: 2, preallocate: 0, checkpointStore: CheckpointStore.open({ checkpointDir: cpDir }) });
  assert.ok(again.epoch() >= last.epoch);
  await again.put('after', 'restart', { core: 0 });
  await again.close();
  const seg0 = readCore(again.segmentPath(0), 0);
  assert.ok(seg0.at(-1)!.sequence >= last.nextSequences[0]!);
  const rec2 = recoverPerCore(walDir, cpDir, 2);
  assert.equal(Buffer.from(rec2.state.get('after')!).toString(), 'restart');
});

test('createCheckpointNoTruncate keeps the segments; recovery does not apply their entries twice', async () => {
  const root = tempDir();
  const walDir = join(root, 'wal');
  const cpDir = join(root, 'cp');
  const store = CheckpointStore.open({ checkpointDir: cpDir });
  const pool = await CoreWalPool.start({ dir: walDir, workers: 2, preallocate: 0, checkpointStore: store });
  await pool.put('a', '1');
  await pool.put('b', '1');
  const m = await pool.createCheckpointNoTruncate(1n);
  assert.equal(m.entriesMerged, 4, 'two puts and two barriers');
  await pool.delete('a');
  await pool.commit({ src: 10n }, 99n);
  await pool.close();
  assert.ok(readCore(pool.segmentPath(pool.coreOf('b')), pool.coreOf('b')).some((e) => e.isPut()), 'segment kept');
  const rec = recoverPerCore(walDir, cpDir, 2);
  assert.equal(rec.checkpointId, 1n);
  assert.equal(rec.state.get('a'), undefined);
  assert.equal(Buffer.from(rec.state.get('b')!).toString(), '1');
  assert.equal(rec.sourceOffsets.get('src'), 10n);
  assert.equal(rec.watermark, 99n);
  assert.equal(rec.entriesReplayed >= 2, true);
});

test('checkpoints are refused without a store, and while a core has failed', async () => {
  const root = tempDir();
  const p1 = await CoreWalPool.start({ dir: join(root, 'a'), workers: 1, preallocate: 0 });
  await assert.rejects(p1.createCheckpoint(1n), (e: unknown) => e instanceof PerCoreWalError && e.code === 'INVALID_ARGUMENT');
  await p1.close();
  const store = CheckpointStore.open({ checkpointDir: join(root, 'cp') });
  const p2 = await CoreWalPool.start({ dir: join(root, 'b'), workers: 2, preallocate: 0, checkpointStore: store });
  await p2.put('x', 'y', { core: 1 });
  await p2.injectFault(1, 'exit');
  await assert.rejects(p2.createCheckpoint(1n), (e: unknown) => e instanceof PerCoreWalError && e.code === 'WORKER_FAILED' && e.coreId === 1);
  assert.equal(store.latestCheckpoint(), null);
  // Core 0 was never paused: it still takes appends.
  assert.equal(await p2.put('z', 'w', { core: 0 }), 1);
  await p2.close();
});

test('the same changes written by the pool or by a single-thread PerCoreWalManager recover to the same state', async () => {
  const { PerCoreCheckpointCoordinator, PerCoreWalConfig, PerCoreWalManager } = await import('../src/index.js');
  const root = tempDir();
  type Op = { core: number; key: string; value: string | null };
  const ops: Op[] = Array.from({ length: 400 }, (_, i) => ({ core: i % 3, key: `k${(i * 7) % 90}`, value: i % 5 === 0 ? null : `v${i}` }));
  const half = 250;
  // Single thread: manager + coordinator.
  const mcfg = new PerCoreWalConfig(join(root, 'm-wal'), 3);
  const wal = PerCoreWalManager.create(mcfg);
  const coordinator = PerCoreCheckpointCoordinator.create(wal, CheckpointStore.open({ checkpointDir: join(root, 'm-cp') }));
  ops.forEach((op, i) => {
    const w = wal.writer(op.core);
    if (op.value === null) w.appendDelete(Buffer.from(op.key)); else w.appendPut(Buffer.from(op.key), Buffer.from(op.value));
    if (i === half) coordinator.createCheckpoint(1n);
  });
  wal.writer(2).appendCommit({ s: 5n }, 7n);
  wal.syncAll();
  wal.close();
  // Thread per core: the pool, with the same cores and the same checkpoint.
  const pool = await CoreWalPool.start({ dir: join(root, 'p-wal'), workers: 3, checkpointStore: CheckpointStore.open({ checkpointDir: join(root, 'p-cp') }) });
  for (let i = 0; i < ops.length; i++) {
    const op = ops[i]!;
    // One at a time: the cores then see the changes in the manager's order.
    if (op.value === null) await pool.delete(op.key, { core: op.core }); else await pool.put(op.key, op.value, { core: op.core });
    if (i === half) await pool.createCheckpoint(1n);
  }
  await pool.commit({ s: 5n }, 7n, { core: 2 });
  await pool.close();
  const a = recoverPerCore(join(root, 'm-wal'), join(root, 'm-cp'), 3);
  const b = recoverPerCore(join(root, 'p-wal'), join(root, 'p-cp'), 3);
  const dump = (s: typeof a) => new Map([...s.state.entries()].map(([k, v]) => [Buffer.from(k).toString(), Buffer.from(v).toString()]));
  assert.ok(dump(a).size > 10);
  assert.deepEqual(dump(b), dump(a));
  assert.equal(b.checkpointId, a.checkpointId);
  assert.deepEqual(b.sourceOffsets, a.sourceOffsets);
  assert.equal(b.watermark, a.watermark);
  assert.equal(b.entriesReplayed, a.entriesReplayed);
});
