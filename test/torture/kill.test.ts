import assert from 'node:assert/strict';
import { join } from 'node:path';
import { mkdirSync } from 'node:fs';
import { test } from 'node:test';
import { PerCoreWalReader } from '../../src/index.js';
import { tempDir } from '../helpers/tmp.js';
import { killLane } from './kill.js';

test('SIGKILL during ingest, 22 times: every acknowledged record survives, intact, and the segment resumes', async () => {
  const dir = tempDir();
  mkdirSync(join(dir, 'a'));
  mkdirSync(join(dir, 'b'));
  // Two lanes at once (different preallocation), 11 kills each, each child resuming the last one's segment.
  const lanes = await Promise.all([
    killLane(join(dir, 'a', 'wal-0.log'), 11, 11),
    killLane(join(dir, 'b', 'wal-0.log'), 12, 11),
  ].map(async (p, i) => p.catch((e: unknown) => { throw new Error(`lane ${i}: ${String((e as Error).message)}`); })));
  assert.equal(lanes[0]! + lanes[1]!, 22);
  // The survivors are a real log: the strict reader reads them end to end (up to a torn tail).
  assert.ok(PerCoreWalReader.open(0, join(dir, 'a', 'wal-0.log')).readAll().length > 0);
});
