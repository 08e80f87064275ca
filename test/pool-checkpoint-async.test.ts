import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { CheckpointStore, CoreWalPool, recoverPerCore } from '../src/index.js';
import { tempDir } from './helpers/tmp.js';

// A pool checkpoint must not stall commits: the workers go on consuming after their
// barriers, and the merge on the main thread gives the event loop turns.
test('a put made while a pool checkpoint merges a large WAL is acknowledged before the checkpoint is written; the store switches at once', { timeout: 60_000 }, async () => {
  const root = tempDir();
  const walDir = join(root, 'wal');
  const store = CheckpointStore.open({ checkpointDir: join(root, 'cp') });
  const pool = await CoreWalPool.start({ dir: walDir, workers: 2, checkpointStore: store });
  const value = Buffer.alloc(100, 0x61);
  const N = 120_000;
  let next = 0;
  await Promise.all(Array.from({ length: 64 }, async () => {
    while (next < N) { const i = next++; await pool.put(`k${i}`, value); }
  }));
  const order: string[] = [];
  let late: Promise<unknown> | null = null;
  pool.setCheckpointHook((step) => {
    order.push(step);
    // Every barrier is synced and the merge of N entries is about to begin.
    if (step === 'barriers') late = pool.put('late', 'v').then(() => order.push('late put acknowledged'));
  });
  // Readers between the merge's slices see the store before or after, never a part.
  const sizes = new Set<number>();
  let watching = true;
  const watch = (): void => { sizes.add(store.size); if (watching) setImmediate(watch); };
  watch();
  const started = performance.now();
  const meta = await pool.createCheckpoint(1n);
  const took = performance.now() - started;
  order.push('checkpoint resolved');
  watching = false;
  await late;
  assert.deepEqual(order, ['barriers', 'late put acknowledged', 'durable', 'compacted', 'checkpoint resolved'], `took ${took.toFixed(0)} ms`);
  assert.ok(meta.entriesMerged >= N, `${meta.entriesMerged} entries merged`);
  assert.ok(sizes.has(0) && sizes.has(N), `the watcher ran during the checkpoint and after it (${[...sizes].join(', ')})`);
  assert.deepEqual([...sizes].sort((a, b) => a - b), [0, N], 'no reader saw a half-applied store');
  assert.equal(store.get('late'), undefined, 'the late put came after the barriers: it is not in the checkpoint');
  // The segments were compacted down to what came after the barriers: the late put.
  const sizesAfter = [0, 1].map((c) => statSync(pool.segmentPath(c)).size);
  assert.ok(sizesAfter[0]! + sizesAfter[1]! < 1000, `compacted segments (${sizesAfter.join(', ')} bytes)`);
  await pool.close();
  const rec = recoverPerCore(walDir, join(root, 'cp'), 2);
  assert.equal(rec.state.size, N + 1);
  assert.equal(Buffer.from(rec.state.get('late')!).toString(), 'v');
});
