import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { PerCoreWalReader } from '../../src/index.js';
import { tempDir } from '../helpers/tmp.js';
import { killLane } from './kill.js';

test('SIGKILL during ingest, 24 times: every acknowledged record survives intact, and the log resumes', { timeout: 120_000 }, async () => {
  const dir = tempDir();
  mkdirSync(join(dir, 'a'));
  mkdirSync(join(dir, 'g'));
  // Four lanes at once, 6 kills each, each child resuming what the last one left: a bare
  // writer (recovered by scan + openAt), a 3-core manager (PerCoreWalManager.open), a
  // 2-core manager with checkpoints (PerCoreRecoveryManager: checkpoint + WAL after it),
  // and concurrent GroupCommitLog puts over io_uring (ThreadPoolStorageIo where io_uring
  // is not available), acknowledged as their promises resolve.
  const lanes = await Promise.all([
    killLane({ mode: 'writer', segment: join(dir, 'a', 'wal-0.log') }, 11, 6),
    killLane({ mode: 'manager', dir: join(dir, 'm'), cores: 3 }, 12, 6),
    killLane({ mode: 'checkpoint', dir: join(dir, 'c'), cores: 2 }, 13, 6),
    killLane({ mode: 'group', segment: join(dir, 'g', 'wal-0.log'), backend: 'uring' }, 14, 6),
  ]);
  assert.equal(lanes.reduce((a, b) => a + b, 0), 24);
  assert.ok(PerCoreWalReader.open(0, join(dir, 'a', 'wal-0.log')).readAll().length > 0);
  assert.ok(PerCoreWalReader.open(2, join(dir, 'm', 'wal-2.log')).readAll().length > 0);
});
