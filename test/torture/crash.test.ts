import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runGroupCommitSeed } from './group-commit-crash.js';
import { runManagerCrashSeed } from './manager-crash.js';
import { runRecoveryCrashSeed } from './recovery-crash.js';
import { runSioCrashSeed } from './sio-crash.js';
import { runWriterCrashSeed } from './writer-crash.js';

// Seeds are fixed so that `npm test` is reproducible; `npm run torture` draws new ones.
test('writer through simulated crashes: 120 seeds, every synced record survives, nothing torn or invented', () => {
  let crashes = 0, steps = 0;
  for (let seed = 1; seed <= 120; seed++) {
    const r = runWriterCrashSeed(seed);
    crashes += r.crashes;
    steps += r.iterations;
  }
  assert.ok(crashes >= 500, `only ${crashes} crashes`);
  assert.ok(steps > 1000);
});

test('writer with injected EIO/ENOSPC faults, then crashes: poisoned, never lying about durability', () => {
  let crashes = 0;
  for (let seed = 1; seed <= 80; seed++) crashes += runWriterCrashSeed(seed, { faults: true }).crashes;
  assert.ok(crashes >= 300, `only ${crashes} crashes`);
});

test('manager through simulated crashes (directories too): 100 seeds, open always succeeds, synced data survives, resumes after every survivor', () => {
  let crashes = 0;
  for (let seed = 1; seed <= 100; seed++) crashes += runManagerCrashSeed(seed).crashes;
  assert.ok(crashes >= 500, `only ${crashes} crashes`);
});

test('manager with injected EIO/ENOSPC faults, then crashes: failures poison, open still recovers everything synced', () => {
  let crashes = 0;
  for (let seed = 1; seed <= 100; seed++) crashes += runManagerCrashSeed(seed, { faults: true }).crashes;
  assert.ok(crashes >= 500, `only ${crashes} crashes`);
});

test('StorageIo path through simulated crashes, with reordered and held completions: 100 seeds', () => {
  let crashes = 0;
  for (let seed = 1; seed <= 100; seed++) crashes += runSioCrashSeed(seed).crashes;
  assert.ok(crashes >= 500, `only ${crashes} crashes`);
});

test('StorageIo path with failed and short writes and failed datasyncs: 100 seeds, poisoned, claims never pass a failure', () => {
  let crashes = 0;
  for (let seed = 1; seed <= 100; seed++) crashes += runSioCrashSeed(seed, { faults: true }).crashes;
  assert.ok(crashes >= 500, `only ${crashes} crashes`);
});

test('group commit through crashes at random event-loop turns: every acknowledged put survives (80 seeds, half with faults)', async () => {
  let crashes = 0;
  for (let seed = 1; seed <= 40; seed++) crashes += (await runGroupCommitSeed(seed)).crashes;
  for (let seed = 1; seed <= 40; seed++) crashes += (await runGroupCommitSeed(seed, { faults: true })).crashes;
  assert.ok(crashes >= 500, `only ${crashes} crashes`);
});

test('checkpoints and recovery through crashes and power cuts inside createCheckpoint: 80 seeds, every synced entry applied once, in order', () => {
  let crashes = 0;
  for (let seed = 1; seed <= 80; seed++) crashes += runRecoveryCrashSeed(seed).crashes;
  assert.ok(crashes >= 500, `only ${crashes} crashes`);
});
