import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { PerCoreWalReader } from '../../src/index.js';
import { tempDir } from '../helpers/tmp.js';
import { killLane } from './kill.js';

test('SIGKILL during ingest, 25 times: every acknowledged record survives intact, and the log resumes', { timeout: 120_000 }, async () => {
  const dir = tempDir();
  mkdirSync(join(dir, 'a'));
  mkdirSync(join(dir, 'g'));
  // Five lanes at once, 5 kills each, each child resuming what the last one left: a bare
  // writer (recovered by scan + openAt), a 3-core manager (PerCoreWalManager.open), a
  // 2-core manager with checkpoints (PerCoreRecoveryManager: checkpoint + WAL after it),
  // concurrent GroupCommitLog puts over io_uring (ThreadPoolStorageIo where io_uring is
  // not available), acknowledged as their promises resolve, and a 2-worker CoreWalPool
  // with checkpoints (recovered by recoverPerCore).
  const lanes = await Promise.all([
    killLane({ mode: 'writer', segment: join(dir, 'a', 'wal-0.log') }, 11, 5),
    killLane({ mode: 'manager', dir: join(dir, 'm'), cores: 3 }, 12, 5),
    killLane({ mode: 'checkpoint', dir: join(dir, 'c'), cores: 2 }, 13, 5),
    killLane({ mode: 'group', segment: join(dir, 'g', 'wal-0.log'), backend: 'uring' }, 14, 5),
    killLane({ mode: 'pool', dir: join(dir, 'p'), workers: 2 }, 15, 5),
  ]);
  assert.equal(lanes.reduce((a, b) => a + b, 0), 25);
  assert.ok(PerCoreWalReader.open(0, join(dir, 'a', 'wal-0.log')).readAll().length > 0);
  assert.ok(PerCoreWalReader.open(2, join(dir, 'm', 'wal-2.log')).readAll().length > 0);
});
