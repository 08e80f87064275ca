import {
  CoreWalWriter, PerCoreWalEntry, PerCoreWalError, PerCoreWalReader, scanSegment,
  type CoreWalWriterOptions, type WalOperation,
} from '../../src/index.js';
import { Rng, SimDisk } from '../../src/testing/index.js';
import { describeEntry, failCrashRun, randomCrashOptions, sameOp, TortureFailure, Trail, type SeedResult, type TortureSuite } from './harness.js';

/** One record as the driver appended it: what recovery must return at that index. */
interface Expected {
  /** An append that failed: the record may or may not have reached the disk. */
  maybe?: boolean;
  pos: number;
  end: number;
  sequence: bigint;
  epoch: bigint;
  timestampNs: bigint;
  syncedBoundary: number;
  op: WalOperation;
}

export interface WriterCrashOptions {
  /** Crash-and-recover cycles per seed. */
  cycles?: number;
  /** Different crashes of each crash moment, all verified (the last one goes on). */
  variants?: number;
  /** Inject EIO/ENOSPC faults into the workload. */
  faults?: boolean;
}

const DIR = '/wal';
const SEG = `${DIR}/wal-0.log`;

/**
 * The writer alone through simulated crashes. Each cycle opens the segment as recovery
 * would (scan; `create` if the tail is clean, else `create` must refuse and `openAt(validEnd)`
 * resumes), runs a random workload, and crashes the disk. After each crash it checks SPEC
 * invariants 1, 3, 4 and 6: every record below the writer's last `syncedPosition()` is
 * there, every record found is one that was written at that position (nothing torn,
 * nothing invented, order kept), the tail is never `damaged`, and the reopened writer
 * continues sequence, epoch and timestamp.
 */
export class WriterCrashRun {
  private readonly rng: Rng;
  private readonly trail = new Trail();
  private disk = new SimDisk();
  private model: Expected[] = [];
  /** What the writer last promised durable. */
  private claimed = 0;
  private clockNow: bigint;
  private lastClock = 0n;
  private readonly opts: CoreWalWriterOptions;
  crashes = 0;
  steps = 0;

  constructor(readonly seed: number, private readonly options: WriterCrashOptions = {}) {
    this.rng = new Rng(seed);
    this.clockNow = 1_700_000_000_000_000_000n + BigInt(this.rng.int(1 << 30));
    this.opts = {
      fs: undefined,
      bufferSize: this.rng.pick([4096, 4096, 8192, 65536]),
      preallocate: this.rng.pick([0, 0, 256, 1000, 8192]),
      clock: () => {
        // Mostly forward, sometimes a step back: timestamps must still never decrease.
        this.clockNow += this.rng.bool(0.05) ? -BigInt(this.rng.int(5000)) : BigInt(this.rng.int(1000));
        this.lastClock = this.clockNow;
        return this.clockNow;
      },
    };
    this.disk.mkdirSync(DIR);
  }

  private fail(message: string): never {
    failCrashRun(this.disk, this.options.faults ? 'writer-faults' : 'writer-crash', this.seed, message, this.trail);
  }

  private check(cond: boolean, message: string): asserts cond {
    if (!cond) this.fail(message);
  }

  run(): SeedResult {
    const cycles = this.options.cycles ?? 4;
    for (let c = 0; c < cycles; c++) {
      // Sometimes the power goes at an arbitrary file-system call: inside an open, a truncate, a sync.
      if (this.rng.bool(0.4)) this.disk.powerCut(this.rng.int(120), this.rng.fork(), randomCrashOptions(this.rng));
      try {
        const w = this.reopen();
        this.workload(w, this.rng.range(0, 40));
      } catch (e) {
        if (this.disk.afterPowerCut === null) throw e;
      }
      if (this.disk.afterPowerCut !== null) this.recoverFromPowerCut();
      else this.crashAndVerify();
    }
    return { iterations: this.steps, crashes: this.crashes };
  }

  /** The power went in the middle of a step: what that step was doing may or may not have persisted. */
  private recoverFromPowerCut(): void {
    const after = this.disk.afterPowerCut!;
    // From here on failures are real again: the dead disk is left behind.
    this.disk = after;
    this.crashes++;
    this.trail.add(`power cut: ${JSON.stringify(after.lastCrash?.files)}`);
    this.recordFailedAppend();
    if (this.truncating !== null) {
      const to = this.truncating;
      for (const m of this.model) if (m.end > to) m.maybe = true;
      if (this.claimed > to) this.claimed = to;
      this.truncating = null;
    }
    this.adopt(after, this.verify(after));
  }

  /** Continues from a verified post-crash disk: the model keeps what survived. */
  private adopt(after: SimDisk, kept: number): void {
    this.disk = after;
    this.model = this.model.slice(0, kept);
    // A record that may or may not have persisted and did is a record like any other from now on.
    for (const m of this.model) {
      if (!m.maybe) continue;
      m.maybe = false;
      if (m.end < 0) m.end = scanSegment(0, SEG, { fs: after }).validEnd;
    }
  }

  /** Opens the segment the way recovery does and checks the writer resumes correctly. */
  private reopen(): CoreWalWriter {
    const opts = { ...this.opts, fs: this.disk };
    if (!this.disk.existsSync(SEG)) {
      this.check(this.model.length === 0, 'segment vanished');
      this.trail.add('create (new segment)');
      const w = CoreWalWriter.create(0, SEG, opts);
      this.created = true;
      return w;
    }
    const scan = scanSegment(0, SEG, { fs: this.disk });
    const last = this.model[this.model.length - 1];
    let w: CoreWalWriter;
    if (scan.tail === 'clean' && this.rng.bool(0.7)) {
      this.trail.add(`create (clean tail, validEnd ${scan.validEnd})`);
      w = CoreWalWriter.create(0, SEG, opts);
    } else {
      if (scan.tail !== 'clean') {
        let refused = false;
        try {
          CoreWalWriter.create(0, SEG, opts).close();
        } catch (e) {
          refused = e instanceof PerCoreWalError && e.code === 'INVALID_TAIL';
          if (!refused) this.fail(`create on a ${scan.tail} tail threw ${String(e)} instead of INVALID_TAIL`);
        }
        this.check(refused, `create accepted a segment with a ${scan.tail} tail at ${scan.bad?.position}`);
      }
      this.trail.add(`openAt(${scan.validEnd}) (${scan.tail} tail)`);
      w = CoreWalWriter.openAt(0, SEG, scan.validEnd, opts);
    }
    this.check(w.position() === scan.validEnd, `writer resumed at ${w.position()}, valid end is ${scan.validEnd}`);
    this.check(w.syncedPosition() === w.position(), `resumed writer claims ${w.syncedPosition()} synced of ${w.position()}`);
    const nextSeq = last === undefined ? 0n : last.sequence + 1n;
    this.check(w.sequence() === nextSeq, `resumed at sequence ${w.sequence()}, expected ${nextSeq} (SPEC 4)`);
    if (last !== undefined) {
      this.check(w.epoch() >= last.epoch, `resumed at epoch ${w.epoch()} below the last entry's ${last.epoch} (SPEC 4)`);
      this.check(w.lastTimestampNs() === last.timestampNs, `resumed at timestamp ${w.lastTimestampNs()}, last entry has ${last.timestampNs}`);
    }
    this.claimed = w.syncedPosition();
    return w;
  }

  private key(): Buffer {
    return Buffer.from(`k${this.rng.int(24)}`);
  }

  private value(): Buffer {
    const r = this.rng.float();
    const n = r < 0.6 ? this.rng.int(64) : r < 0.95 ? this.rng.range(64, 3000) : this.rng.range(4000, 9000);
    return this.rng.bytes(n);
  }

  /** Records an append the writer accepted. */
  private expect(w: CoreWalWriter, pos: number, op: WalOperation, boundary: number, prevTs: bigint, seq: bigint): void {
    this.attempt = null;
    const ts = this.lastClock > prevTs ? this.lastClock : prevTs;
    this.check(pos === (this.model.at(-1)?.end ?? this.resumePos), `append returned ${pos}, expected ${this.model.at(-1)?.end ?? this.resumePos}`);
    this.check(w.lastTimestampNs() === ts, `timestamp ${w.lastTimestampNs()} but clock gave ${this.lastClock} after ${prevTs} (SPEC 4)`);
    this.model.push({ pos, end: w.position(), sequence: seq, epoch: w.epoch(), timestampNs: ts, syncedBoundary: boundary, op });
  }

  private resumePos = 0;
  /** The append in progress, so that a failed one can be recorded as a record that may exist. */
  private attempt: { op: WalOperation; boundary: number; prevTs: bigint; seq: bigint; epoch: bigint } | null = null;

  /** A failed append's record may have reached the disk whole: the model holds it as a maybe. */
  private recordFailedAppend(): void {
    const a = this.attempt;
    if (a === null) return;
    const ts = this.lastClock > a.prevTs ? this.lastClock : a.prevTs;
    const pos = this.model.at(-1)?.end ?? this.resumePos;
    this.model.push({ maybe: true, pos, end: -1, sequence: a.seq, epoch: a.epoch, timestampNs: ts, syncedBoundary: a.boundary, op: a.op });
    this.attempt = null;
  }

  /** True once `create` of the segment has returned (its directory entry is durable). */
  private created = false;

  /** Set while a truncate runs, for a power cut in its middle. */
  private truncating: number | null = null;

  private attemptAppend(w: CoreWalWriter, op: WalOperation, boundary: number, prevTs: bigint, seq: bigint, epoch = w.epoch()): void {
    this.attempt = { op, boundary, prevTs, seq, epoch };
  }

  private workload(w: CoreWalWriter, steps: number): void {
    this.resumePos = w.position();
    let poisoned = false;
    for (let i = 0; i < steps; i++) {
      this.steps++;
      if (this.options.faults && !poisoned && this.rng.bool(0.08)) this.injectOne();
      const before = w.syncedPosition();
      try {
        this.step(w);
      } catch (e) {
        if (e instanceof TortureFailure) throw e;
        if (!(e instanceof PerCoreWalError)) this.fail(`untyped failure: ${String((e as Error)?.stack ?? e)}`);
        if (!this.options.faults) this.fail(`unexpected ${e.code}: ${e.message}`);
        this.check(e.code === 'IO', `a failed operation reported ${e.code}, expected IO: ${e.message}`);
        this.check(typeof e.errno === 'number' && e.errno > 0, `IO error without errno: ${e.message}`);
        this.check(w.syncedPosition() === before, `syncedPosition moved from ${before} to ${w.syncedPosition()} in a failed operation (SPEC 1)`);
        this.trail.add(`  -> ${e.code} errno ${e.errno}: poisoned`);
        this.recordFailedAppend();
        poisoned = true;
        this.expectPoisoned(w);
        break;
      }
      this.check(w.syncedPosition() >= this.claimed, `syncedPosition went back from ${this.claimed} to ${w.syncedPosition()}`);
      this.claimed = w.syncedPosition();
    }
    this.disk.clearFaults();
    // Half the time the process just dies; otherwise close() first (flushes, does not sync).
    if (!poisoned && this.rng.bool(0.5)) {
      this.trail.add('close');
      w.close();
      this.check(w.syncedPosition() === this.claimed, 'close changed syncedPosition');
    }
  }

  private injectOne(): void {
    const op = this.rng.pick(['writeSync', 'fdatasyncSync', 'fdatasyncSync', 'ftruncateSync'] as const);
    const code = this.rng.pick(['EIO', 'ENOSPC'] as const);
    const nth = this.rng.range(1, 3);
    this.trail.add(`fault: ${op} #${nth} ${code}`);
    this.disk.injectFault({ op, nth, code, partial: this.rng.bool(0.5) });
  }

  /** Every later append and sync must fail with POISONED, and nothing may reach the disk. */
  private expectPoisoned(w: CoreWalWriter): void {
    const pos = w.syncedPosition();
    const attempts: [string, () => unknown][] = [
      ['appendPut', () => w.appendPut(Buffer.from('x'), Buffer.from('y'))],
      ['appendDelete', () => w.appendDelete(Buffer.from('x'))],
      ['sync', () => w.sync()],
      ['appendEpochBarrier', () => w.appendEpochBarrier()],
      ['flush', () => w.flush()],
    ];
    for (const [name, f] of attempts) {
      try {
        f();
        this.fail(`${name} succeeded on a poisoned writer (SPEC 3)`);
      } catch (e) {
        if (e instanceof TortureFailure) throw e;
        this.check(e instanceof PerCoreWalError && e.code === 'POISONED', `${name} on a poisoned writer threw ${String(e)}, expected POISONED`);
      }
    }
    this.check(w.syncedPosition() === pos, 'syncedPosition moved on a poisoned writer');
    w.close();
  }

  private step(w: CoreWalWriter): void {
    const r = this.rng.float();
    const boundary = w.syncedPosition();
    const prevTs = w.lastTimestampNs();
    const seq = w.sequence();
    if (r < 0.36) {
      const k = this.key(), v = this.value();
      this.trail.add(`appendPut ${k} ${v.length}B`);
      this.attemptAppend(w, { type: 'put', key: k, value: v }, boundary, prevTs, seq);
      this.expect(w, w.appendPut(k, v), { type: 'put', key: k, value: v }, boundary, prevTs, seq);
    } else if (r < 0.46) {
      const k = this.key();
      this.trail.add(`appendDelete ${k}`);
      this.attemptAppend(w, { type: 'delete', key: k }, boundary, prevTs, seq);
      this.expect(w, w.appendDelete(k), { type: 'delete', key: k }, boundary, prevTs, seq);
    } else if (r < 0.51) {
      const offsets = new Map<string, bigint>();
      for (let i = this.rng.int(4); i > 0; i--) offsets.set(`topic-${this.rng.int(5)}`, BigInt(this.rng.u32()) - 100n);
      const wm = this.rng.bool(0.5) ? null : BigInt(this.rng.u32());
      this.trail.add(`appendCommit ${offsets.size} wm ${wm}`);
      this.attemptAppend(w, { type: 'commit', offsets, watermark: wm }, boundary, prevTs, seq);
      this.expect(w, w.appendCommit(offsets, wm), { type: 'commit', offsets, watermark: wm }, boundary, prevTs, seq);
    } else if (r < 0.54) {
      const id = BigInt(this.rng.u32());
      this.trail.add(`appendCheckpoint ${id}`);
      this.attemptAppend(w, { type: 'checkpoint', id }, boundary, prevTs, seq);
      this.expect(w, w.appendCheckpoint(id), { type: 'checkpoint', id }, boundary, prevTs, seq);
    } else if (r < 0.57) {
      this.trail.add(`appendEpochBarrier @${w.epoch()}`);
      this.attemptAppend(w, { type: 'epochBarrier', epoch: w.epoch() }, boundary, prevTs, seq);
      this.expect(w, w.appendEpochBarrier(), { type: 'epochBarrier', epoch: w.epoch() }, boundary, prevTs, seq);
    } else if (r < 0.59) {
      // An entry with a higher epoch raises the writer's epoch; its own sequence/timestamp are replaced.
      const e = PerCoreWalEntry.delete(0, w.epoch() + 1n, 999, Buffer.from('hi'), 1);
      this.trail.add(`append(delete @epoch ${w.epoch() + 1n})`);
      this.attemptAppend(w, e.operation, boundary, prevTs, seq, w.epoch() + 1n);
      this.expect(w, w.append(e), e.operation, boundary, prevTs, seq);
    } else if (r < 0.64) {
      const e = w.epoch() + BigInt(this.rng.int(3));
      this.trail.add(`setEpoch ${e}`);
      w.setEpoch(e);
    } else if (r < 0.66) {
      if (w.epoch() > 0n) {
        this.trail.add(`setEpoch ${w.epoch() - 1n} (lower)`);
        let code = '';
        try { w.setEpoch(w.epoch() - 1n); } catch (e) { code = (e as PerCoreWalError).code; }
        this.check(code === 'EPOCH_MISMATCH', `lowering the epoch gave ${code || 'no error'} (SPEC 4)`);
      }
    } else if (r < 0.8) {
      this.trail.add(`sync @${w.position()}`);
      w.sync();
      this.check(w.syncedPosition() === w.position(), `after sync syncedPosition ${w.syncedPosition()} != position ${w.position()}`);
      this.check(w.entriesSinceSync() === 0, 'entriesSinceSync not reset by sync');
    } else if (r < 0.85) {
      this.trail.add('flush');
      w.flush();
    } else if (r < 0.88) {
      // Truncate to a random record boundary of this incarnation's records or earlier.
      const cands = [0, ...this.model.map((m) => m.end)];
      const to = this.rng.bool(0.2) ? 0 : this.rng.pick(cands);
      this.trail.add(`truncate(${to})`);
      this.truncating = to;
      w.truncate(to);
      this.truncating = null;
      this.model = this.model.filter((m) => m.end <= to);
      this.resumePos = to;
      this.check(w.position() === to, `position ${w.position()} after truncate(${to})`);
      this.check(w.syncedPosition() <= to, 'syncedPosition past a truncation');
      // Claimed durability can go down here, legitimately.
      this.claimed = w.syncedPosition();
    } else if (r < 0.9) {
      this.trail.add('crash-now (mid-workload)');
      this.crashAndVerifyKeepWriter();
    } else {
      const k = this.key(), v = this.value();
      this.trail.add(`appendPut ${k} ${v.length}B`);
      this.attemptAppend(w, { type: 'put', key: k, value: v }, boundary, prevTs, seq);
      this.expect(w, w.appendPut(k, v), { type: 'put', key: k, value: v }, boundary, prevTs, seq);
    }
  }

  /** A crash variant checked without ending the incarnation (the writer goes on on the old disk). */
  private crashAndVerifyKeepWriter(): void {
    const after = this.disk.crash(this.rng.fork(), randomCrashOptions(this.rng));
    this.crashes++;
    this.verify(after);
  }

  private crashAndVerify(): void {
    const variants = this.options.variants ?? 2;
    for (let v = 0; v < variants; v++) {
      this.verify(this.disk.crash(this.rng.fork(), randomCrashOptions(this.rng)));
      this.crashes++;
    }
    const after = this.disk.crash(this.rng.fork(), randomCrashOptions(this.rng));
    this.crashes++;
    this.trail.add(`crash: ${JSON.stringify(after.lastCrash?.files)}`);
    this.adopt(after, this.verify(after));
  }

  /** Checks a post-crash disk against the model; returns how many records survived. */
  private verify(d: SimDisk): number {
    // Power cut inside the first create: nothing was promised yet.
    if (!this.created && !d.existsSync(SEG)) return 0;
    this.check(d.existsSync(SEG), 'segment file lost in a crash although create fsynced its directory');
    const found: { e: PerCoreWalEntry; at: number }[] = [];
    const scan = scanSegment(0, SEG, { fs: d, onEntry: (e, at) => found.push({ e, at }) });
    const where = `(crash ${JSON.stringify(d.lastCrash?.files)})`;
    this.check(scan.tail !== 'damaged', `an ordinary crash left a damaged tail at ${scan.bad?.position}: evidence ${JSON.stringify(scan.evidence)} ${where}`);
    const mustHave = this.model.filter((m) => !m.maybe && m.end <= this.claimed).length;
    this.check(found.length >= mustHave,
      `only ${found.length} records survived, ${mustHave} were below syncedPosition ${this.claimed} (SPEC 1) ${where}`);
    this.check(found.length <= this.model.length, `${found.length} records found, only ${this.model.length} written ${where}`);
    let prev: PerCoreWalEntry | null = null;
    for (let i = 0; i < found.length; i++) {
      const { e, at } = found[i]!;
      const m = this.model[i]!;
      const ok = at === m.pos && e.sequence === m.sequence && e.epoch === m.epoch && e.timestampNs === m.timestampNs &&
        e.coreId === 0 && e.syncedBoundary === m.syncedBoundary && sameOp(e.operation, m.op);
      this.check(ok, `record ${i} at ${at} is ${describeEntry(e)} boundary ${e.syncedBoundary}; written was seq ${m.sequence} epoch ${m.epoch} ts ${m.timestampNs} ${m.op.type} at ${m.pos} boundary ${m.syncedBoundary} ${where}`);
      if (prev !== null) {
        this.check(e.sequence > prev.sequence && e.epoch >= prev.epoch && e.timestampNs >= prev.timestampNs, `order broken at record ${i}`);
      }
      prev = e;
    }
    const lastEnd = found.length === 0 ? 0 : this.model[found.length - 1]!.maybe ? -1 : this.model[found.length - 1]!.end;
    this.check(lastEnd < 0 || scan.validEnd === lastEnd, `validEnd ${scan.validEnd} is not the end ${lastEnd} of the last valid record`);
    // The strict reader agrees: it ends at a clean or torn tail, and throws the typed error
    // for any other bad record (telling debris from damage is the scan's job, not the reader's).
    const r = PerCoreWalReader.open(0, SEG, { fs: d, blockSize: this.rng.pick([64, 4096, 1 << 20]) });
    try {
      let all: PerCoreWalEntry[] | null = null;
      let err: unknown = null;
      try { all = r.readAll(); } catch (e) { err = e; }
      const bad = scan.bad;
      if (bad === null || bad.kind === 'tornWrite') {
        this.check(all !== null && all.length === found.length, `reader readAll gave ${all?.length ?? String(err)}, scan ${found.length}`);
      } else {
        const code = bad.kind === 'checksumMismatch' ? 'CHECKSUM_MISMATCH' : 'CORRUPTED';
        this.check(err instanceof PerCoreWalError && err.code === code && err.position === bad.position,
          `reader readAll gave ${all !== null ? `${all.length} entries` : String(err)} where the scan found ${bad.kind} at ${bad.position}`);
      }
    } finally {
      r.close();
    }
    return found.length;
  }
}

export function runWriterCrashSeed(seed: number, options: WriterCrashOptions = {}): SeedResult {
  return new WriterCrashRun(seed, options).run();
}

export const writerCrashSuite: TortureSuite = { name: 'writer-crash', run: (seed) => runWriterCrashSeed(seed) };
export const writerFaultSuite: TortureSuite = { name: 'writer-faults', run: (seed) => runWriterCrashSeed(seed, { faults: true }) };
