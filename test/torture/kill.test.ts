import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { PerCoreWalReader } from '../../src/index.js';
import { tempDir } from '../helpers/tmp.js';
import { killLane } from './kill.js';

test('SIGKILL during ingest, 24 times: every acknowledged record survives intact, and the log resumes', async () => {
  const dir = tempDir();
  mkdirSync(join(dir, 'a'));
  // Three lanes at once, 8 kills each, each child resuming what the last one left: a bare
  // writer (recovered by scan + openAt), a 3-core manager (PerCoreWalManager.open), and a
  // 2-core manager with checkpoints (PerCoreRecoveryManager: checkpoint + WAL after it).
  const lanes = await Promise.all([
    killLane({ mode: 'writer', segment: join(dir, 'a', 'wal-0.log') }, 11, 8),
    killLane({ mode: 'manager', dir: join(dir, 'm'), cores: 3 }, 12, 8),
    killLane({ mode: 'checkpoint', dir: join(dir, 'c'), cores: 2 }, 13, 8),
  ]);
  assert.equal(lanes.reduce((a, b) => a + b, 0), 24);
  assert.ok(PerCoreWalReader.open(0, join(dir, 'a', 'wal-0.log')).readAll().length > 0);
  assert.ok(PerCoreWalReader.open(2, join(dir, 'm', 'wal-2.log')).readAll().length > 0);
});
