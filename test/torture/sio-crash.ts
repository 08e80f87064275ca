import {
  CoreWalWriter, PerCoreWalEntry, PerCoreWalError, registerWriterSegment, scanSegment, SyncStorageIo,
  type IoCompletion, type IoFd, type WalOperation,
} from '../../src/index.js';
import { FaultInjectingStorageIo, Rng, SimDisk, type HoldHandle } from '../../src/testing/index.js';
import { describeEntry, failCrashRun, PowerCutSignal, randomCrashOptions, sameOp, TortureFailure, Trail, type SeedResult, type TortureSuite } from './harness.js';

interface Rec {
  pos: number;
  end: number;
  sequence: bigint;
  epoch: bigint;
  timestampNs: bigint;
  syncedBoundary: number;
  op: WalOperation;
}

const SEG = '/wal/wal-0.log';

/**
 * The writer's StorageIo path through crashes: appends and datasyncs submitted to a
 * {@link SyncStorageIo} on a {@link SimDisk}, wrapped in a {@link FaultInjectingStorageIo}
 * that reorders completion batches, holds datasync and write completions back, and (in
 * fault mode) fails writes and datasyncs or makes writes short. After each crash, every
 * record below the last `syncedPosition()` must be there and every record found must be
 * the one submitted at that position (SPEC 1, 2, 3); a failure poisons the writer.
 */
export class SioCrashRun {
  private readonly rng: Rng;
  private readonly trail = new Trail();
  private disk = new SimDisk();
  private model: Rec[] = [];
  private claimed = 0;
  private clockNow = 5_000_000_000n;
  private lastClock = 0n;
  private readonly preallocate: number;
  private created = false;
  crashes = 0;
  steps = 0;
  failures = 0;

  constructor(readonly seed: number, private readonly options: { faults?: boolean; cycles?: number } = {}) {
    this.rng = new Rng(seed);
    this.preallocate = this.rng.pick([0, 0, 1024, 16384]);
    this.disk.mkdirSync('/wal');
  }

  private get suite(): string { return this.options.faults ? 'sio-faults' : 'sio-crash'; }

  private fail(message: string): never {
    failCrashRun(this.disk, this.suite, this.seed, message, this.trail);
  }

  private check(cond: boolean, message: string): asserts cond {
    if (!cond) this.fail(message);
  }

  run(): SeedResult {
    const cycles = this.options.cycles ?? 4;
    for (let c = 0; c < cycles; c++) {
      if (this.rng.bool(0.4)) this.disk.powerCut(this.rng.int(150), this.rng.fork(), randomCrashOptions(this.rng));
      try {
        this.cycle();
      } catch (e) {
        if (this.disk.afterPowerCut === null) throw e;
      }
      let after: SimDisk;
      if (this.disk.afterPowerCut !== null) {
        after = this.disk.afterPowerCut;
        this.disk = after;
      } else {
        for (let v = 0; v < 2; v++) { this.verify(this.disk.crash(this.rng.fork(), randomCrashOptions(this.rng))); this.crashes++; }
        after = this.disk.crash(this.rng.fork(), randomCrashOptions(this.rng));
      }
      this.crashes++;
      this.trail.add(`crash: ${JSON.stringify(after.lastCrash?.files)}`);
      const kept = this.verify(after);
      this.disk = after;
      this.model = this.model.slice(0, kept);
    }
    return { iterations: this.steps, crashes: this.crashes };
  }

  private cycle(): void {
    const opts = {
      fs: this.disk, preallocate: this.preallocate, bufferSize: 4096,
      clock: () => {
        this.clockNow += this.rng.bool(0.05) ? -BigInt(this.rng.int(4000)) : BigInt(this.rng.int(700));
        this.lastClock = this.clockNow;
        return this.clockNow;
      },
    };
    let w: CoreWalWriter;
    if (!this.created) {
      w = CoreWalWriter.create(0, SEG, opts);
      this.created = true;
    } else {
      const scan = scanSegment(0, SEG, { fs: this.disk });
      this.trail.add(`openAt(${scan.validEnd}) (${scan.tail})`);
      w = CoreWalWriter.openAt(0, SEG, scan.validEnd, opts);
    }
    this.claimed = w.syncedPosition();
    this.resumePos = w.position();
    this.syncs.clear();
    this.covered = 0;
    const inner = new SyncStorageIo({ fs: this.disk });
    const sio = new FaultInjectingStorageIo(inner, {
      reorder: this.rng.pick(['none', 'reverse', 'shuffle'] as const), seed: this.rng.u32(),
      afterFailure: this.rng.pick(['cancel', 'cancel', 'cancelWrites'] as const),
    });
    const fd = registerWriterSegment(w, sio, { fs: this.disk });
    const holds: HoldHandle[] = [];
    const steps = this.rng.range(0, 60);
    for (let i = 0; i < steps; i++) {
      this.steps++;
      try {
        this.step(w, sio, fd, holds);
      } catch (e) {
        if (e instanceof TortureFailure || e instanceof PowerCutSignal) throw e;
        if (!(e instanceof PerCoreWalError)) this.fail(`untyped failure: ${String((e as Error)?.stack ?? e)}`);
        if (!this.options.faults) this.fail(`unexpected ${e.code}: ${e.message}`);
        this.check(e.code === 'IO', `a failed operation reported ${e.code}: ${e.message}`);
        this.failures++;
        this.trail.add(`  -> IO errno ${e.errno}: poisoned`);
        this.expectPoisoned(w, sio, fd);
        break;
      }
      this.check(w.syncedPosition() >= this.claimed, `syncedPosition went back from ${this.claimed} to ${w.syncedPosition()}`);
      this.claimed = w.syncedPosition();
      this.check(this.claimed <= w.position(), 'syncedPosition past position');
    }
    // The process dies with whatever is in flight; sometimes it drains first.
    if (this.rng.bool(0.3) && !w.isPoisoned()) {
      for (const h of holds) h.release();
      try { this.drain(w, sio); } catch (e) { if (!(e instanceof PerCoreWalError) || !this.options.faults) throw e; }
      this.claimed = w.syncedPosition();
    }
  }

  private expectPoisoned(w: CoreWalWriter, sio: FaultInjectingStorageIo, fd: IoFd): void {
    const before = w.syncedPosition();
    for (const [name, f] of [
      ['appendPutViaStorageIo', () => w.appendPutViaStorageIo(Buffer.from('x'), Buffer.from('y'), sio, fd)],
      ['syncViaStorageIo', () => w.syncViaStorageIo(sio, fd)],
      ['appendPut', () => w.appendPut(Buffer.from('x'), Buffer.from('y'))],
      ['sync', () => w.sync()],
    ] as const) {
      let code = '';
      try { f(); } catch (e) { code = (e as PerCoreWalError).code; }
      this.check(code === 'POISONED', `${name} on a poisoned writer gave ${code || 'success'} (SPEC 3)`);
    }
    // Late completions (a held datasync that succeeds) must not move a poisoned writer's claim.
    sio.heal();
    try { this.drain(w, sio); } catch { /* already poisoned */ }
    this.check(w.syncedPosition() === before, `a poisoned writer's syncedPosition moved from ${before} to ${w.syncedPosition()}`);
    this.claimed = before;
  }

  private drain(w: CoreWalWriter, sio: FaultInjectingStorageIo): void {
    for (let i = 0; i < 50 && sio.pendingCount() > 0; i++) {
      const out: IoCompletion[] = [];
      sio.pollCompletions(out);
      this.feed(w, out);
    }
  }

  /** Datasyncs submitted (token -> boundary) and the highest boundary one of them completed. */
  private syncs = new Map<number, number>();
  private covered = 0;

  /**
   * Hands completions to the writer and checks SPEC 1: the claim never passes the boundary
   * of a datasync that completed, nor the start of a write that failed.
   */
  private feed(w: CoreWalWriter, out: IoCompletion[]): void {
    for (const c of out) {
      const b = this.syncs.get(c.token);
      if (b !== undefined && c.result === 0 && b > this.covered) this.covered = b;
    }
    try {
      w.checkCompletions(out);
    } catch (e) {
      if (e instanceof PerCoreWalError && e.message.includes('write failed') && e.position !== undefined) {
        this.check(w.syncedPosition() <= e.position, `syncedPosition ${w.syncedPosition()} passes the write that failed at ${e.position} (SPEC 1)`);
      }
      throw e;
    } finally {
      this.check(w.syncedPosition() <= Math.max(this.covered, this.resumePos),
        `syncedPosition ${w.syncedPosition()} beyond every completed datasync (${this.covered}) (SPEC 1)`);
    }
  }

  private submitted(w: CoreWalWriter, pos: number, op: WalOperation, boundary: number, prevTs: bigint, seq: bigint, epoch: bigint): void {
    const expectPos = this.model.at(-1)?.end ?? this.resumePos;
    this.check(pos === expectPos, `append returned ${pos}, expected ${expectPos}`);
    const ts = this.lastClock > prevTs ? this.lastClock : prevTs;
    this.check(w.lastTimestampNs() === ts, `timestamp ${w.lastTimestampNs()}, clock ${this.lastClock} after ${prevTs} (SPEC 4)`);
    this.model.push({ pos, end: w.position(), sequence: seq, epoch, timestampNs: ts, syncedBoundary: boundary, op });
  }

  /** Where the writer of this cycle started. */
  private resumePos = 0;

  private step(w: CoreWalWriter, sio: FaultInjectingStorageIo, fd: IoFd, holds: HoldHandle[]): void {
    const r = this.rng.float();
    if (this.options.faults && this.rng.bool(0.05)) {
      const k = this.rng.int(3);
      if (k === 0) { this.trail.add('fault: next write EIO'); sio.failNext(['write', 'zeros'], this.rng.pick(['EIO', 'ENOSPC'] as const)); }
      else if (k === 1) { this.trail.add('fault: next datasync EIO'); sio.failNext('datasync', 'EIO'); }
      else { const n = this.rng.int(40); this.trail.add(`fault: next write short (${n} B)`); sio.shortWriteNext(n); }
    }
    const boundary = w.syncedPosition();
    const prevTs = w.lastTimestampNs();
    const seq = w.sequence();
    if (r < 0.45) {
      const key = Buffer.from(`k${this.rng.int(20)}`);
      const value = this.rng.bytes(this.rng.bool(0.9) ? this.rng.int(100) : this.rng.range(3000, 9000));
      this.trail.add(`appendPutViaStorageIo ${key} ${value.length}B`);
      this.submitted(w, w.appendPutViaStorageIo(key, value, sio, fd), { type: 'put', key, value }, boundary, prevTs, seq, w.epoch());
    } else if (r < 0.55) {
      const key = Buffer.from(`k${this.rng.int(20)}`);
      this.trail.add(`appendDeleteViaStorageIo ${key}`);
      this.submitted(w, w.appendDeleteViaStorageIo(key, sio, fd), { type: 'delete', key }, boundary, prevTs, seq, w.epoch());
    } else if (r < 0.6) {
      const e = PerCoreWalEntry.commit(0, w.epoch() + BigInt(this.rng.int(2)), 0, { src: this.rng.u32() }, this.rng.bool(0.5) ? null : 7, 0);
      this.trail.add(`appendViaStorageIo commit @${e.epoch}`);
      const epoch = e.epoch > w.epoch() ? e.epoch : w.epoch();
      this.submitted(w, w.appendViaStorageIo(e, sio, fd), e.operation, boundary, prevTs, seq, epoch);
    } else if (r < 0.75) {
      if (w.isSyncPending()) {
        let code = '';
        try { w.syncViaStorageIo(sio, fd); } catch (e) { code = (e as PerCoreWalError).code; }
        this.check(code === 'SYNC_IN_FLIGHT', `a second datasync while one is pending gave ${code || 'success'}`);
      } else {
        this.trail.add(`syncViaStorageIo @${w.position()}`);
        const token = w.syncViaStorageIo(sio, fd);
        this.syncs.set(token, w.position());
      }
    } else if (r < 0.93) {
      const out: IoCompletion[] = [];
      sio.pollCompletions(out);
      this.trail.add(`poll: ${out.length} completions`);
      this.feed(w, out);
    } else if (r < 0.96) {
      this.trail.add('hold datasyncs');
      holds.push(sio.hold({ op: this.rng.bool(0.7) ? 'datasync' : 'write', times: this.rng.range(1, 3) }));
    } else if (holds.length > 0) {
      this.trail.add('release holds');
      for (const h of holds.splice(0)) h.release();
    }
  }

  private verify(d: SimDisk): number {
    if (!this.created && !d.existsSync(SEG)) return 0;
    this.check(d.existsSync(SEG), 'segment lost');
    const found: { e: PerCoreWalEntry; at: number }[] = [];
    const scan = scanSegment(0, SEG, { fs: d, onEntry: (e, at) => found.push({ e, at }) });
    const where = `(crash ${JSON.stringify(d.lastCrash?.files)})`;
    this.check(scan.tail !== 'damaged', `damaged tail at ${scan.bad?.position} after an ordinary crash ${where}`);
    const mustHave = this.model.filter((m) => m.end <= this.claimed).length;
    this.check(found.length >= mustHave, `${found.length} records survived, ${mustHave} were below syncedPosition ${this.claimed} (SPEC 1) ${where}`);
    this.check(found.length <= this.model.length, `${found.length} records found, ${this.model.length} submitted ${where}`);
    found.forEach(({ e, at }, i) => {
      const m = this.model[i]!;
      const ok = at === m.pos && e.sequence === m.sequence && e.epoch === m.epoch && e.timestampNs === m.timestampNs &&
        e.syncedBoundary === m.syncedBoundary && sameOp(e.operation, m.op);
      this.check(ok, `record ${i} at ${at} is ${describeEntry(e)} boundary ${e.syncedBoundary}; submitted was seq ${m.sequence} epoch ${m.epoch} ts ${m.timestampNs} ${m.op.type} at ${m.pos} boundary ${m.syncedBoundary} ${where}`);
    });
    return found.length;
  }
}

export function runSioCrashSeed(seed: number, options: { faults?: boolean; cycles?: number } = {}): SeedResult {
  return new SioCrashRun(seed, options).run();
}

export const sioCrashSuite: TortureSuite = { name: 'sio-crash', run: (seed) => runSioCrashSeed(seed) };
export const sioFaultSuite: TortureSuite = { name: 'sio-faults', run: (seed) => runSioCrashSeed(seed, { faults: true }) };
