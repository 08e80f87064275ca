import assert from 'node:assert/strict';
import { statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { corewal, json } from './helpers/cli.js';
import { breakCheckpoint, checkpointedWal } from './helpers/checkpoint-dirs.js';
import { tempDir } from './helpers/tmp.js';

const FILE1 = 'checkpoint-00000000000000000001.cwc';
const FILE2 = 'checkpoint-00000000000000000002.cwc';

describe('inspect --checkpoint-dir', () => {
  test('lists every checkpoint: id, epoch, full or incremental on its parent, keys, size, valid; exit 0', () => {
    const w = checkpointedWal(tempDir());
    const r = corewal(['inspect', w.walDir, '--checkpoint-dir', w.cpDir]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^checkpoints in .*checkpoints: 2$/m);
    assert.match(r.stdout, new RegExp(`^ 1  ${FILE1} +1  full +20 +\\d+ B  valid$`, 'm'));
    assert.match(r.stdout, new RegExp(`^ 2  ${FILE2} +2  incremental on 1 +39 +\\d+ B  valid$`, 'm'));
    assert.match(r.stdout, /^recovery would start from checkpoint 2$/m);
    const j = json(corewal(['inspect', w.walDir, '--checkpoint-dir', w.cpDir, '--json']));
    assert.equal(j.checkpointDirExists, true);
    assert.deepEqual(j.checkpointTempFiles, []);
    assert.deepEqual(j.checkpoints.map((c: any) => [c.id, c.epoch, c.incremental, c.parentId, c.keys, c.valid, c.error]),
      [['1', '1', false, null, 20, true, null], ['2', '2', true, '1', 39, true, null]]);
    assert.equal(j.checkpoints[1].sizeBytes, statSync(join(w.cpDir, FILE2)).size);
    assert.equal(j.checkpoints[1].walPositions.length, 2);
    // Without the option, nothing about checkpoints.
    assert.equal(json(corewal(['inspect', w.walDir, '--json'])).checkpoints, undefined);
  });

  test('an invalid checkpoint: INVALID with the reason naming the file and byte, its dependants too; exit 1; crash leftovers shown', () => {
    const w = checkpointedWal(tempDir());
    const broken = breakCheckpoint(w.cpDir, 2);
    writeFileSync(join(w.cpDir, 'checkpoint-00000000000000000003.cwc.tmp'), 'half a checkpoint');
    const r = corewal(['inspect', w.walDir, '--checkpoint-dir', w.cpDir]);
    assert.equal(r.code, 1);
    assert.match(r.stdout, new RegExp(`^ 2  ${FILE2} .* INVALID$`, 'm'));
    assert.match(r.stdout, new RegExp(`^${FILE2}: invalid: invalid checkpoint file ${broken} at byte \\d+: body checksum mismatch`, 'm'));
    assert.match(r.stdout, /^recovery would start from checkpoint 1$/m);
    assert.match(r.stdout, /checkpoint-00000000000000000003\.cwc\.tmp: temporary file of a checkpoint a crash interrupted/);
    const j = json(corewal(['inspect', w.walDir, '--checkpoint-dir', w.cpDir, '--json']));
    assert.deepEqual(j.checkpoints.map((c: any) => c.valid), [true, false]);
    assert.deepEqual(j.checkpointTempFiles, ['checkpoint-00000000000000000003.cwc.tmp']);

    breakCheckpoint(w.cpDir, 1);
    const both = json(corewal(['inspect', w.walDir, '--checkpoint-dir', w.cpDir, '--json']));
    assert.deepEqual(both.checkpoints.map((c: any) => c.valid), [false, false]);
    assert.equal(both.checkpoints[1].incremental, true, 'its own header still reads');
  });

  test('a missing checkpoint directory is a usage error (exit 2), as a missing WAL directory is', () => {
    const w = checkpointedWal(tempDir());
    for (const cmd of ['inspect', 'verify']) {
      const r = corewal([cmd, w.walDir, '--checkpoint-dir', join(w.cpDir, 'typo')]);
      assert.equal(r.code, 2, cmd);
      assert.match(r.stderr, /typo does not exist/);
    }
  });
});

describe('verify --checkpoint-dir', () => {
  test('valid checkpoints: OK, counted in the summary', () => {
    const w = checkpointedWal(tempDir());
    const r = corewal(['verify', w.walDir, '--checkpoint-dir', w.cpDir]);
    assert.equal(r.code, 0, r.stdout);
    assert.match(r.stdout, /^OK: 2 segments, 21 valid entries, .*, 2 of 2 checkpoint\(s\) valid/m);
    const j = json(corewal(['verify', w.walDir, '--checkpoint-dir', w.cpDir, '--json']));
    assert.equal(j.ok, true);
    assert.deepEqual(j.checkpoints.map((c: any) => c.valid), [true, true]);
  });

  test('an invalid checkpoint fails verification (exit 1), naming the file and byte; --allow-torn does not excuse it', () => {
    const w = checkpointedWal(tempDir());
    const broken = breakCheckpoint(w.cpDir, 1);
    const r = corewal(['verify', w.walDir, '--checkpoint-dir', w.cpDir]);
    assert.equal(r.code, 1);
    const line1 = r.stdout.split('\n').find((l) => l.startsWith(`${FILE1}: `));
    assert.match(line1!, new RegExp(`^${FILE1}: byte (\\d+): CHECKPOINT_INVALID \\[checkpoint\\] checkpoint 1 does not load: invalid checkpoint file ${broken} at byte \\1: `));
    // Checkpoint 2 is fine on its own, but it is a set of changes on top of 1: it does not load either.
    assert.match(r.stdout, new RegExp(`^${FILE2}: byte 0: CHECKPOINT_INVALID \\[checkpoint\\] checkpoint 2 does not load: checkpoint 2 depends on checkpoint 1`, 'm'));
    assert.match(r.stdout, /^FAILED: 2 problem\(s\) in 2 of 4 file\(s\): .*0 of 2 checkpoint\(s\) valid/m);
    assert.equal(corewal(['verify', w.walDir, '--checkpoint-dir', w.cpDir, '--allow-torn']).code, 1);
    const j = json(corewal(['verify', w.walDir, '--checkpoint-dir', w.cpDir, '--json']));
    assert.equal(j.ok, false);
    assert.deepEqual(j.problems.map((p: any) => [p.file, p.code, p.severity, p.coreId]), [
      [FILE1, 'CHECKPOINT_INVALID', 'checkpoint', -1], [FILE2, 'CHECKPOINT_INVALID', 'checkpoint', -1],
    ]);
    assert.equal(j.problems[0].path, broken);
    assert.ok(j.problems[0].position > 0);
    // The WAL alone still verifies.
    assert.equal(corewal(['verify', w.walDir]).code, 0);
  });
});
