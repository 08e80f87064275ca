import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { CheckpointStore, CoreWalPool, recoverPerCore } from '../src/index.js';
import { tempDir } from './helpers/tmp.js';

// A worker's compaction after a checkpoint copies what came after its barrier. It used to
// do so in one synchronous step, the core's appends waiting for all of it; now they wait
// only for the short finish. Here ~24 MB follow the barrier, and puts made one after the
// other while that copy runs must be acknowledged before the compaction is done.
test('puts made while a worker compacts are acknowledged during the compaction, not after it', { timeout: 60_000 }, async () => {
  const root = tempDir();
  const walDir = join(root, 'wal');
  const store = CheckpointStore.open({ checkpointDir: join(root, 'cp') });
  const pool = await CoreWalPool.start({ dir: walDir, workers: 1, checkpointStore: store });
  await pool.put('before', 'v');
  const big = Buffer.alloc(64 << 10, 0x62);
  const BIG = 384;
  let acked = 0;
  let ackedAtCompacted = -1;
  let running = true;
  let loop: Promise<void> | null = null;
  pool.setCheckpointHook(async (step) => {
    if (step === 'durable') {
      // After the barrier, before the compaction: what it will have to copy.
      await Promise.all(Array.from({ length: BIG }, (_, i) => pool.put(`big${i}`, big)));
      loop = (async () => {
        for (let i = 0; running; i++) { await pool.put(`s${i}`, 'v'); acked++; }
      })();
    }
    if (step === 'compacted') ackedAtCompacted = acked;
  });
  try {
    await pool.createCheckpoint(1n);
  } finally {
    running = false;
    await loop;
    // Closed whatever happened: live workers would keep the test process alive.
    await pool.close();
  }
  if (process.env.COMPACT_DEBUG) console.log({ ackedAtCompacted, acked });
  // 8–14 here, on an idle or a loaded machine; 0–1 with the synchronous compactFrom.
  assert.ok(ackedAtCompacted >= 3, `${ackedAtCompacted} puts, one after the other, acknowledged during the compaction`);
  const rec = recoverPerCore(walDir, join(root, 'cp'), 1);
  assert.equal(rec.state.size, 1 + BIG + acked);
});
