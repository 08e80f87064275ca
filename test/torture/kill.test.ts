import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { PerCoreWalReader } from '../../src/index.js';
import { tempDir } from '../helpers/tmp.js';
import { killLane } from './kill.js';

test('SIGKILL during ingest, 22 times: every acknowledged record survives intact, and the log resumes', async () => {
  const dir = tempDir();
  mkdirSync(join(dir, 'a'));
  // Two lanes at once, 11 kills each, each child resuming what the last one left:
  // a bare writer (recovered by scan + openAt) and a 3-core manager (recovered by open).
  const lanes = await Promise.all([
    killLane({ mode: 'writer', segment: join(dir, 'a', 'wal-0.log') }, 11, 11),
    killLane({ mode: 'manager', dir: join(dir, 'm'), cores: 3 }, 12, 11),
  ]);
  assert.equal(lanes[0]! + lanes[1]!, 22);
  assert.ok(PerCoreWalReader.open(0, join(dir, 'a', 'wal-0.log')).readAll().length > 0);
  assert.ok(PerCoreWalReader.open(2, join(dir, 'm', 'wal-2.log')).readAll().length > 0);
});
