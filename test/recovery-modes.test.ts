import assert from 'node:assert/strict';
import { readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  CheckpointStore, PerCoreCheckpointCoordinator, PerCoreRecoveryManager, PerCoreWalConfig, PerCoreWalError, PerCoreWalManager, encodeRecord, PerCoreWalEntry,
  type PerCoreRecoveredState, type RecoveryMode,
} from '../src/index.js';
import { b, tempDir } from './helpers/tmp.js';

const code = (c: string, re?: RegExp) => (e: unknown) => e instanceof PerCoreWalError && e.code === c && (re === undefined || re.test(e.message));

interface Wal { config: PerCoreWalConfig; cpDir: string; starts: Map<string, number> }

/** Two cores, epochs 1..4, three puts per core per epoch, a sync after every record. */
function buildWal(): Wal {
  const dir = tempDir();
  let t = 0n;
  const config = new PerCoreWalConfig(join(dir, 'wal'), 2, { preallocate: 0, clock: () => ++t });
  const wal = PerCoreWalManager.create(config);
  const starts = new Map<string, number>();
  for (let e = 1; e <= 4; e++) {
    wal.setEpochAll(e);
    for (let i = 0; i < 3; i++) {
      for (const [core, name] of [[0, 'a'], [1, 'b']] as const) {
        const key = `${name}${e}.${i}`;
        starts.set(key, wal.writer(core).appendPut(b(key), b(`value of ${key}`)));
        wal.writer(core).sync();
      }
    }
  }
  wal.close();
  return { config, cpDir: join(dir, 'cp'), starts };
}

function keys(r: PerCoreRecoveredState): string[] {
  return [...r.state.entries()].map(([k]) => Buffer.from(k).toString()).sort();
}

function all(filter: (name: string, epoch: number, i: number) => boolean = () => true): string[] {
  const out: string[] = [];
  for (const n of ['a', 'b']) for (let e = 1; e <= 4; e++) for (let i = 0; i < 3; i++) if (filter(n, e, i)) out.push(`${n}${e}.${i}`);
  return out.sort();
}

function recover(w: Wal, mode: RecoveryMode): PerCoreRecoveredState {
  return new PerCoreRecoveryManager(w.config, { checkpointDir: w.cpDir, mode }).recover();
}

function flipByte(path: string, at: number): void {
  const buf = readFileSync(path);
  buf[at]! ^= 0x5a;
  writeFileSync(path, buf);
}

test('damage in the middle of a segment (synced data), in every mode', () => {
  const w = buildWal();
  const seg0 = w.config.segmentPath(0);
  const bad = w.starts.get('a2.1')!;
  flipByte(seg0, bad + 30);
  const size = statSync(seg0).size;

  assert.throws(() => recover(w, 'tolerateCorruptedTail'), code('CHECKSUM_MISMATCH', /damage to synced data/));
  assert.throws(() => recover(w, 'absoluteConsistency'), code('CHECKSUM_MISMATCH', new RegExp(`at byte ${bad}`)));

  const skip = recover(w, 'skipAnyCorrupted');
  assert.deepEqual(keys(skip), all((n, e, i) => !(n === 'a' && e === 2 && i === 1)));
  assert.equal(skip.segments[0]!.ended, 'skipped');
  assert.equal(skip.segments[0]!.skippedBytes, w.starts.get('a2.2')! - bad);
  assert.equal(skip.segments[0]!.bad!.position, bad);
  assert.ok(skip.warnings.some((m) => /skipped \d+ bytes/.test(m)));

  // Core 0 is cut inside epoch 2: no core replays epoch 2 or later.
  const pit = recover(w, 'pointInTime');
  assert.deepEqual(keys(pit), all((_n, e) => e === 1));
  assert.equal(pit.segments[0]!.ended, 'cut');
  assert.equal(pit.segments[1]!.ended, 'limit');
  assert.deepEqual(pit.walPositions, [w.starts.get('a2.0')!, w.starts.get('b2.0')!]);
  assert.equal(pit.finalEpoch, 1n);
  assert.ok(pit.warnings.some((m) => /no core replays epoch 2/.test(m)));

  const rm = (mode: RecoveryMode) => new PerCoreRecoveryManager(w.config, { checkpointDir: w.cpDir, mode });
  assert.throws(() => rm('tolerateCorruptedTail').repairAllSegments(), code('CHECKSUM_MISMATCH'));
  assert.equal(statSync(seg0).size, size, 'nothing is cut when repair refuses');
  assert.deepEqual(rm('skipAnyCorrupted').repairAllSegments(), [size, statSync(w.config.segmentPath(1)).size], 'damage in the middle stays');
  // pointInTime repair makes the cores consistent on disk: then even the strictest mode reads it.
  assert.deepEqual(rm('pointInTime').repairAllSegments(), [w.starts.get('a2.0')!, w.starts.get('b2.0')!]);
  assert.deepEqual(keys(recover(w, 'absoluteConsistency')), all((_n, e) => e === 1));
});

test('a torn tail, in every mode', () => {
  const w = buildWal();
  const seg0 = w.config.segmentPath(0);
  truncateSync(seg0, statSync(seg0).size - 5);
  const withoutLast = all((n, e, i) => !(n === 'a' && e === 4 && i === 2));

  const tol = recover(w, 'tolerateCorruptedTail');
  assert.deepEqual(keys(tol), withoutLast);
  assert.equal(tol.segments[0]!.ended, 'torn');
  assert.equal(tol.walPositions[0], w.starts.get('a4.2'));
  assert.ok(tol.warnings.some((m) => /torn tail at byte \d+ .* dropped/.test(m)));

  assert.throws(() => recover(w, 'absoluteConsistency'), code('TORN_WRITE'));

  const skip = recover(w, 'skipAnyCorrupted');
  assert.deepEqual(keys(skip), withoutLast);

  const pit = recover(w, 'pointInTime');
  assert.deepEqual(keys(pit), all((_n, e) => e <= 3), 'core 0 may have lost epoch 4: no core replays it');

  const rm = new PerCoreRecoveryManager(w.config, { checkpointDir: w.cpDir });
  assert.deepEqual(rm.repairAllSegments()[0], w.starts.get('a4.2'));
  assert.equal(statSync(seg0).size, w.starts.get('a4.2'));
  assert.deepEqual(keys(recover(w, 'absoluteConsistency')), withoutLast);
});

test('crash debris beyond the last synced point is dropped by default, skipped over by skipAnyCorrupted', () => {
  const dir = tempDir();
  let t = 0n;
  const config = new PerCoreWalConfig(join(dir, 'wal'), 1, { preallocate: 0, clock: () => ++t });
  const wal = PerCoreWalManager.create(config);
  wal.writer(0).appendPut(b('synced'), b('1'));
  wal.syncAll();
  // Three records in one unsynced batch: each says only 'synced' was durable when it was written.
  const first = wal.writer(0).appendPut(b('u1'), b('x'));
  wal.writer(0).appendPut(b('u2'), b('y'));
  wal.writer(0).appendPut(b('u3'), b('z'));
  wal.writer(0).flush();
  wal.close();
  flipByte(config.segmentPath(0), first + 20);
  const rm = (mode: RecoveryMode) => new PerCoreRecoveryManager(config, { checkpointDir: join(dir, 'cp'), mode });
  const tol = rm('tolerateCorruptedTail').recover();
  assert.deepEqual(keys(tol), ['synced']);
  assert.equal(tol.segments[0]!.ended, 'debris');
  assert.ok(tol.warnings.some((m) => /crash debris/.test(m)));
  assert.throws(() => rm('absoluteConsistency').recover(), code('CHECKSUM_MISMATCH'));
  assert.deepEqual(keys(rm('skipAnyCorrupted').recover()), ['synced', 'u2', 'u3']);
  assert.deepEqual(keys(rm('pointInTime').recover()), [], 'the only core was cut in epoch 0, the epoch of everything');
  assert.deepEqual(rm('tolerateCorruptedTail').repairAllSegments(), [first]);
  assert.deepEqual(keys(rm('absoluteConsistency').recover()), ['synced']);
});

test('skipAnyCorrupted: random damage never throws, yields only real entries in their order, and ends in bounded time', () => {
  const w = buildWal();
  const seg0 = w.config.segmentPath(0);
  const original = readFileSync(seg0);
  let s = 12345;
  const rand = (k: number): number => { s = (Math.imul(s, 1103515245) + 12345) >>> 0; return (s >>> 8) % k; };
  const real = all((n) => n === 'a');
  for (let iter = 0; iter < 40; iter++) {
    const buf = Buffer.from(original);
    for (let k = 0, n = 1 + rand(4); k < n; k++) {
      const at = rand(buf.length);
      const len = 1 + rand(40);
      for (let i = at; i < Math.min(buf.length, at + len); i++) buf[i] = rand(256);
    }
    writeFileSync(seg0, buf);
    const r = recover(w, 'skipAnyCorrupted');
    const got = r.stateChanges.filter((c) => c.coreId === 0).map((c) => Buffer.from(c.key).toString());
    let j = 0;
    for (const k of got) {
      while (j < real.length && real[j] !== k) j++;
      assert.ok(j < real.length, `iteration ${iter}: ${k} is not a real entry in order (${got.join(',')})`);
      j++;
    }
    for (const c of r.stateChanges) assert.equal(Buffer.from(c.value!).toString(), `value of ${Buffer.from(c.key).toString()}`);
    assert.equal(r.stateChanges.filter((c) => c.coreId === 1).length, 12, 'the undamaged core is untouched');
  }
  // A segment full of record-shaped garbage: each candidate claims a long payload with a bad CRC.
  const good = encodeRecord(PerCoreWalEntry.put(0, 0, 0, b('first'), b('1'), 1));
  const decoy = Buffer.from(good.subarray(0, 8 + 36));
  decoy.writeUInt32LE(200_000, 0);
  const garbage = Buffer.concat([good, ...Array.from({ length: 5000 }, () => decoy)]);
  writeFileSync(seg0, garbage);
  const started = performance.now();
  const r = recover(w, 'skipAnyCorrupted');
  assert.deepEqual(r.stateChanges.filter((c) => c.coreId === 0).map((c) => Buffer.from(c.key).toString()), ['first']);
  assert.equal(r.segments[0]!.ended, 'skipped');
  assert.ok(performance.now() - started < 20_000, 'bounded by the resync budget');
});

test('pointInTime after a no-truncate checkpoint: a core cut right after the barrier drops every later epoch; repair never cuts what the checkpoint holds', () => {
  const dir = tempDir();
  let t = 0n;
  const config = new PerCoreWalConfig(join(dir, 'wal'), 2, { preallocate: 0, clock: () => ++t });
  const cpDir = join(dir, 'cp');
  const wal = PerCoreWalManager.create(config);
  const coord = PerCoreCheckpointCoordinator.create(wal, CheckpointStore.open({ checkpointDir: cpDir }));
  wal.setEpochAll(1);
  wal.writer(0).appendPut(b('a1'), b('1'));
  wal.writer(1).appendPut(b('b1'), b('1'));
  const m = coord.createCheckpointNoTruncate(1);
  const a2 = wal.writer(0).appendPut(b('a2'), b('2'));
  wal.writer(1).appendPut(b('b2'), b('2'));
  wal.syncAll();
  wal.setEpochAll(m.checkpoint.epoch + 1n);
  wal.writer(0).appendPut(b('a3'), b('3'));
  wal.writer(1).appendPut(b('b3'), b('3'));
  wal.syncAll();
  wal.close();
  flipByte(config.segmentPath(0), a2 + 12);
  const rm = (mode: RecoveryMode) => new PerCoreRecoveryManager(config, { checkpointDir: cpDir, mode });
  const pit = rm('pointInTime').recover();
  assert.deepEqual(pit.segments.map((s) => s.start), m.walPositions);
  assert.deepEqual(keys(pit), ['a1', 'b1'], 'core 0 read nothing after the checkpoint: no epoch from the checkpoint on is replayed');
  assert.equal(pit.entriesReplayed, 0);
  assert.deepEqual(rm('skipAnyCorrupted').recover().stateChanges.map((c) => Buffer.from(c.key).toString()), ['b2', 'a3', 'b3']);
  assert.deepEqual(rm('pointInTime').repairAllSegments(), m.walPositions, 'cut back to the barriers, not below');
  const after = rm('absoluteConsistency').recover();
  assert.deepEqual(after.segments.map((s) => s.start), m.walPositions, 'the barriers are still there');
  assert.deepEqual(keys(after), ['a1', 'b1']);
  assert.equal(after.entriesReplayed, 0);
});

test('values kept by reference until the end (collectStateChanges: false) recover the same state as copied ones, fast and slow path mixed', () => {
  const w = buildWal();
  const seg0 = w.config.segmentPath(0);
  // Overwrite some keys on the other core so that live values come from both segments.
  const wal = PerCoreWalManager.open(w.config);
  wal.writer(1).appendPut(b('a1.0'), b('from core 1'));
  wal.writer(1).appendDelete(b('a1.1'));
  wal.syncAll();
  wal.close();
  flipByte(seg0, w.starts.get('a3.0')! + 30);   // the rest of core 0 goes through the slow path
  for (const mode of ['skipAnyCorrupted', 'pointInTime'] as const) {
    const full = new PerCoreRecoveryManager(w.config, { checkpointDir: w.cpDir, mode }).recover();
    const lean = new PerCoreRecoveryManager(w.config, { checkpointDir: w.cpDir, mode, collectStateChanges: false }).recover();
    assert.equal(lean.stateChanges.length, 0);
    assert.ok(full.stateChanges.length > 0);
    const dump = (r: PerCoreRecoveredState) => [...r.state.entries()].map(([k, v]) => `${Buffer.from(k)}=${Buffer.from(v)}`).sort();
    assert.deepEqual(dump(lean), dump(full), mode);
    assert.equal(lean.state.get('a1.0')!.toString(), mode === 'skipAnyCorrupted' ? 'from core 1' : 'value of a1.0');
    for (const [k, v] of lean.state.entries()) assert.ok(v instanceof Uint8Array, `${Buffer.from(k)} holds bytes`);
  }
});
