import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  CheckpointStore, PerCoreCheckpointCoordinator, PerCoreRecoveryManager, PerCoreWalConfig, PerCoreWalManager,
  type PerCoreRecoveredState, type WalFs,
} from '../src/index.js';
import { CrashFs, SimulatedCrash } from './helpers/crash-fs.js';
import { tempDir } from './helpers/tmp.js';

/**
 * Crash injection at every mutating file operation of a workload that writes, syncs and
 * checkpoints (SPEC invariant 7), then of the recovery procedure itself. After each crash,
 * recovery must yield exactly a reference state computed by a plain Map model: every synced
 * operation applied once, in order (plus, for the batch a crash interrupted while syncing,
 * some prefix of each core's operations: those bytes reached the file).
 */

const CORES = 2;

type Op =
  | { core: number; kind: 'put'; key: string; value: string }
  | { core: number; kind: 'delete'; key: string }
  | { core: number; kind: 'commit'; source: string; offset: number; watermark: number | null };

interface Model { kv: Map<string, string>; offsets: Map<string, bigint>; watermark: bigint | null; stateOps: number[]; extra?: number[] }

/** What the workload got done before it died. */
interface Progress {
  ops: Op[];
  /** Ops issued so far, and ops known synced (a syncAll or checkpoint returned). */
  issued: number;
  synced: number;
  /** Checkpoint id -> ops issued before its call (all synced by then). */
  checkpointCovers: Map<bigint, number>;
  /** Ops a crash lost for good (unsynced when it came, and not recovered). */
  lost?: Set<number>;
}

function genOps(seed: number, n: number): Op[] {
  let s = seed;
  const rand = (k: number): number => { s = (Math.imul(s, 1103515245) + 12345) >>> 0; return (s >>> 8) % k; };
  const out: Op[] = [];
  for (let i = 0; i < n; i++) {
    const core = rand(CORES);
    const r = rand(10);
    if (r < 6) out.push({ core, kind: 'put', key: `k${rand(6)}`, value: `v${seed}.${i}` });
    else if (r < 9) out.push({ core, kind: 'delete', key: `k${rand(6)}` });
    else out.push({ core, kind: 'commit', source: `src${core}`, offset: i, watermark: rand(2) === 0 ? null : 1000 + i });
  }
  return out;
}

function apply(wal: PerCoreWalManager, op: Op): void {
  const w = wal.writer(op.core);
  if (op.kind === 'put') w.appendPut(Buffer.from(op.key), Buffer.from(op.value));
  else if (op.kind === 'delete') w.appendDelete(Buffer.from(op.key));
  else w.appendCommit({ [op.source]: op.offset }, op.watermark);
}

interface Env { walDir: string; cpDir: string; clock: () => bigint }

function makeEnv(): Env {
  const dir = tempDir();
  let t = 1_000_000n;
  // One clock shared by every writer: the global order of entries is the order the test issued them.
  return { walDir: join(dir, 'wal'), cpDir: join(dir, 'cp'), clock: () => ++t };
}

function config(env: Env, fs?: WalFs): PerCoreWalConfig {
  return new PerCoreWalConfig(env.walDir, CORES, { fs, clock: env.clock, preallocate: 4096 });
}

/** Batches of ops, each synced, with checkpoints between them (one without truncation). */
function workload(env: Env, fs: WalFs, ops: Op[], p: Progress): void {
  const wal = PerCoreWalManager.create(config(env, fs));
  const store = CheckpointStore.open({ checkpointDir: env.cpDir, fs, fullEvery: 2, maxRetained: 1 });
  const coord = PerCoreCheckpointCoordinator.create(wal, store);
  const batch = (n: number): void => {
    for (let i = 0; i < n; i++) { apply(wal, ops[p.issued]!); p.issued++; }
    wal.syncAll();
    p.synced = p.issued;
  };
  const checkpoint = (id: bigint, truncate: boolean): void => {
    p.checkpointCovers.set(id, p.issued);
    if (truncate) coord.createCheckpoint(id); else coord.createCheckpointNoTruncate(id);
  };
  batch(4); batch(4);
  checkpoint(1n, true);
  batch(4); batch(3);
  checkpoint(2n, true);
  batch(4);
  checkpoint(3n, false);
  batch(4);
  checkpoint(4n, true);
  batch(3);
  wal.close();
}

function isCrash(e: unknown): boolean {
  for (let x = e; x !== undefined && x !== null; x = (x as { cause?: unknown }).cause) if (x instanceof SimulatedCrash) return true;
  return false;
}

/** The model of ops[0..synced) plus, per core, the first `extra[c]` ops of that core in [synced, issued). */
function model(ops: Op[], synced: number, issued: number, extra: number[], lost?: Set<number>): Model {
  const m: Model = { kv: new Map(), offsets: new Map(), watermark: null, stateOps: [] };
  const taken = new Array<number>(CORES).fill(0);
  for (let i = 0; i < issued; i++) {
    const op = ops[i]!;
    if (lost?.has(i)) continue;
    if (i >= synced && taken[op.core]!++ >= extra[op.core]!) continue;
    if (op.kind === 'put') { m.kv.set(op.key, op.value); m.stateOps.push(i); }
    else if (op.kind === 'delete') { m.kv.delete(op.key); m.stateOps.push(i); }
    else { m.offsets.set(op.source, BigInt(op.offset)); if (op.watermark !== null) m.watermark = BigInt(op.watermark); }
  }
  return m;
}

function candidates(ops: Op[], p: Progress): Model[] {
  const perCore = new Array<number>(CORES).fill(0);
  for (let i = p.synced; i < p.issued; i++) perCore[ops[i]!.core]!++;
  const out: Model[] = [];
  for (let a = 0; a <= perCore[0]!; a++) {
    for (let b = 0; b <= perCore[1]!; b++) out.push(Object.assign(model(ops, p.synced, p.issued, [a, b], p.lost), { extra: [a, b] }));
  }
  return out;
}

function stateOf(r: PerCoreRecoveredState): Map<string, string> {
  const m = new Map<string, string>();
  for (const [k, v] of r.state.entries()) m.set(Buffer.from(k).toString(), Buffer.from(v).toString());
  return m;
}

/**
 * Asserts `r` is exactly one candidate: its state, offsets and watermark, and its replayed
 * changes are that candidate's operations after the checkpoint, each once, in order.
 */
function check(r: PerCoreRecoveredState, ops: Op[], p: Progress, what: string): Model {
  const got = stateOf(r);
  const covered = r.checkpointId === null ? 0 : p.checkpointCovers.get(r.checkpointId);
  assert.notEqual(covered, undefined, `${what}: checkpoint ${r.checkpointId} was created by the workload`);
  const replayed = r.stateChanges.map((c) => `${Buffer.from(c.key).toString()}=${c.value === null ? '∅' : Buffer.from(c.value).toString()}`);
  const expectReplay = (m: Model): string[] => m.stateOps.filter((i) => i >= covered!).map((i) => {
    const op = ops[i]!;
    if (op.kind === 'commit') throw new Error('state ops only');
    return op.kind === 'put' ? `${op.key}=${op.value}` : `${op.key}=∅`;
  });
  const match = candidates(ops, p).find((m) => sameMap(m.kv, got) && sameMap(m.offsets, r.sourceOffsets) && m.watermark === r.watermark &&
    expectReplay(m).join() === replayed.join());
  assert.ok(match, `${what}: recovered ${JSON.stringify([...got])}, replayed ${JSON.stringify(replayed)} after checkpoint ${r.checkpointId}, ` +
    `offsets ${JSON.stringify([...r.sourceOffsets].map(([k, v]) => [k, String(v)]))}: matches no model of ${p.synced} synced / ${p.issued} issued ops`);
  return match;
}

function sameMap<K, V>(a: Map<K, V>, b: Map<K, V>): boolean {
  if (a.size !== b.size) return false;
  for (const [k, v] of a) if (b.get(k) !== v) return false;
  return true;
}

/**
 * What a restarted process does: recover, repair, reopen the WAL where recovery says,
 * fold everything into a new checkpoint. Returns the id it checkpointed as.
 */
function restart(env: Env, fs: WalFs | undefined, id: bigint): void {
  const cfg = config(env, fs);
  const rm = new PerCoreRecoveryManager(cfg, { checkpointDir: env.cpDir, fs });
  const r = rm.recover();
  rm.repairAllSegments();
  // create, not open: a crash may have come before the segments existed; after the repair every tail is clean.
  const wal = PerCoreWalManager.create(cfg, { minEpoch: r.finalEpoch, minSequences: r.nextSequences });
  const store = CheckpointStore.open({ checkpointDir: env.cpDir, fs, fullEvery: 2, maxRetained: 1 });
  const coord = PerCoreCheckpointCoordinator.create(wal, store);
  coord.createCheckpoint(id);
  wal.close();
}

function runToCrash(env: Env, ops: Op[], crashAt: number): { p: Progress; crashed: boolean; steps: number } {
  const fs = new CrashFs(crashAt);
  const p: Progress = { ops, issued: 0, synced: 0, checkpointCovers: new Map() };
  let crashed = false;
  try {
    workload(env, fs, ops, p);
  } catch (e) {
    if (!isCrash(e)) throw e;
    crashed = true;
  } finally {
    fs.closeAll();
  }
  return { p, crashed, steps: fs.calls };
}

test('a crash at every step of a write/sync/checkpoint workload recovers exactly the synced operations, once each, in order', () => {
  const ops = genOps(7, 40);
  const total = runToCrash(makeEnv(), ops, Infinity);
  assert.equal(total.crashed, false);
  assert.ok(total.steps > 60, `workload has ${total.steps} steps`);
  const seen = new Set<string>();
  for (let n = 1; n <= total.steps; n++) {
    const env = makeEnv();
    const { p, crashed } = runToCrash(env, ops, n);
    assert.ok(crashed, `step ${n} crashed`);
    const r = new PerCoreRecoveryManager(config(env), { checkpointDir: env.cpDir }).recover();
    const m = check(r, ops, p, `crash at step ${n}`);
    seen.add(`cp${r.checkpointId}`);
    // The restarted process resumes and writes more; a second recovery holds old and new.
    restart(env, undefined, 100n);
    const wal = PerCoreWalManager.open(config(env));
    wal.writer(1).appendPut(Buffer.from('k0'), Buffer.from('after restart'));
    wal.writer(0).appendDelete(Buffer.from('k1'));
    wal.syncAll();
    wal.close();
    const r2 = new PerCoreRecoveryManager(config(env), { checkpointDir: env.cpDir }).recover();
    const want = new Map(m.kv);
    want.set('k0', 'after restart');
    want.delete('k1');
    assert.deepEqual(stateOf(r2), want, `step ${n}: after restart`);
    assert.equal(r2.checkpointId, 100n);
    assert.equal(r2.stateChanges.length, 2);
  }
  // Crashes landed before any checkpoint, between checkpoints, and after the last one.
  for (const k of ['cpnull', 'cp1', 'cp2', 'cp3', 'cp4']) assert.ok(seen.has(k), `${k} among ${[...seen].join(' ')}`);
});

test('a crash at every step of the recovery procedure itself (recover, repair, reopen, checkpoint) recovers the same state', () => {
  const ops = genOps(11, 40);
  const total = runToCrash(makeEnv(), ops, Infinity).steps;
  // Crash points of the workload to restart from: during a sync, in a checkpoint, none at all.
  for (const n of [9, Math.floor(total / 2), total - 5, Infinity]) {
    const probe = makeEnv();
    const first = runToCrash(probe, ops, n);
    const counter = new CrashFs();
    restart(probe, counter, 100n);
    counter.closeAll();
    const steps = counter.calls;
    assert.ok(steps >= 8, `restart has ${steps} steps`);
    for (let k = 1; k <= steps; k++) {
      const env = makeEnv();
      const { p } = runToCrash(env, ops, n);
      assert.equal(p.synced, first.p.synced);
      const fs = new CrashFs(k);
      try {
        restart(env, fs, 100n);
        assert.fail(`restart step ${k} should crash`);
      } catch (e) {
        if (!isCrash(e)) throw e;
      } finally {
        fs.closeAll();
      }
      // The restart's own checkpoint covers everything recovered before it.
      p.checkpointCovers.set(100n, p.issued);
      const r = new PerCoreRecoveryManager(config(env), { checkpointDir: env.cpDir }).recover();
      check(r, ops, p, `workload crash ${n}, restart crash ${k}`);
      restart(env, undefined, 101n);
      p.checkpointCovers.set(101n, p.issued);
      const r2 = new PerCoreRecoveryManager(config(env), { checkpointDir: env.cpDir }).recover();
      assert.deepEqual(stateOf(r2), stateOf(r), `workload crash ${n}, restart crash ${k}: a second restart changes nothing`);
      assert.equal(r2.checkpointId, 101n);
    }
  }
});

/** After a crash was checked: the unsynced ops that did not survive are lost for good. */
function settle(ops: Op[], p: Progress, m: Model): void {
  p.lost ??= new Set();
  const taken = new Array<number>(CORES).fill(0);
  for (let i = p.synced; i < p.issued; i++) if (taken[ops[i]!.core]!++ >= m.extra![ops[i]!.core]!) p.lost.add(i);
  p.synced = p.issued;
}

test('randomized lives: crash, restart, write and checkpoint again, crash again — every recovery exact', () => {
  for (let seed = 1; seed <= 25; seed++) {
    let s = seed * 7919;
    const rand = (k: number): number => { s = (Math.imul(s, 1103515245) + 12345) >>> 0; return (s >>> 8) % k; };
    const ops = genOps(seed + 100, 120);
    const env = makeEnv();
    const p: Progress = { ops, issued: 0, synced: 0, checkpointCovers: new Map(), lost: new Set() };
    let nextId = 1n;
    for (let life = 0; life < 4 && p.issued < ops.length; life++) {
      const fs = new CrashFs(rand(4) === 0 ? Infinity : 1 + rand(70));
      try {
        const cfg = config(env, fs);
        const rm = new PerCoreRecoveryManager(cfg, { checkpointDir: env.cpDir, fs });
        const r = rm.recover();
        rm.repairAllSegments();
        const wal = PerCoreWalManager.create(cfg, { minEpoch: r.finalEpoch, minSequences: r.nextSequences });
        const store = CheckpointStore.open({ checkpointDir: env.cpDir, fs, fullEvery: 1 + rand(3), maxRetained: 1 + rand(2) });
        const coord = PerCoreCheckpointCoordinator.create(wal, store);
        for (let step = 0; step < 6 && p.issued < ops.length; step++) {
          for (let i = 0, n = 1 + rand(5); i < n && p.issued < ops.length; i++) { apply(wal, ops[p.issued]!); p.issued++; }
          wal.syncAll();
          p.synced = p.issued;
          const dice = rand(4);
          if (dice === 0) { p.checkpointCovers.set(nextId, p.issued); coord.createCheckpoint(nextId++); }
          else if (dice === 1) { p.checkpointCovers.set(nextId, p.issued); coord.createCheckpointNoTruncate(nextId++); }
        }
        wal.close();
      } catch (e) {
        if (!isCrash(e)) throw e;
      } finally {
        fs.closeAll();
      }
      const r = new PerCoreRecoveryManager(config(env), { checkpointDir: env.cpDir }).recover();
      settle(ops, p, check(r, ops, p, `seed ${seed} life ${life}`));
    }
  }
});
