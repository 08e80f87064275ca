import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CheckpointStore } from '../../src/index.js';
import { SimDisk } from '../../src/testing/index.js';

test('a checkpoint survives a crash even when CheckpointStore.open had to create its directories', () => {
  for (let seed = 1; seed <= 50; seed++) {
    // Directory entries are durable only once their parent is fsynced.
    const disk = new SimDisk({ volatileMkdir: true, seed });
    const store = CheckpointStore.open({ checkpointDir: '/data/app/checkpoints', fs: disk });
    store.put(Buffer.from('k'), Buffer.from('v'));
    store.createCheckpoint(1n);
    const after = disk.crash(seed, { keepDirOps: 0 });
    const again = CheckpointStore.open({ checkpointDir: '/data/app/checkpoints', fs: after });
    assert.equal(again.latestCheckpoint()?.id, 1n, `seed ${seed}: the completed checkpoint vanished with its directory`);
    assert.equal(Buffer.from(again.get('k')!).toString(), 'v');
  }
});
