import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';

const MAIN = fileURLToPath(new URL('./main.js', import.meta.url));

test('npm run torture: --suite/--seed replays one seed; --minutes runs and reports counts', () => {
  const replay = spawnSync(process.execPath, [MAIN, '--suite', 'writer-crash,fuzz', '--seed', '7'], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(replay.status, 0, replay.stderr);
  assert.match(replay.stdout, /writer-crash seed 7: ok \(\d+ iterations, \d+ crashes\)/);
  assert.match(replay.stdout, /fuzz seed 7: ok/);
  const run = spawnSync(process.execPath, [MAIN, '--minutes', '0.02', '--no-kill'], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(run.status, 0, run.stderr);
  assert.match(run.stdout, /TORTURE DONE .*: \d+ iterations, \d+ crashes survived, 0 failures/);
  const bad = spawnSync(process.execPath, [MAIN, '--suite', 'nope'], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(bad.status, 2);
});
