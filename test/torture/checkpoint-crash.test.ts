import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runCheckpointCrashSeed } from './checkpoint-crash.js';

test('checkpoints and recovery on a disk that loses power: every recovery is exactly the model, each op once, in order', () => {
  let crashes = 0, steps = 0;
  for (let seed = 1; seed <= 150; seed++) {
    const r = runCheckpointCrashSeed(seed);
    crashes += r.crashes;
    steps += r.iterations;
  }
  assert.ok(crashes >= 500, `${crashes} crashes`);
  assert.ok(steps > 500, `${steps} steps`);
});

test('the same with EIO/ENOSPC injected anywhere (checkpoint files, renames, directory fsyncs, segments): typed failures, then exact recovery', () => {
  let crashes = 0;
  for (let seed = 1; seed <= 100; seed++) crashes += runCheckpointCrashSeed(seed, { faults: true }).crashes;
  assert.ok(crashes >= 300, `${crashes} crashes`);
});
