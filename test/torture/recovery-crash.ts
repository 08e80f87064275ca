import {
  CheckpointStore, PerCoreCheckpointCoordinator, PerCoreRecoveryManager, PerCoreWalConfig, PerCoreWalEntry, PerCoreWalError, PerCoreWalManager,
  scanSegment, type PerCoreRecoveredState,
} from '../../src/index.js';
import { Rng, SimDisk } from '../../src/testing/index.js';
import { failCrashRun, randomCrashOptions, sameBytes, Trail, type SeedResult, type TortureSuite } from './harness.js';

/** A state-changing record as the driver appended it. */
interface Rec {
  core: number;
  /** The entry as written (its epoch, sequence, timestamp give the merge order). */
  entry: PerCoreWalEntry;
  /** Segment position just past the record, in the segment incarnation it was written to. */
  end: number;
  /** Covered by a durable checkpoint: never replayed again. */
  covered: boolean;
  /** Below its writer's syncedPosition once: must survive every crash. */
  durable: boolean;
}

/** What a checkpoint holds, as the model computes it. */
interface Snapshot {
  id: bigint;
  state: Map<string, Buffer>;
  offsets: Map<string, bigint>;
  watermark: bigint | null;
  /** The records it folded in (marked covered once it is durable). */
  folds: Rec[];
}

const WAL = '/data/wal';
const CKPT = '/data/checkpoints';
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

/**
 * Checkpoints and recovery through crashes (SPEC 7): a multi-core WAL with a checkpoint
 * coordinator, puts, deletes and commits, syncs, epoch advances, checkpoints with and
 * without reset; crashes between steps and power cuts at any file-system call, inside
 * `createCheckpoint` included. After each crash `PerCoreRecoveryManager.recover()` must
 * return the newest durable checkpoint (never older than the last one that completed) plus
 * exactly the WAL entries it does not hold, in global order, each once: the state,
 * source offsets, watermark and the replayed changes must equal the model's, and every
 * synced entry must be there.
 */
export class RecoveryCrashRun {
  private readonly rng: Rng;
  private readonly trail = new Trail();
  private disk = new SimDisk({ volatileMkdir: true });
  private readonly numCores: number;
  private readonly fullEvery: number;
  private readonly maxRetained: number;
  private clockNow = 1_000_000n;
  /** Per core, the records in its segment now, in order. */
  private live: Rec[][];
  private snapshots = new Map<bigint, Snapshot>();
  private base: Snapshot = { id: 0n, state: new Map(), offsets: new Map(), watermark: null, folds: [] };
  /** A checkpoint whose createCheckpoint had not returned when the power went. */
  private inFlight: Snapshot | null = null;
  private nextId = 1n;
  private created = false;
  crashes = 0;
  steps = 0;
  checkpoints = 0;
  /** pointInTime recoveries checked, and those where the cutoff dropped entries other cores kept. */
  pointInTimeChecks = 0;
  pointInTimeCuts = 0;

  constructor(readonly seed: number, private readonly options: { cycles?: number } = {}) {
    this.rng = new Rng(seed);
    this.numCores = this.rng.range(1, 3);
    this.fullEvery = this.rng.range(1, 4);
    this.maxRetained = this.rng.range(1, 3);
    this.live = Array.from({ length: this.numCores }, () => []);
  }

  private fail(message: string): never {
    failCrashRun(this.disk, 'recovery-crash', this.seed, message, this.trail);
  }

  private check(cond: boolean, message: string): asserts cond {
    if (!cond) this.fail(message);
  }

  private config(): PerCoreWalConfig {
    return new PerCoreWalConfig(WAL, this.numCores, {
      fs: this.disk, preallocate: this.rng.pick([0, 512]), bufferSize: 4096,
      clock: () => (this.clockNow += this.rng.bool(0.05) ? -BigInt(this.rng.int(2000)) : BigInt(this.rng.int(300))),
    });
  }

  private store(): CheckpointStore {
    return CheckpointStore.open({ checkpointDir: CKPT, fs: this.disk, fullEvery: this.fullEvery, maxRetained: this.maxRetained, onWarning: () => {} });
  }

  run(): SeedResult {
    const cycles = this.options.cycles ?? 4;
    let recovered: PerCoreRecoveredState | null = null;
    for (let c = 0; c < cycles; c++) {
      if (this.rng.bool(0.5)) this.disk.powerCut(this.rng.int(300), this.rng.fork(), randomCrashOptions(this.rng));
      try {
        let m: PerCoreWalManager;
        if (!this.created) {
          m = PerCoreWalManager.create(this.config());
          this.created = true;
        } else {
          m = PerCoreWalManager.open(this.config(), { minEpoch: recovered!.finalEpoch, minSequences: recovered!.nextSequences });
        }
        const coord = PerCoreCheckpointCoordinator.create(m, this.store());
        this.workload(m, coord, this.rng.range(0, 60));
      } catch (e) {
        if (this.disk.afterPowerCut === null) throw e;
      }
      let after: SimDisk;
      if (this.disk.afterPowerCut !== null) {
        after = this.disk.afterPowerCut;
      } else {
        this.verify(this.disk.crash(this.rng.fork(), randomCrashOptions(this.rng)), false);
        this.crashes++;
        after = this.disk.crash(this.rng.fork(), randomCrashOptions(this.rng));
      }
      this.disk = after;
      this.crashes++;
      this.trail.add(`crash: ${JSON.stringify(after.lastCrash)}`);
      recovered = this.verify(after, true);
    }
    return { iterations: this.steps, crashes: this.crashes };
  }

  private workload(m: PerCoreWalManager, coord: PerCoreCheckpointCoordinator, steps: number): void {
    for (let i = 0; i < steps; i++) {
      this.steps++;
      const r = this.rng.float();
      const c = this.rng.int(this.numCores);
      const w = m.writer(c);
      if (r < 0.5) {
        const key = Buffer.from(`k${this.rng.int(12)}`);
        const value = this.rng.bytes(this.rng.int(30));
        this.trail.add(`core ${c} put ${key}`);
        w.appendPut(key, value);
        this.record(m, c, PerCoreWalEntry.put(c, w.epoch(), w.sequence() - 1n, key, value, w.lastTimestampNs()));
      } else if (r < 0.62) {
        const key = Buffer.from(`k${this.rng.int(12)}`);
        this.trail.add(`core ${c} delete ${key}`);
        w.appendDelete(key);
        this.record(m, c, PerCoreWalEntry.delete(c, w.epoch(), w.sequence() - 1n, key, w.lastTimestampNs()));
      } else if (r < 0.67) {
        const offsets = new Map([[`src-${this.rng.int(3)}`, BigInt(this.rng.u32())]]);
        const wm = this.rng.bool(0.5) ? null : BigInt(this.rng.u32());
        this.trail.add(`core ${c} commit`);
        w.appendCommit(offsets, wm);
        this.record(m, c, PerCoreWalEntry.commit(c, w.epoch(), w.sequence() - 1n, offsets, wm, w.lastTimestampNs()));
      } else if (r < 0.77) {
        this.trail.add('syncAll');
        m.syncAll();
        this.markDurable(m);
      } else if (r < 0.83) {
        this.trail.add(`core ${c} sync`);
        w.sync();
        this.markDurable(m);
      } else if (r < 0.86) {
        this.trail.add(`advanceEpoch -> ${m.epoch() + 1n}`);
        m.advanceEpoch();
      } else if (r < 0.95) {
        this.checkpoint(m, coord, this.rng.bool(0.75));
      } else if (r < 0.97) {
        this.trail.add('crash-now (verified, goes on)');
        this.verify(this.disk.crash(this.rng.fork(), randomCrashOptions(this.rng)), false);
        this.crashes++;
      }
    }
    if (this.rng.bool(0.3)) m.close();
  }

  private record(m: PerCoreWalManager, c: number, entry: PerCoreWalEntry): void {
    this.live[c]!.push({ core: c, entry, end: m.writer(c).position(), covered: false, durable: false });
  }

  private markDurable(m: PerCoreWalManager): void {
    for (let c = 0; c < this.numCores; c++) {
      const s = m.writer(c).syncedPosition();
      for (const r of this.live[c]!) if (r.end <= s) r.durable = true;
    }
  }

  /** The model's view of a checkpoint taken now: the base plus every uncovered live record, in global order. */
  private fold(id: bigint): Snapshot {
    const folds = this.live.flat().filter((r) => !r.covered).sort((a, b) => PerCoreWalEntry.compare(a.entry, b.entry));
    const snap: Snapshot = { id, state: new Map(this.base.state), offsets: new Map(this.base.offsets), watermark: this.base.watermark, folds };
    for (const r of folds) apply(snap, r.entry);
    return snap;
  }

  private checkpoint(m: PerCoreWalManager, coord: PerCoreCheckpointCoordinator, reset: boolean): void {
    const id = this.nextId++;
    this.trail.add(`createCheckpoint${reset ? '' : 'NoTruncate'}(${id})`);
    const snap = this.fold(id);
    this.inFlight = snap;
    const meta = reset ? coord.createCheckpoint(id) : coord.createCheckpointNoTruncate(id);
    this.inFlight = null;
    this.checkpoints++;
    this.check(meta.checkpoint.id === id, `checkpoint id ${meta.checkpoint.id}, asked for ${id}`);
    this.adoptCheckpoint(snap, reset);
    // The barrier and syncAll made everything before the checkpoint durable.
    this.markDurable(m);
  }

  private adoptCheckpoint(snap: Snapshot, reset: boolean | null): void {
    for (const r of snap.folds) r.covered = true;
    this.snapshots.set(snap.id, snap);
    this.base = snap;
    if (reset === true) this.live = this.live.map(() => []);
  }

  /**
   * Recovers a crashed disk and compares the result with the model. With `adopt`, the
   * model moves on to what survived (the run continues on this disk).
   */
  private verify(d: SimDisk, adopt: boolean): PerCoreRecoveredState {
    const where = `(crash ${JSON.stringify(d.lastCrash)})`;
    let rec: PerCoreRecoveredState;
    const config = new PerCoreWalConfig(WAL, this.numCores, { fs: d });
    if (!this.created || !d.existsSync(`${WAL}/wal-0.log`)) {
      this.check(!this.created, `a segment was lost ${where}`);
      return { finalEpoch: 0n, nextSequences: this.live.map(() => 0n) } as unknown as PerCoreRecoveredState;
    }
    // A post-crash disk has nothing pending: crashing it again copies it, before recovery cuts tails.
    const pristine = this.rng.bool(0.5) ? d.crash(0) : null;
    try {
      rec = new PerCoreRecoveryManager(config, { checkpointDir: CKPT, fs: d, onWarning: () => {} }).recover();
    } catch (e) {
      return this.fail(`recover() after an ordinary crash failed: ${String((e as Error)?.stack ?? e)} ${where}`);
    }
    // Which checkpoint: the last one completed, or the one in flight if it became durable.
    let snap = this.base;
    if (rec.checkpointId !== (this.base.id === 0n ? null : this.base.id)) {
      const inFlight = this.inFlight;
      this.check(inFlight !== null && rec.checkpointId === inFlight.id,
        `recovered checkpoint ${rec.checkpointId}, the last durable one is ${this.base.id || 'none'}${inFlight ? ` (${inFlight.id} in flight)` : ''} ${where}`);
      snap = inFlight;
    }
    const covered = new Set<Rec>([...this.snapshotsUpTo(snap)].flatMap((s) => s.folds));
    // What the crashed segments hold, checked against what was written.
    const found: Rec[][] = [];
    for (let c = 0; c < this.numCores; c++) {
      const bySeq = new Map(this.live[c]!.map((r) => [r.entry.sequence, r]));
      const got: Rec[] = [];
      scanSegment(c, `${WAL}/wal-${c}.log`, {
        fs: d,
        onEntry: (e) => {
          if (e.operation.type === 'epochBarrier' || e.operation.type === 'checkpoint') return;
          const r = bySeq.get(e.sequence);
          this.check(r !== undefined && PerCoreWalEntry.compare(r.entry, e) === 0 && sameEntry(r.entry, e),
            `core ${c}: a ${e.operation.type} with sequence ${e.sequence} was never written ${where}`);
          got.push(r);
        },
      });
      for (const r of this.live[c]!) {
        if (r.durable && !covered.has(r) && !got.includes(r)) this.fail(`core ${c}: synced ${r.entry.operation.type} seq ${r.entry.sequence} lost ${where}`);
      }
      found.push(got);
    }
    const replay = found.flat().filter((r) => !covered.has(r)).sort((a, b) => PerCoreWalEntry.compare(a.entry, b.entry));
    const expect: Snapshot = { id: snap.id, state: new Map(snap.state), offsets: new Map(snap.offsets), watermark: snap.watermark, folds: [] };
    for (const r of replay) apply(expect, r.entry);
    this.compare(rec, expect, replay, where);
    if (pristine !== null) this.verifyPointInTime(pristine, snap, covered, found, where);
    if (adopt) {
      if (snap !== this.base) this.adoptCheckpoint(snap, null);
      this.inFlight = null;
      // The segments now hold what was found (recovery or the next open cuts the rest).
      for (const g of found) for (const r of g) { r.durable = true; if (covered.has(r)) r.covered = true; }
      this.live = found;
      const maxId = [...this.snapshots.keys()].reduce((a, b) => (a > b ? a : b), 0n);
      if (this.nextId <= maxId) this.nextId = maxId + 1n;
    }
    return rec;
  }

  /**
   * SPEC 9 on the same crash: in `pointInTime` mode a core whose segment ends in a bad
   * record may have lost entries of the epoch of its last valid one (or of the checkpoint's,
   * or 0, when it has none) and later, so no core replays that epoch or later; everything
   * before it is replayed as in the default mode.
   */
  private verifyPointInTime(p: SimDisk, snap: Snapshot, covered: Set<Rec>, found: Rec[][], where: string): void {
    let cutoff: bigint | null = null;
    let anyBad = false;
    for (let c = 0; c < this.numCores; c++) {
      let last: bigint | null = null;
      const scan = scanSegment(c, `${WAL}/wal-${c}.log`, { fs: p, onEntry: (e) => { last = e.epoch; } });
      if (scan.tail === 'clean') continue;
      anyBad = true;
      const lost: bigint = last ?? 0n;
      if (cutoff === null || lost < cutoff) cutoff = lost;
    }
    // absoluteConsistency: a torn tail is an error too; without one, the default result.
    let strict: unknown = null;
    try {
      new PerCoreRecoveryManager(new PerCoreWalConfig(WAL, this.numCores, { fs: p }), { checkpointDir: CKPT, fs: p, mode: 'absoluteConsistency', onWarning: () => {} }).recover();
    } catch (e) {
      strict = e;
    }
    if (anyBad) this.check(strict instanceof PerCoreWalError, `absoluteConsistency accepted a torn tail (${String(strict)}) ${where}`);
    else this.check(strict === null, `absoluteConsistency refused clean segments: ${String(strict)} ${where}`);
    let rec: PerCoreRecoveredState;
    try {
      rec = new PerCoreRecoveryManager(new PerCoreWalConfig(WAL, this.numCores, { fs: p }), { checkpointDir: CKPT, fs: p, mode: 'pointInTime', onWarning: () => {} }).recover();
    } catch (e) {
      return this.fail(`pointInTime recovery after an ordinary crash failed: ${String((e as Error)?.stack ?? e)} ${where}`);
    }
    const replay = found.flat().filter((r) => !covered.has(r) && (cutoff === null || r.entry.epoch < cutoff))
      .sort((a, b) => PerCoreWalEntry.compare(a.entry, b.entry));
    this.pointInTimeChecks++;
    if (replay.length < found.flat().filter((r) => !covered.has(r)).length) this.pointInTimeCuts++;
    const expect: Snapshot = { id: snap.id, state: new Map(snap.state), offsets: new Map(snap.offsets), watermark: snap.watermark, folds: [] };
    for (const r of replay) apply(expect, r.entry);
    this.compare(rec, expect, replay, `${where} (pointInTime, cutoff epoch ${cutoff})`);
  }

  private *snapshotsUpTo(snap: Snapshot): Generator<Snapshot> {
    for (const s of this.snapshots.values()) if (s.id <= snap.id) yield s;
    if (snap === this.inFlight) yield snap;
  }

  private compare(rec: PerCoreRecoveredState, expect: Snapshot, replay: Rec[], where: string): void {
    this.check(rec.state.size === expect.state.size, `recovered ${rec.state.size} keys, expected ${expect.state.size} ${where}`);
    for (const [k, v] of expect.state) {
      const got = rec.state.get(Buffer.from(k, 'hex'));
      this.check(got !== undefined && sameBytes(got, v), `key ${Buffer.from(k, 'hex')} recovered as ${got ? hex(got) : 'absent'}, expected ${hex(v)} ${where}`);
    }
    this.check(rec.sourceOffsets.size === expect.offsets.size && [...expect.offsets].every(([k, v]) => rec.sourceOffsets.get(k) === v),
      `source offsets ${JSON.stringify([...rec.sourceOffsets].map(([k, v]) => [k, String(v)]))}, expected ${JSON.stringify([...expect.offsets].map(([k, v]) => [k, String(v)]))} ${where}`);
    this.check(rec.watermark === expect.watermark, `watermark ${rec.watermark}, expected ${expect.watermark} ${where}`);
    const changes = replay.filter((r) => r.entry.isStateOperation());
    this.check(rec.stateChanges.length === changes.length, `${rec.stateChanges.length} changes replayed, expected ${changes.length} (each entry once) ${where}`);
    rec.stateChanges.forEach((ch, i) => {
      const e = changes[i]!.entry;
      const ok = ch.coreId === e.coreId && ch.epoch === e.epoch && sameBytes(ch.key, e.key()) &&
        (e.isPut() ? ch.value !== null && sameBytes(ch.value, e.value()) : ch.value === null);
      this.check(ok, `replayed change ${i} is core ${ch.coreId} ${Buffer.from(ch.key)}; expected core ${e.coreId} seq ${e.sequence} ${e.operation.type} ${Buffer.from(e.key()!)} (order) ${where}`);
    });
    for (let c = 0; c < this.numCores; c++) {
      const last = this.live[c]!.at(-1);
      if (last !== undefined && replay.some((r) => r.core === c)) {
        const maxSeq = replay.filter((r) => r.core === c).reduce((a, r) => (r.entry.sequence > a ? r.entry.sequence : a), -1n);
        this.check(rec.nextSequences[c]! > maxSeq, `core ${c} would resume at sequence ${rec.nextSequences[c]}, ${maxSeq} survived (SPEC 4)`);
      }
    }
  }
}

function sameEntry(a: PerCoreWalEntry, b: PerCoreWalEntry): boolean {
  const x = a.operation, y = b.operation;
  if (x.type !== y.type) return false;
  if (x.type === 'put' && y.type === 'put') return sameBytes(x.key, y.key) && sameBytes(x.value, y.value);
  if (x.type === 'delete' && y.type === 'delete') return sameBytes(x.key, y.key);
  if (x.type === 'commit' && y.type === 'commit') {
    return x.watermark === y.watermark && x.offsets.size === y.offsets.size && [...x.offsets].every(([k, v]) => y.offsets.get(k) === v);
  }
  return true;
}

function apply(s: Snapshot, e: PerCoreWalEntry): void {
  const op = e.operation;
  if (op.type === 'put') s.state.set(hex(op.key), Buffer.from(op.value));
  else if (op.type === 'delete') s.state.delete(hex(op.key));
  else if (op.type === 'commit') {
    for (const [k, v] of op.offsets) s.offsets.set(k, v);
    if (op.watermark !== null) s.watermark = op.watermark;
  }
}

export function runRecoveryCrashSeed(seed: number, options: { cycles?: number } = {}): SeedResult {
  return new RecoveryCrashRun(seed, options).run();
}

export const recoveryCrashSuite: TortureSuite = { name: 'recovery-crash', run: (seed) => runRecoveryCrashSeed(seed) };
