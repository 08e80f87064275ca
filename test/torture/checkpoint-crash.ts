import {
  CheckpointStore, PerCoreCheckpointCoordinator, PerCoreRecoveryManager, PerCoreWalConfig, PerCoreWalError, PerCoreWalManager, scanSegment,
  type PerCoreRecoveredState,
} from '../../src/index.js';
import { Rng, SimDisk } from '../../src/testing/index.js';
import { randomCrashOptions, TortureFailure, Trail, type SeedResult, type TortureSuite } from './harness.js';

const WAL = '/data/wal';
const CP = '/data/checkpoints';

type Kind = 'put' | 'delete' | 'commit';

interface Op {
  core: number;
  kind: Kind;
  key: string;
  value: string;
  sequence: bigint;
  /** Segment position just past the record (in the segment as it was when appended). */
  end: number;
  /** Promised durable: below its writer's syncedPosition() at some point. */
  promised: boolean;
  /** Not promised and not found after a crash: gone for good. */
  lost: boolean;
  /** Appended in the current life (since the last restart). */
  life: number;
}

/**
 * Checkpoints and recovery on a simulated disk that loses power. Each life restarts the
 * way a process does — recover, repair, reopen the WAL at the recovered epoch and
 * sequences, open the store, tie a coordinator to them — then appends on random cores,
 * syncs, checkpoints (with and without truncation) and cleans up old checkpoints; the
 * power goes at a random call (inside a checkpoint, a reset, a rename, the restart
 * itself) or after the life. After every crash, recovery must yield exactly the state of
 * a plain model: every promised operation, plus per core a prefix of the rest (as many as
 * the crashed segment holds), each replayed once, in order, on top of the checkpoint.
 */
export class CheckpointCrashRun {
  private readonly rng: Rng;
  private readonly trail = new Trail();
  private disk: SimDisk;
  private readonly numCores: number;
  private readonly preallocate: number;
  private readonly ops: Op[] = [];
  /** Checkpoint id -> ops issued before its call (all promised by the time it is durable). */
  private readonly covers = new Map<bigint, number>();
  private nextId = 1n;
  private clock = 1_000_000n;
  private life = 0;
  crashes = 0;
  steps = 0;

  /** I/O failures met (fault mode). */
  failures = 0;

  constructor(readonly seed: number, private readonly lives = 4, private readonly faults = false) {
    this.rng = new Rng(seed);
    this.numCores = this.rng.range(1, 3);
    this.preallocate = this.rng.pick([0, 0, 512, 4096]);
    this.disk = new SimDisk({ seed, volatileMkdir: true });
  }

  private config(): PerCoreWalConfig {
    // One clock for every core, always moving on: the global order is the order of the ops.
    return new PerCoreWalConfig(WAL, this.numCores, { fs: this.disk, preallocate: this.preallocate, bufferSize: 4096, clock: () => (this.clock += 7n) });
  }

  private fail(message: string): never {
    throw new TortureFailure(this.faults ? 'checkpoint-faults' : 'checkpoint-crash', this.seed, message, this.trail.all);
  }

  run(): SeedResult {
    for (this.life = 0; this.life < this.lives; this.life++) {
      if (this.rng.bool(0.6)) this.disk.powerCut(this.rng.int(400), this.rng.fork(), randomCrashOptions(this.rng));
      try {
        this.liveOnce();
      } catch (e) {
        if (this.disk.afterPowerCut === null) throw e;
      }
      const after = this.disk.afterPowerCut ?? this.disk.crash(this.rng.fork(), randomCrashOptions(this.rng));
      this.trail.add(`crash: ${JSON.stringify(after.lastCrash)}`);
      this.disk = after;
      this.crashes++;
      this.verify();
    }
    return { iterations: this.steps, crashes: this.crashes };
  }

  /** A restart, then a workload. Throws only when the power is cut. */
  private liveOnce(): void {
    const cfg = this.config();
    const rm = new PerCoreRecoveryManager(cfg, { checkpointDir: CP });
    const r = rm.recover();
    rm.repairAllSegments();
    this.trail.add(`restart: checkpoint ${r.checkpointId}, epoch ${r.finalEpoch}, sequences ${r.nextSequences.join(',')}`);
    const wal = PerCoreWalManager.create(cfg, { minEpoch: r.finalEpoch, minSequences: r.nextSequences });
    const store = CheckpointStore.open({ checkpointDir: CP, fs: this.disk, fullEvery: this.rng.range(1, 4), maxRetained: this.rng.range(1, 3) });
    const coord = PerCoreCheckpointCoordinator.create(wal, store);
    for (let i = 0, n = this.rng.range(5, 40); i < n; i++) {
      this.steps++;
      if (this.faults && this.rng.bool(0.1)) this.injectOne();
      try {
        this.step(wal, coord);
      } catch (e) {
        if (this.disk.afterPowerCut !== null || e instanceof TortureFailure) throw e;
        if (!this.faults) throw e;
        // An injected failure: typed, with the errno; then this process dies (a crash follows).
        if (!(e instanceof PerCoreWalError) || (e.code !== 'IO' && e.code !== 'POISONED') || (e.code === 'IO' && typeof e.errno !== 'number')) {
          this.fail(`a failed operation threw ${String((e as Error)?.stack ?? e)}, expected a PerCoreWalError IO with errno`);
        }
        this.failures++;
        this.trail.add(`  -> ${e.code} errno ${e.errno}: ${e.message.slice(0, 120)}`);
        this.disk.clearFaults();
        return;
      }
      this.claim(wal);
    }
    this.disk.clearFaults();
    if (this.rng.bool(0.5)) { this.trail.add('close'); wal.close(); }
  }

  private injectOne(): void {
    const op = this.rng.pick(['writeSync', 'fsyncSync', 'fdatasyncSync', 'renameSync', 'fsyncDir', 'unlinkSync', 'ftruncateSync', 'readSync'] as const);
    const code = this.rng.pick(['EIO', 'ENOSPC'] as const);
    const path = this.rng.pick([undefined, /checkpoint/, /wal-/]);
    this.trail.add(`fault: ${op} ${code} on ${path ?? 'any file'}`);
    this.disk.injectFault({ op, code, path, nth: this.rng.range(1, 4), partial: this.rng.bool(0.5) });
  }

  private step(wal: PerCoreWalManager, coord: PerCoreCheckpointCoordinator): void {
    {
      const x = this.rng.float();
      if (x < 0.55) this.append(wal, this.rng.int(this.numCores));
      else if (x < 0.7) { this.trail.add('syncAll'); wal.syncAll(); }
      else if (x < 0.8) { const c = this.rng.int(this.numCores); this.trail.add(`core ${c} sync`); wal.writer(c).sync(); }
      else if (x < 0.9) this.checkpoint(coord, wal, true);
      else if (x < 0.95) this.checkpoint(coord, wal, false);
      else { const k = this.rng.range(1, 3); this.trail.add(`cleanupOldCheckpoints(${k})`); coord.cleanupOldCheckpoints(k); }
    }
  }

  private append(wal: PerCoreWalManager, core: number): void {
    const w = wal.writer(core);
    const kind: Kind = this.rng.pick(['put', 'put', 'put', 'delete', 'commit']);
    const op: Op = {
      core, kind, key: `k${this.rng.int(8)}`, value: `v${this.seed}.${this.ops.length}`, sequence: w.sequence(), end: -1,
      promised: false, lost: false, life: this.life,
    };
    this.trail.add(`core ${core} ${kind} ${op.key} seq ${op.sequence}`);
    this.ops.push(op);
    if (kind === 'put') w.appendPut(Buffer.from(op.key), Buffer.from(op.value));
    else if (kind === 'delete') w.appendDelete(Buffer.from(op.key));
    else w.appendCommit({ [`src${core}`]: this.ops.length }, this.ops.length);
    op.end = w.position();
  }

  private checkpoint(coord: PerCoreCheckpointCoordinator, wal: PerCoreWalManager, truncate: boolean): void {
    const id = this.nextId++;
    this.trail.add(`createCheckpoint${truncate ? '' : 'NoTruncate'}(${id})`);
    this.covers.set(id, this.ops.length);
    const m = truncate ? coord.createCheckpoint(id) : coord.createCheckpointNoTruncate(id);
    // It synced everything first: all ops so far are promised.
    for (const op of this.ops) if (!op.lost) op.promised = true;
    if (truncate && wal.totalSize() !== 0) this.fail(`segments not reset after checkpoint ${id}`);
    this.trail.add(`  -> ${m.checkpoint.isIncremental ? 'incremental' : 'full'}, ${m.entriesMerged} merged`);
  }

  /** Marks ops below each writer's syncedPosition promised (positions restart at 0 only after a checkpoint promised everything). */
  private claim(wal: PerCoreWalManager): void {
    const synced = wal.syncedPositions();
    for (const op of this.ops) if (!op.promised && !op.lost && op.life === this.life && op.end <= synced[op.core]!) op.promised = true;
  }

  /** After a crash: recovery must give the model's state exactly; ops not recovered are lost for good. */
  private verify(): void {
    let r: PerCoreRecoveredState;
    try {
      r = new PerCoreRecoveryManager(this.config(), { checkpointDir: CP }).recover();
    } catch (e) {
      this.fail(`recovery after an ordinary crash failed: ${String((e as Error)?.stack ?? e)}`);
    }
    const covered = r.checkpointId === null ? 0 : this.covers.get(r.checkpointId);
    if (covered === undefined) this.fail(`recovered checkpoint ${r.checkpointId}, which was never created`);
    // Per core, how many of its unpromised ops survive: those the crashed segment still holds.
    // Ops the recovered checkpoint holds are durable through it, promised or not (a crash
    // inside createCheckpoint after the file was durable).
    const kept = new Set<Op>(this.ops.filter((op, i) => i < covered && !op.lost));
    for (let c = 0; c < this.numCores; c++) {
      const pending = this.ops.filter((op, i) => op.core === c && !op.promised && !op.lost && i >= covered);
      if (pending.length === 0) continue;
      const first = pending[0]!.sequence;
      const seen = new Set<bigint>();
      const path = `${WAL}/wal-${c}.log`;
      if (this.disk.existsSync(path)) {
        scanSegment(c, path, { fs: this.disk, onEntry: (e) => { if (e.sequence >= first && !e.isEpochBarrier()) seen.add(e.sequence); } });
      }
      let prefix = true;
      for (const op of pending) {
        if (prefix && seen.has(op.sequence)) kept.add(op);
        else prefix = false;
      }
    }
    const kv = new Map<string, string>();
    const offsets = new Map<string, bigint>();
    let watermark: bigint | null = null;
    const replay: string[] = [];
    this.ops.forEach((op, i) => {
      if (op.lost || (!op.promised && !kept.has(op))) return;
      if (op.kind === 'put') kv.set(op.key, op.value);
      else if (op.kind === 'delete') kv.delete(op.key);
      else { offsets.set(`src${op.core}`, BigInt(i + 1)); watermark = BigInt(i + 1); }
      if (i >= covered && op.kind !== 'commit') replay.push(op.kind === 'put' ? `${op.key}=${op.value}` : `${op.key}=∅`);
    });
    const got = new Map([...r.state.entries()].map(([k, v]) => [Buffer.from(k).toString(), Buffer.from(v).toString()]));
    const same = got.size === kv.size && [...kv].every(([k, v]) => got.get(k) === v);
    if (!same) this.fail(`recovered state ${JSON.stringify([...got])} != model ${JSON.stringify([...kv])} (checkpoint ${r.checkpointId}) ${JSON.stringify(this.disk.lastCrash)}`);
    const replayed = r.stateChanges.map((c) => `${Buffer.from(c.key).toString()}=${c.value === null ? '∅' : Buffer.from(c.value).toString()}`);
    if (replayed.join() !== replay.join()) {
      this.fail(`replayed after checkpoint ${r.checkpointId}: ${JSON.stringify(replayed)}, expected ${JSON.stringify(replay)} (each op once, in order)`);
    }
    const sameOffsets = offsets.size === r.sourceOffsets.size && [...offsets].every(([k, v]) => r.sourceOffsets.get(k) === v);
    if (!sameOffsets || r.watermark !== watermark) this.fail(`offsets/watermark ${JSON.stringify([...r.sourceOffsets].map(([k, v]) => [k, String(v)]))}/${r.watermark}, model ${JSON.stringify([...offsets].map(([k, v]) => [k, String(v)]))}/${watermark}`);
    for (const op of this.ops) {
      if (op.promised || op.lost) continue;
      if (kept.has(op)) op.promised = true; else op.lost = true;
    }
    this.trail.add(`verified: checkpoint ${r.checkpointId}, ${kv.size} keys, ${replay.length} replayed`);
  }
}

export function runCheckpointCrashSeed(seed: number, options: { lives?: number; faults?: boolean } = {}): SeedResult {
  return new CheckpointCrashRun(seed, options.lives ?? 4, options.faults ?? false).run();
}

export const checkpointCrashSuite: TortureSuite = { name: 'checkpoint-crash', run: (seed) => runCheckpointCrashSeed(seed) };
export const checkpointFaultSuite: TortureSuite = { name: 'checkpoint-faults', run: (seed) => runCheckpointCrashSeed(seed, { faults: true }) };
