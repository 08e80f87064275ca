import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { PerCoreRecoveryManager, PerCoreWalConfig, RECOVERY_MODES, type RecoveryMode } from '../src/index.js';
import { corewal, corewalInTerminal, json } from './helpers/cli.js';
import { breakCheckpoint, checkpointedWal } from './helpers/checkpoint-dirs.js';
import { tempDir } from './helpers/tmp.js';
import { damagedWal, healthyWal, seg, tornWal } from './helpers/wal-dirs.js';

type Kind = 'healthy' | 'torn' | 'damaged';

/**
 * What each mode must do with each WAL (RocksDB's meanings): the exit code, the failure
 * code when it fails, and how core 1's segment ends when it succeeds.
 */
const OUTCOME: Record<Kind, Record<RecoveryMode, { code: 0 | 1; error?: string; ended1?: string }>> = {
  healthy: {
    tolerateCorruptedTail: { code: 0, ended1: 'clean' }, absoluteConsistency: { code: 0, ended1: 'clean' },
    pointInTime: { code: 0, ended1: 'clean' }, skipAnyCorrupted: { code: 0, ended1: 'clean' },
  },
  torn: {
    tolerateCorruptedTail: { code: 0, ended1: 'torn' }, absoluteConsistency: { code: 1, error: 'TORN_WRITE' },
    pointInTime: { code: 0, ended1: 'cut' }, skipAnyCorrupted: { code: 0, ended1: 'skipped' },
  },
  damaged: {
    tolerateCorruptedTail: { code: 1, error: 'CHECKSUM_MISMATCH' }, absoluteConsistency: { code: 1, error: 'CHECKSUM_MISMATCH' },
    pointInTime: { code: 0, ended1: 'cut' }, skipAnyCorrupted: { code: 0, ended1: 'skipped' },
  },
};

interface Fixture {
  walDir: string;
  cpDir: string;
  /** Byte of core 1's segment where its first problem is. */
  badAt?: number;
}

/** The same three WALs, without checkpoints (the WAL alone) and with two (a full one and an incremental one). */
function fixture(kind: Kind, withCheckpoints: boolean): Fixture {
  const root = tempDir();
  if (withCheckpoints) {
    const w = checkpointedWal(root, kind);
    return { walDir: w.walDir, cpDir: w.cpDir, badAt: w.bad?.position ?? w.torn?.validEnd };
  }
  const walDir = join(root, 'wal');
  const cpDir = join(root, 'checkpoints');
  mkdirSync(cpDir);
  if (kind === 'healthy') { healthyWal(walDir); return { walDir, cpDir }; }
  if (kind === 'torn') return { walDir, cpDir, badAt: tornWal(walDir).validEnd };
  return { walDir, cpDir, badAt: damagedWal(walDir).badPosition };
}

describe('recover: every mode on healthy, torn and damaged WALs, with and without checkpoints', () => {
  for (const withCp of [false, true]) {
    for (const kind of ['healthy', 'torn', 'damaged'] as const) {
      test(`${kind}, ${withCp ? 'with checkpoints' : 'WAL only'}`, () => {
        const f = fixture(kind, withCp);
        for (const mode of RECOVERY_MODES) {
          const want = OUTCOME[kind][mode];
          const r = corewal(['recover', f.walDir, f.cpDir, '--mode', mode, '--json']);
          const what = `${kind}/${mode}: exit ${r.code}\n${r.stdout}\n${r.stderr}`;
          assert.equal(r.code, want.code, what);
          const j = json(r);
          assert.equal(j.mode, mode);
          assert.equal(j.cores, 2);
          assert.equal(j.coresFrom, 'segments');
          if (want.code === 1) {
            // A failure is JSON too, naming the code, the file and the byte.
            assert.equal(j.ok, false, what);
            assert.equal(j.error.code, want.error, what);
            assert.equal(j.error.path, seg(f.walDir, 1));
            assert.equal(j.error.position, f.badAt, what);
            assert.equal(j.segments, undefined);
            continue;
          }
          assert.equal(j.ok, true, what);
          // The CLI shows what the library rebuilt, field for field.
          const lib = new PerCoreRecoveryManager(new PerCoreWalConfig(f.walDir, 2), { checkpointDir: f.cpDir, mode }).recover();
          assert.equal(j.keys, lib.state.size);
          assert.equal(j.entriesReplayed, lib.entriesReplayed);
          assert.equal(j.finalEpoch, String(lib.finalEpoch));
          assert.deepEqual(j.walPositions, lib.walPositions);
          assert.deepEqual(j.nextSequences, lib.nextSequences.map(String));
          assert.equal(j.checkpoint?.id ?? null, lib.checkpointId === null ? null : String(lib.checkpointId));
          assert.deepEqual(j.segments.map((s: any) => s.ended).slice(1), [want.ended1], what);
          const s1 = j.segments[1];
          assert.equal(s1.file, 'wal-1.log');
          assert.equal(s1.size, statSync(seg(f.walDir, 1)).size);
          if (kind === 'healthy') assert.equal(s1.problem, null);
          else assert.equal(s1.problem.position, f.badAt, what);
          assert.equal(s1.bytesNotReplayed, s1.size - s1.end);
          assert.equal(j.repair, null);
          if (kind !== 'healthy') assert.ok(j.warnings.some((w: string) => w.includes('core 1')), what);
        }
      });
    }
  }
});

describe('recover: what it rebuilt', () => {
  test('from checkpoints: the checkpoint used, keys, entries replayed, offsets, watermark, per segment; --state holds every key with its value', () => {
    const w = checkpointedWal(tempDir(), 'torn');
    const r = corewal(['recover', w.walDir, w.cpDir]);
    assert.equal(r.code, 0, r.stderr);
    const t = r.stdout;
    assert.match(t, /^recovered .*wal \(2 cores, mode tolerateCorruptedTail\)/);
    assert.match(t, /^checkpoint +2 \(checkpoint-00000000000000000002\.cwc: epoch 2, incremental on 1, 39 keys, /m);
    assert.match(t, /^state +59 keys/m);
    assert.match(t, /^replayed +21 WAL entries$/m);
    assert.match(t, /^source offsets +kafka=300$/m);
    assert.match(t, /^watermark +250$/m);
    assert.match(t, new RegExp(`^ +1 +wal-1\\.log +${w.torn!.size} +0 +${w.torn!.validEnd} +11 +11 +torn +tornWrite at byte ${w.torn!.validEnd}$`, 'm'));
    assert.match(t, /^note: core 1: torn tail at byte \d+ of .*wal-1\.log dropped/m);

    const j = json(corewal(['recover', w.walDir, w.cpDir, '--json', '--state']));
    assert.deepEqual(Object.keys(j).sort(), [
      'checkpoint', 'checkpointDir', 'checkpointDirExists', 'cores', 'coresFrom', 'entriesReplayed', 'finalEpoch', 'keys', 'missingSegments',
      'mode', 'ms', 'nextSequences', 'ok', 'pattern', 'repair', 'segments', 'skippedCheckpoints', 'sourceOffsets', 'state', 'stateBytes', 'walDir', 'walPositions',
      'warnings', 'watermark',
    ]);
    assert.deepEqual(j.checkpoint, { ...j.checkpoint, id: '2', epoch: '2', incremental: true, parentId: '1', keys: 39 });
    assert.deepEqual(j.sourceOffsets, { kafka: '300' });
    assert.equal(j.watermark, '250');
    const state = new Map<string, string>(j.state.map((s: any) => [s.key, s.value]));
    assert.deepEqual(state, w.expected);
    assert.deepEqual(j.state.map((s: any) => s.key), [...w.expected.keys()].sort());

    const text = corewal(['recover', w.walDir, w.cpDir, '--state']).stdout;
    assert.match(text, /^state \(59 keys\):$/m);
    assert.match(text, /^"key-45" = "value 45 of round 3"$/m);
  });

  test('pointInTime on a damaged WAL replays no epoch a core lost: exactly the checkpoint\'s state', () => {
    const w = checkpointedWal(tempDir(), 'damaged');
    const j = json(corewal(['recover', w.walDir, w.cpDir, '--mode', 'pointInTime', '--json', '--state']));
    assert.equal(j.ok, true);
    assert.deepEqual(new Map(j.state.map((s: any) => [s.key, s.value])), w.inCheckpoint);
    assert.deepEqual(j.sourceOffsets, { kafka: '100' });
    assert.ok(j.warnings.some((m: string) => /no core replays epoch 2/.test(m)), j.warnings.join('\n'));
    // skipAnyCorrupted loses only the damaged record.
    const skip = json(corewal(['recover', w.walDir, w.cpDir, '--mode', 'skipAnyCorrupted', '--json', '--state']));
    const want = new Map(w.expected);
    want.delete(w.bad!.key);
    assert.deepEqual(new Map(skip.state.map((s: any) => [s.key, s.value])), want);
  });

  test('a failure in text: nothing on stdout, code, file and byte on stderr, exit 1', () => {
    const w = checkpointedWal(tempDir(), 'damaged');
    const r = corewal(['recover', w.walDir, w.cpDir]);
    assert.equal(r.code, 1);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, new RegExp(`failed in mode tolerateCorruptedTail: CHECKSUM_MISMATCH: .*wal-1\\.log at byte ${w.bad!.position}`));
    assert.match(r.stderr, /corewal verify/);
  });

  test('an invalid newest checkpoint is skipped for the previous one, and said so', () => {
    const w = checkpointedWal(tempDir());
    breakCheckpoint(w.cpDir, 2);
    // That is corruption (a crash never leaves an invalid checkpoint): exit 1, yet the state
    // rebuilt from checkpoint 1 and the WAL is shown.
    const r = corewal(['recover', w.walDir, w.cpDir, '--json']);
    assert.equal(r.code, 1);
    const j = json(r);
    assert.equal(j.ok, false);
    assert.equal(j.checkpoint.id, '1');
    assert.deepEqual(j.skippedCheckpoints, [{ id: '2', file: 'checkpoint-00000000000000000002.cwc' }]);
    assert.ok(j.warnings.some((m: string) => /skipping checkpoint 2/.test(m)), j.warnings.join('\n'));
    assert.equal(j.keys, 20 + 20, 'checkpoint 1 and the WAL after checkpoint 2: what only checkpoint 2 held is gone');
    assert.match(r.stderr, /checkpoint 2 does not load and was skipped/);
    const text = corewal(['recover', w.walDir, w.cpDir]);
    assert.equal(text.code, 1);
    assert.match(text.stdout, /^checkpoint +1 \(checkpoint-00000000000000000001\.cwc: epoch 1, full, 20 keys/m);
    assert.match(text.stdout, /^note: skipping checkpoint 2: invalid checkpoint file .*checkpoint-00000000000000000002\.cwc at byte \d+/m);
    // With every checkpoint invalid, recovery replays the WAL alone, and says so the same way.
    breakCheckpoint(w.cpDir, 1);
    const none = json(corewal(['recover', w.walDir, w.cpDir, '--json']));
    assert.equal(none.checkpoint, null);
    assert.deepEqual(none.skippedCheckpoints.map((c: any) => c.id), ['1', '2']);
  });

  test('cores: from the segment files, from --cores, from the checkpoint when no segment is left; else a usage error', () => {
    const w = checkpointedWal(tempDir());
    const three = json(corewal(['recover', w.walDir, w.cpDir, '--cores', '3', '--json']));
    assert.equal(three.cores, 3);
    assert.equal(three.coresFrom, 'option');
    assert.deepEqual(three.missingSegments, [2]);
    assert.equal(three.segments.length, 3);
    assert.equal(three.keys, w.expected.size);
    assert.match(corewal(['recover', w.walDir, w.cpDir, '--cores', '3']).stdout, /no segment file for core\(s\) 2: read as empty/);
    // A single-core view of a two-core WAL ignores the other segment, and says so.
    const one = corewal(['recover', w.walDir, w.cpDir, '--cores', '1', '--json']);
    assert.equal(json(one).cores, 1);
    assert.match(one.stderr, /ignoring wal-1\.log/);

    unlinkSync(seg(w.walDir, 0));
    unlinkSync(seg(w.walDir, 1));
    const cp = json(corewal(['recover', w.walDir, w.cpDir, '--json']));
    assert.equal(cp.coresFrom, 'checkpoint');
    assert.equal(cp.cores, 2);
    assert.equal(cp.keys, w.inCheckpoint.size);

    const none = corewal(['recover', w.walDir, join(w.cpDir, 'nowhere')]);
    assert.equal(none.code, 2);
    assert.match(none.stderr, /pass --cores/);
  });

  test('a missing checkpoint directory: the WAL alone, with a warning; usage errors exit 2', () => {
    const root = tempDir();
    healthyWal(join(root, 'wal'));
    const r = corewal(['recover', join(root, 'wal'), join(root, 'no-checkpoints')]);
    assert.equal(r.code, 0);
    assert.match(r.stderr, /no-checkpoints does not exist/);
    assert.match(r.stdout, /^checkpoint +none \(.*no-checkpoints does not exist\)/m);
    writeFileSync(join(root, 'file'), 'x');
    for (const args of [
      ['recover', join(root, 'wal')],
      ['recover', join(root, 'wal'), root, '--mode', 'bestEffort'],
      ['recover', join(root, 'wal'), root, '--cores', '0'],
      ['recover', join(root, 'wal'), root, '--cores', '1.5'],
      ['recover', join(root, 'missing'), root],
      ['recover', join(root, 'wal'), join(root, 'file')],
    ]) {
      const u = corewal(args);
      assert.equal(u.code, 2, `${args.join(' ')}\n${u.stderr}`);
      assert.ok(u.stderr.length > 0);
    }
  });
});

describe('recover --repair', () => {
  test('without --yes and without a terminal it refuses (exit 2) and cuts nothing; --yes cuts the torn tail only', () => {
    const w = checkpointedWal(tempDir(), 'torn');
    const refused = corewal(['recover', w.walDir, w.cpDir, '--repair']);
    assert.equal(refused.code, 2);
    assert.match(refused.stderr, /pass --yes/);
    assert.equal(statSync(seg(w.walDir, 1)).size, w.torn!.size);
    const r = corewal(['recover', w.walDir, w.cpDir, '--repair', '--yes', '--json', '--state']);
    assert.equal(r.code, 0, r.stderr);
    const j = json(r);
    assert.deepEqual(j.repair.segments[1], { coreId: 1, file: 'wal-1.log', sizeBefore: w.torn!.size, sizeAfter: w.torn!.validEnd, bytesCut: w.torn!.size - w.torn!.validEnd });
    assert.equal(j.repair.segments[0].bytesCut, 0);
    assert.equal(statSync(seg(w.walDir, 1)).size, w.torn!.validEnd);
    // Now even the strictest mode accepts the WAL, and rebuilds the same state.
    const strict = json(corewal(['recover', w.walDir, w.cpDir, '--mode', 'absoluteConsistency', '--json', '--state']));
    assert.equal(strict.ok, true);
    assert.deepEqual(strict.state, j.state);
  });

  test('pointInTime --repair cuts every core back to the consistent point; the result recovers in every mode to the same state', () => {
    const w = checkpointedWal(tempDir(), 'damaged');
    const before = readFileSync(seg(w.walDir, 0));
    const j = json(corewal(['recover', w.walDir, w.cpDir, '--mode', 'pointInTime', '--repair', '--yes', '--json', '--state']));
    assert.equal(j.ok, true);
    assert.equal(statSync(seg(w.walDir, 1)).size, j.segments[1].end);
    assert.equal(statSync(seg(w.walDir, 0)).size, j.segments[0].end);
    assert.deepEqual(readFileSync(seg(w.walDir, 0)), before.subarray(0, j.segments[0].end), 'a cut, not a rewrite');
    for (const mode of RECOVERY_MODES) {
      const again = json(corewal(['recover', w.walDir, w.cpDir, '--mode', mode, '--json', '--state']));
      assert.equal(again.ok, true, mode);
      assert.deepEqual(again.state, j.state, mode);
    }
  });

  test('a failed recovery repairs nothing', () => {
    const w = checkpointedWal(tempDir(), 'damaged');
    const size = statSync(seg(w.walDir, 1)).size;
    assert.equal(corewal(['recover', w.walDir, w.cpDir, '--repair', '--yes']).code, 1);
    assert.equal(statSync(seg(w.walDir, 1)).size, size);
  });

  test('on a terminal it asks: "n" cuts nothing (exit 1)', (t) => {
    const w = checkpointedWal(tempDir(), 'torn');
    const no = corewalInTerminal(['recover', w.walDir, w.cpDir, '--repair'], 'n\n');
    if (no === null) return t.skip('util-linux script is not installed');
    assert.match(no.stdout, /wal-1\.log: cut 126 bytes after byte \d+ \(torn\)/);
    assert.match(no.stdout, /Cut 1 segment\(s\) where tolerateCorruptedTail recovery stopped\? \[y\/N\]/);
    assert.equal(no.code, 1);
    assert.equal(statSync(seg(w.walDir, 1)).size, w.torn!.size);
  });
});

describe('recover in a terminal', () => {
  test('a progress bar on a terminal, never into a pipe or with --json', (t) => {
    const w = checkpointedWal(tempDir());
    const tty = corewalInTerminal(['recover', w.walDir, w.cpDir]);
    if (tty === null) return t.skip('util-linux script is not installed');
    assert.equal(tty.code, 0);
    assert.match(tty.stdout, /recover [█░]+ \d+% \|/);
    assert.match(tty.stdout, /replaying the WAL/);
    assert.match(tty.stdout, /^state +59 keys/m);
    assert.doesNotMatch(corewalInTerminal(['recover', w.walDir, w.cpDir, '--json'])!.stdout, /[█░]/);
    assert.doesNotMatch(corewal(['recover', w.walDir, w.cpDir]).stderr, /[█░]/);
  });
});
