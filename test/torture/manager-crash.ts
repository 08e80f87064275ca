import {
  PerCoreWalConfig, PerCoreWalEntry, PerCoreWalError, PerCoreWalManager, scanSegment, type WalOperation,
} from '../../src/index.js';
import { Rng, SimDisk } from '../../src/testing/index.js';
import { describeEntry, failCrashRun, randomCrashOptions, sameOp, TortureFailure, Trail, type SeedResult, type TortureSuite } from './harness.js';

interface Rec {
  maybe?: boolean;
  pos: number;
  end: number;
  sequence: bigint;
  epoch: bigint;
  timestampNs: bigint;
  op: WalOperation;
}

interface Core {
  recs: Rec[];
  /** What the writer last promised durable. */
  claimed: number;
}

const BASE = '/data/wal';

/** Unwinds a cycle whose recovery failed with an injected I/O error. */
class OpenFailed extends Error {}

/**
 * The manager through simulated crashes: several cores, epoch advances, barriers, syncs
 * per core and for all, truncations, resets, clean closes and crashes (directories
 * included: the disk keeps `mkdir` pending until its parent is fsynced). After each crash
 * `PerCoreWalManager.open` must succeed (an ordinary crash never makes a WAL unopenable,
 * SPEC 6), every record below each core's last `syncedPosition()` must be there and every
 * record found must be the one written at that position, and the reopened WAL must resume
 * at the highest surviving epoch and each segment's next sequence, with new entries
 * ordering after every survivor (SPEC 5).
 */
export class ManagerCrashRun {
  private readonly rng: Rng;
  private readonly trail = new Trail();
  private disk: SimDisk;
  private cores: Core[];
  private readonly numCores: number;
  private clockNow: bigint;
  private lastClock = 0n;
  private readonly preallocate: number;
  crashes = 0;
  steps = 0;
  /** I/O failures the workload met (fault mode). */
  failures = 0;

  constructor(readonly seed: number, private readonly options: { faults?: boolean; cycles?: number } = {}) {
    this.rng = new Rng(seed);
    this.numCores = this.rng.range(1, 4);
    this.cores = Array.from({ length: this.numCores }, () => ({ recs: [], claimed: 0 }));
    this.clockNow = 1_000_000_000n + BigInt(this.rng.int(1 << 20));
    this.preallocate = this.rng.pick([0, 0, 512, 4096]);
    this.disk = new SimDisk({ volatileMkdir: true, seed });
  }

  private config(): PerCoreWalConfig {
    return new PerCoreWalConfig(BASE, this.numCores, {
      fs: this.disk,
      preallocate: this.preallocate,
      bufferSize: 4096,
      clock: () => {
        this.clockNow += this.rng.bool(0.08) ? -BigInt(this.rng.int(3000)) : BigInt(this.rng.int(500));
        this.lastClock = this.clockNow;
        return this.clockNow;
      },
    });
  }

  private fail(message: string): never {
    failCrashRun(this.disk, this.options.faults ? 'manager-faults' : 'manager-crash', this.seed, message, this.trail);
  }

  private check(cond: boolean, message: string): asserts cond {
    if (!cond) this.fail(message);
  }

  run(): SeedResult {
    const cycles = this.options.cycles ?? 3;
    for (let c = 0; c < cycles; c++) {
      // Sometimes the power goes at an arbitrary file-system call: inside create, open, truncateAll, syncAll.
      if (this.rng.bool(0.4)) this.disk.powerCut(this.rng.int(200), this.rng.fork(), randomCrashOptions(this.rng));
      try {
        let m: PerCoreWalManager;
        if (!this.created) {
          this.trail.add(`create ${this.numCores} cores`);
          m = PerCoreWalManager.create(this.config());
          this.created = true;
        } else {
          const failed = this.options.faults && this.rng.bool(0.25) && this.openWithFault();
          if (failed) throw new OpenFailed();
          m = this.open();
        }
        this.workload(m, this.rng.range(0, 50));
      } catch (e) {
        if (this.disk.afterPowerCut === null && !(e instanceof OpenFailed)) throw e;
      }
      if (this.disk.afterPowerCut !== null) this.recoverFromPowerCut();
      else this.crash();
    }
    return { iterations: this.steps, crashes: this.crashes };
  }

  /**
   * Recovery itself meets an I/O error: `open` must fail with a typed `IO` error (or
   * succeed if the fault missed), and the disk it leaves must still recover everything
   * synced after the crash that follows. Returns true when open failed.
   */
  private openWithFault(): boolean {
    const op = this.rng.pick(['ftruncateSync', 'fdatasyncSync', 'readSync', 'openSync', 'fstatSync'] as const);
    this.trail.add(`fault during open: ${op}`);
    this.disk.injectFault({ op, nth: this.rng.range(1, 4), code: this.rng.pick(['EIO', 'ENOSPC'] as const) });
    try {
      PerCoreWalManager.open(this.config()).close();
      this.disk.clearFaults();
      return false;
    } catch (e) {
      this.disk.clearFaults();
      if (this.disk.afterPowerCut !== null) throw e;
      this.check(e instanceof PerCoreWalError && e.code === 'IO' && typeof e.errno === 'number',
        `open with a failing ${op} threw ${String(e)}, expected IO with errno`);
      this.trail.add(`  -> ${e.code} errno ${e.errno}`);
      return true;
    }
  }

  /** True once `create` has returned: from then on every segment must survive. */
  private created = false;
  /** Per core, the position a running truncateAll/resetAll cuts to. */
  private truncating: number[] | null = null;

  private recoverFromPowerCut(): void {
    const after = this.disk.afterPowerCut!;
    this.disk = after; // failures are real again from here on
    this.crashes++;
    this.trail.add(`power cut: ${JSON.stringify(after.lastCrash)}`);
    if (this.truncating !== null) {
      this.cores.forEach((core, c) => {
        const to = this.truncating![c]!;
        for (const r of core.recs) if (r.end > to) r.maybe = true;
        if (core.claimed > to) core.claimed = to;
      });
      this.truncating = null;
    }
    this.adopt(after, this.verify(after));
  }

  private adopt(after: SimDisk, kept: number[]): void {
    this.disk = after;
    this.cores.forEach((core, c) => {
      core.recs = core.recs.slice(0, kept[c]);
      for (const r of core.recs) {
        if (!r.maybe) continue;
        r.maybe = false;
        if (r.end < 0) r.end = scanSegment(c, `${BASE}/wal-${c}.log`, { fs: after }).validEnd;
      }
    });
  }

  private open(): PerCoreWalManager {
    let m: PerCoreWalManager;
    try {
      m = PerCoreWalManager.open(this.config());
    } catch (e) {
      this.fail(`open after an ordinary crash failed: ${String((e as Error)?.stack ?? e)}`);
    }
    this.trail.add(`open: ${m.openReport().map((r) => `${r.tail}@${r.validEnd}${r.bytesCut ? ` cut ${r.bytesCut}` : ''}`).join(' ')}`);
    let maxEpoch = 0n;
    for (const c of this.cores) for (const r of c.recs) if (r.epoch > maxEpoch) maxEpoch = r.epoch;
    this.check(m.epoch() === maxEpoch, `open resumed at epoch ${m.epoch()}, highest surviving is ${maxEpoch} (SPEC 5)`);
    const survivors = m.mergeSegments();
    for (let i = 1; i < survivors.length; i++) {
      this.check(PerCoreWalEntry.compare(survivors[i - 1]!, survivors[i]!) < 0, `merge out of order at ${i}`);
    }
    for (let c = 0; c < this.numCores; c++) {
      const w = m.writer(c);
      const last = this.cores[c]!.recs.at(-1);
      this.check(w.position() === (last?.end ?? 0), `core ${c} resumed at ${w.position()}, valid end ${last?.end ?? 0}`);
      this.check(w.sequence() === (last === undefined ? 0n : last.sequence + 1n), `core ${c} resumed at sequence ${w.sequence()} (SPEC 5)`);
      this.check(w.epoch() === m.epoch(), `core ${c} at epoch ${w.epoch()}, global ${m.epoch()}`);
      this.cores[c]!.claimed = w.syncedPosition();
    }
    // New entries order after every survivor, whatever the clock does.
    if (survivors.length > 0 && this.rng.bool(0.5)) {
      const c = this.rng.int(this.numCores);
      this.clockNow -= 10_000n; // the wall clock stepped back across the restart
      this.append(m, c, 'put');
      const fresh = this.cores[c]!.recs.at(-1)!;
      const e = PerCoreWalEntry.put(c, fresh.epoch, fresh.sequence, Buffer.alloc(0), Buffer.alloc(0), fresh.timestampNs);
      for (const s of survivors) this.check(PerCoreWalEntry.compare(s, e) < 0, `a new entry of core ${c} orders before survivor ${describeEntry(s)} (SPEC 5)`);
    }
    return m;
  }

  private append(m: PerCoreWalManager, c: number, kind: 'put' | 'delete' | 'commit'): void {
    const w = m.writer(c);
    const prevTs = w.lastTimestampNs();
    const seq = w.sequence();
    const pos = w.position();
    let op: WalOperation;
    if (kind === 'put') op = { type: 'put', key: Buffer.from(`k${this.rng.int(30)}`), value: this.rng.bytes(this.rng.bool(0.9) ? this.rng.int(80) : this.rng.range(100, 5000)) };
    else if (kind === 'delete') op = { type: 'delete', key: Buffer.from(`k${this.rng.int(30)}`) };
    else op = { type: 'commit', offsets: new Map([[`p${c}`, BigInt(this.rng.u32())]]), watermark: this.rng.bool(0.5) ? null : BigInt(this.rng.u32()) };
    this.trail.add(`core ${c} ${kind} seq ${seq} at ${pos}`);
    const rec: Rec = { maybe: true, pos, end: -1, sequence: seq, epoch: w.epoch(), timestampNs: 0n, op };
    this.cores[c]!.recs.push(rec);
    const at = op.type === 'put' ? w.appendPut(op.key, op.value) : op.type === 'delete' ? w.appendDelete(op.key) : w.appendCommit((op as { offsets: Map<string, bigint> }).offsets, (op as { watermark: bigint | null }).watermark);
    this.check(at === pos, `core ${c} append returned ${at}, expected ${pos}`);
    rec.maybe = false;
    rec.end = w.position();
    rec.timestampNs = this.lastClock > prevTs ? this.lastClock : prevTs;
    this.check(w.lastTimestampNs() === rec.timestampNs, `core ${c} timestamp ${w.lastTimestampNs()}, expected ${rec.timestampNs} (SPEC 4)`);
  }

  private barrierAll(m: PerCoreWalManager): void {
    this.trail.add(`writeEpochBarrierAll @${m.epoch()}`);
    // Recorded first as records that may exist: if one core fails, the others' barriers may be on disk.
    const recs = this.cores.map((core, c) => {
      const w = m.writer(c);
      const rec: Rec = { maybe: true, pos: w.position(), end: -1, sequence: w.sequence(), epoch: w.epoch(), timestampNs: w.lastTimestampNs(), op: { type: 'epochBarrier', epoch: w.epoch() } };
      core.recs.push(rec);
      return rec;
    });
    m.writeEpochBarrierAll();
    recs.forEach((rec, c) => {
      const w = m.writer(c);
      rec.timestampNs = this.lastClockFor(c, rec.timestampNs, w.lastTimestampNs());
      rec.end = w.position();
      rec.maybe = false;
    });
  }

  /** Barriers of several cores are stamped by several clock reads; the writer's own value is checked against its floor. */
  private lastClockFor(c: number, prevTs: bigint, got: bigint): bigint {
    this.check(got >= prevTs, `core ${c} timestamp went back from ${prevTs} to ${got} (SPEC 4)`);
    return got;
  }

  private workload(m: PerCoreWalManager, steps: number): void {
    for (let i = 0; i < steps; i++) {
      this.steps++;
      if (this.options.faults && this.rng.bool(0.06)) this.injectOne();
      const before = m.syncedPositions();
      let recurse = false;
      try {
        recurse = this.step(m, steps - i - 1);
      } catch (e) {
        if (e instanceof TortureFailure) throw e;
        if (!(e instanceof PerCoreWalError)) this.fail(`untyped failure: ${String((e as Error)?.stack ?? e)}`);
        if (!this.options.faults) this.fail(`unexpected ${e.code}: ${e.message}`);
        this.check(e.code === 'IO' && typeof e.errno === 'number' && e.errno > 0, `a failed operation reported ${e.code} (errno ${e.errno}), expected IO with errno: ${e.message}`);
        this.trail.add(`  -> ${e.code} errno ${e.errno} on core ${e.coreId}`);
        this.afterFailure(m, before);
        return;
      }
      if (recurse) return;
      for (let k = 0; k < this.numCores; k++) {
        // Claims go down only through truncation.
        this.cores[k]!.claimed = m.writer(k).syncedPosition();
      }
    }
    this.disk.clearFaults();
    if (this.rng.bool(0.4)) {
      this.trail.add('close');
      m.close();
    }
  }

  private injectOne(): void {
    const op = this.rng.pick(['writeSync', 'fdatasyncSync', 'fdatasyncSync', 'ftruncateSync'] as const);
    const code = this.rng.pick(['EIO', 'ENOSPC'] as const);
    const core = this.rng.int(this.numCores + 1);
    const path = core === this.numCores ? undefined : `${BASE}/wal-${core}.log`;
    this.trail.add(`fault: ${op} ${code} on ${path ?? 'any file'}`);
    this.disk.injectFault({ op, code, path, nth: this.rng.range(1, 3), partial: this.rng.bool(0.5) });
  }

  /** After a failure: poisoned writers refuse everything and claim nothing new; then the process dies. */
  private afterFailure(m: PerCoreWalManager, before: number[]): void {
    this.failures++;
    this.disk.clearFaults();
    let poisoned = 0;
    for (let k = 0; k < this.numCores; k++) {
      const w = m.writer(k);
      if (!w.isPoisoned()) continue;
      poisoned++;
      this.check(w.syncedPosition() === before[k], `core ${k}: syncedPosition moved from ${before[k]} to ${w.syncedPosition()} in the failed operation (SPEC 1)`);
      for (const [name, f] of [['appendPut', () => w.appendPut(Buffer.from('x'), Buffer.from('y'))], ['sync', () => w.sync()]] as const) {
        let code = '';
        try { f(); } catch (e) { code = (e as PerCoreWalError).code; }
        this.check(code === 'POISONED', `core ${k}: ${name} on a poisoned writer gave ${code || 'success'} (SPEC 3)`);
      }
    }
    this.check(poisoned > 0, 'an I/O failure poisoned no writer');
    for (let k = 0; k < this.numCores; k++) this.cores[k]!.claimed = m.writer(k).syncedPosition();
  }

  /** One random step; true when it handed the rest of the workload to a reopened manager. */
  private step(m: PerCoreWalManager, remaining: number): boolean {
    {
      const r = this.rng.float();
      const c = this.rng.int(this.numCores);
      if (r < 0.45) this.append(m, c, 'put');
      else if (r < 0.55) this.append(m, c, 'delete');
      else if (r < 0.6) this.append(m, c, 'commit');
      else if (r < 0.65) {
        const before = m.epoch();
        const e = m.advanceEpoch();
        this.trail.add(`advanceEpoch -> ${e}`);
        this.check(e === before + 1n, `advanceEpoch from ${before} gave ${e}`);
        for (let k = 0; k < this.numCores; k++) this.check(m.writer(k).epoch() === e, `core ${k} not moved to epoch ${e}`);
      } else if (r < 0.68) this.barrierAll(m);
      else if (r < 0.69) {
        let code = '';
        try { m.setEpochAll(m.epoch() > 0n ? m.epoch() - 1n : -1); } catch (e) { code = (e as PerCoreWalError).code; }
        this.check(code === 'EPOCH_MISMATCH' || (m.epoch() === 0n && code === 'INVALID_ARGUMENT'), `lowering the epoch gave ${code || 'no error'}`);
      } else if (r < 0.8) {
        this.trail.add('syncAll');
        m.syncAll();
        const sp = m.syncedPositions(), p = m.positions();
        for (let k = 0; k < this.numCores; k++) this.check(sp[k] === p[k], `after syncAll core ${k} synced ${sp[k]} of ${p[k]}`);
      } else if (r < 0.88) {
        this.trail.add(`core ${c} sync`);
        m.writer(c).sync();
      } else if (r < 0.9) {
        const to = this.cores.map((core) => this.rng.pick([0, ...core.recs.map((x) => x.end)]));
        this.trail.add(`truncateAll(${to.join(',')})`);
        this.truncating = to;
        m.truncateAll(to);
        this.truncating = null;
        this.cores.forEach((core, k) => { core.recs = core.recs.filter((x) => x.end <= to[k]!); });
      } else if (r < 0.91) {
        this.trail.add('resetAll');
        this.truncating = this.cores.map(() => 0);
        m.resetAll();
        this.truncating = null;
        for (const core of this.cores) core.recs = [];
      } else if (r < 0.93) {
        this.trail.add('close + open (no crash)');
        this.disk.clearFaults();
        m.close();
        const m2 = this.open();
        // Carry on with the new manager for the remaining steps.
        this.workload(m2, remaining);
        return true;
      } else if (r < 0.95) {
        this.trail.add('crash-now (mid-workload, verified, writer goes on)');
        this.verify(this.disk.crash(this.rng.fork(), randomCrashOptions(this.rng)));
        this.crashes++;
      } else this.append(m, c, 'put');
    }
    return false;
  }

  private crash(): void {
    for (let v = 0; v < 2; v++) {
      this.verify(this.disk.crash(this.rng.fork(), randomCrashOptions(this.rng)));
      this.crashes++;
    }
    const after = this.disk.crash(this.rng.fork(), randomCrashOptions(this.rng));
    this.crashes++;
    this.trail.add(`crash: ${JSON.stringify(after.lastCrash)}`);
    this.adopt(after, this.verify(after));
  }

  /** Checks every segment of a crashed disk against the model; returns per core how many records survived. */
  private verify(d: SimDisk): number[] {
    const where = `(crash ${JSON.stringify(d.lastCrash)})`;
    return this.cores.map((core, c) => {
      const path = `${BASE}/wal-${c}.log`;
      if (!this.created && !d.existsSync(path)) return 0; // power cut inside the first create
      this.check(d.existsSync(path), `segment ${path} lost in a crash ${where}`);
      const found: { e: PerCoreWalEntry; at: number }[] = [];
      const scan = scanSegment(c, path, { fs: d, onEntry: (e, at) => found.push({ e, at }) });
      this.check(scan.tail !== 'damaged', `core ${c}: an ordinary crash left a damaged tail at ${scan.bad?.position} ${where}`);
      const mustHave = core.recs.filter((r) => !r.maybe && r.end <= core.claimed).length;
      this.check(found.length >= mustHave, `core ${c}: ${found.length} records survived, ${mustHave} were below syncedPosition ${core.claimed} (SPEC 1) ${where}`);
      this.check(found.length <= core.recs.length, `core ${c}: ${found.length} records found, ${core.recs.length} written ${where}`);
      found.forEach(({ e, at }, i) => {
        const m = core.recs[i]!;
        const ok = at === m.pos && e.sequence === m.sequence && e.epoch === m.epoch && e.coreId === c &&
          (m.maybe || e.timestampNs === m.timestampNs) && sameOp(e.operation, m.op);
        this.check(ok, `core ${c} record ${i} at ${at} is ${describeEntry(e)}; written was seq ${m.sequence} epoch ${m.epoch} ts ${m.timestampNs} ${m.op.type} at ${m.pos} ${where}`);
      });
      return found.length;
    });
  }
}

export function runManagerCrashSeed(seed: number, options: { cycles?: number; faults?: boolean } = {}): SeedResult {
  return new ManagerCrashRun(seed, options).run();
}

export const managerCrashSuite: TortureSuite = { name: 'manager-crash', run: (seed) => runManagerCrashSeed(seed) };
export const managerFaultSuite: TortureSuite = { name: 'manager-faults', run: (seed) => runManagerCrashSeed(seed, { faults: true }) };
