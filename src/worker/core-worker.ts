/**
 * The body of one core's worker thread: it owns that core's `CoreWalWriter` and is the
 * only consumer of the core's ring. Blocking is the point here — the thread sleeps in
 * `Atomics.wait` when the ring is empty, and `sync()` blocks in fdatasync — so the main
 * thread never does.
 *
 * Group commit: every message drained from the ring in one pass is appended, then one
 * `sync()` covers them all, then DURABLE moves past the last ticket of the pass. While a
 * sync runs the ring keeps filling, so the next pass carries everything that arrived.
 *
 * A compaction after a checkpoint is the exception: its copy runs in slices of ~1 ms
 * between passes and its copy's fdatasync on libuv's pool, so the loop then runs on the
 * event loop (a turn between iterations, `Atomics.waitAsync` when idle) until the short
 * synchronous finish.
 */
import { setImmediate as turn } from 'node:timers/promises';
import { receiveMessageOnPort, workerData, type MessagePort } from 'node:worker_threads';
import { PerCoreWalError } from '../errors/errors.js';
import { realFs } from '../io/fs.js';
import { scanSegment, type SegmentScan } from '../reader/scan.js';
import { CoreWalWriter, type Compaction, type CoreWalWriterOptions } from '../writer/writer.js';
import {
  CMD, decodeCommitBody, DURABLE, FAILURE, FAILURE_CODES, OP_COMMIT, OP_DELETE, OP_PUT, SLEEPING, STATE, STATE_CLOSED,
  STATE_CLOSING, STATE_FAILED, STATE_RUNNING, SYNCED_HI, SYNCED_LO, SYNCED_SEQ, TAIL, toWire, WAKE,
  type CoreWorkerData, type PoolCommand, type WorkerReport,
} from './protocol.js';
import { EpochRef } from '../manager/epoch.js';
import { RingConsumer, RingProducer } from './ring.js';

const data = workerData as CoreWorkerData;
const core = data.coreId;
const port: MessagePort = data.port;
const consumer = new RingConsumer(data.ring);
// Only for its lock: state changes that must not race an enqueue are made holding it.
const lockSide = new RingProducer(data.ring);
const ctrl = consumer.ctrl;
const epoch = EpochRef.fromShared(data.epoch);
/** Work between two turns of the event loop during a compaction's copy: what appends may wait. */
const COPY_SLICE_MS = 1;
/** Longest idle wait during a compaction; a bound in case a wake-up is missed, not a poll. */
const IDLE_WAIT_MS = 50;

// `Atomics.waitAsync` (Node 16+) is not in the ES2022 lib.
type WaitAsync = (a: Int32Array, index: number, value: number, timeout?: number) =>
  { async: false; value: 'not-equal' | 'timed-out' } | { async: true; value: Promise<'ok' | 'timed-out'> };
const waitAsync = (Atomics as unknown as { waitAsync: WaitAsync }).waitAsync;

function report(msg: WorkerReport): void {
  port.postMessage(msg);
}

function fail(e: unknown): never {
  const code = e instanceof PerCoreWalError ? e.code : 'WORKER_FAILED';
  const idx = FAILURE_CODES.indexOf(code);
  Atomics.store(ctrl, FAILURE, idx < 0 ? 0 : idx);
  Atomics.store(ctrl, STATE, STATE_FAILED);
  Atomics.notify(ctrl, DURABLE);
  Atomics.notify(ctrl, TAIL);
  report({ type: 'failed', error: toWire(e) });
  port.close();
  // Exit non-zero without an 'error' event racing the report above.
  process.exit(1);
}

function writerOptions(): CoreWalWriterOptions {
  const o: CoreWalWriterOptions = { fs: realFs };
  if (data.bufferSize !== undefined) o.bufferSize = data.bufferSize;
  if (data.preallocate !== undefined) o.preallocate = data.preallocate;
  if (data.maxRecordSize !== undefined) o.maxRecordSize = data.maxRecordSize;
  return o;
}

/** Phase 1: read the segment once and tell the pool what it holds; nothing is written yet. */
function scan(): SegmentScan | null {
  let exists = false;
  try {
    exists = realFs.existsSync(data.path) && realFs.statSync(data.path).size > 0;
  } catch (e) {
    fail(e);
  }
  if (!exists) {
    report({ type: 'scanned', validEnd: 0, fileLen: 0, entries: 0, tail: 'clean', lastEpoch: null, lastTimestampNs: null, nextSequence: null });
    return null;
  }
  const s = scanSegment(core, data.path, { maxRecordSize: data.maxRecordSize });
  if (s.tail === 'damaged') {
    const b = s.bad!;
    const ev = s.evidence!;
    fail(new PerCoreWalError('CORRUPTED',
      `segment ${data.path} of core ${core} is damaged at byte ${b.position} (${b.kind}): the record at byte ${ev.position} ` +
      `was appended after the first ${ev.syncedBoundary} bytes had been synced, so synced data is lost; ` +
      'recover it with PerCoreRecoveryManager in a mode that tolerates corruption',
      { path: data.path, position: b.position, coreId: core }));
  }
  const last = s.last;
  report({
    type: 'scanned', validEnd: s.validEnd, fileLen: s.fileLen, entries: s.entries, tail: s.tail,
    lastEpoch: last?.epoch ?? null, lastTimestampNs: last?.timestampNs ?? null, nextSequence: last === null ? null : last.sequence + 1n,
  });
  return s;
}

/** Phase 2: open the writer where the valid records end (a torn tail is cut durably). */
function open(s: SegmentScan | null, cmd: Extract<PoolCommand, { type: 'open' }>): CoreWalWriter {
  const o = writerOptions();
  o.epoch = cmd.epoch;
  if (cmd.minSequence !== null) o.minSequence = cmd.minSequence;
  if (cmd.minTimestampNs !== null) o.minTimestampNs = cmd.minTimestampNs;
  return s === null ? CoreWalWriter.create(core, data.path, o) : CoreWalWriter.openAfterScan(s, o);
}

function publishSynced(w: CoreWalWriter): void {
  const p = w.syncedPosition();
  const hi = Math.floor(p / 4294967296);
  Atomics.add(ctrl, SYNCED_SEQ, 1);
  Atomics.store(ctrl, SYNCED_LO, p - hi * 4294967296);
  Atomics.store(ctrl, SYNCED_HI, hi);
  Atomics.add(ctrl, SYNCED_SEQ, 1);
}

class CoreLoop {
  private readonly w: CoreWalWriter;
  private epoch: bigint;
  private cmdSeen: number;
  private stopped = false;
  /** The compaction running in the background, if any; the loop is on the event loop meanwhile. */
  private job: Compaction | null = null;
  /** A stop that came during a compaction: done once the compaction is. */
  private stopAfterJob = false;

  constructor(w: CoreWalWriter) {
    this.w = w;
    this.epoch = w.epoch();
    // Not the current value: a command posted before this loop started (say a stop right
    // after 'ready') must still be read, so the first iteration always polls the port.
    this.cmdSeen = (Atomics.load(ctrl, CMD) - 1) | 0;
  }

  /** Until stopped: blocking passes, and on the event loop while a compaction runs. */
  async runAll(): Promise<void> {
    for (;;) {
      this.run();
      if (this.stopped) return;
      await this.compactInBackground();
      if (this.stopped) return;
    }
  }

  /** Blocking passes until stopped or a compaction begins. */
  private run(): void {
    for (;;) {
      if (Atomics.load(ctrl, CMD) !== this.cmdSeen) {
        this.commands();
        if (this.stopped || this.job !== null) return;
      }
      const head = consumer.head();
      if (!this.batch(head)) this.sleep(head);
    }
  }

  /**
   * Phase 1 of the compaction (copy slices, then the copy's fdatasync off the thread)
   * interleaved with passes over the ring, then its synchronous finish. A failure of
   * either phase is thrown, so it is reported as `compactFrom`'s were: the worker fails.
   */
  private async compactInBackground(): Promise<void> {
    const job = this.job!;
    let syncing: Promise<void> | null = null;
    let synced = false;
    let syncError: unknown = null;
    while (!this.stopAfterJob && !synced) {
      if (Atomics.load(ctrl, CMD) !== this.cmdSeen) {
        this.commands();
        if (this.stopAfterJob) break;
      }
      const head = consumer.head();
      const appended = this.batch(head);
      if (syncing === null) {
        if (job.step(COPY_SLICE_MS)) {
          syncing = job.syncCopy().then(() => { synced = true; }, (e: unknown) => { syncError = e; synced = true; });
        }
        await turn();
      } else if (appended) {
        await turn();
      } else {
        await this.sleepUntil(head, syncing);
      }
    }
    // A stop waits for the compaction: the pool expects its report, and the copy's fd must not close under its fdatasync.
    if (syncing !== null) await syncing;
    if (syncError !== null) throw syncError;
    this.finishCompaction(job);
    if (this.stopAfterJob) this.stop();
  }

  private finishCompaction(job: Compaction): void {
    // Appends wait only from here: sync, copy what came during phase 1, rename, reopen.
    job.finish();
    this.job = null;
    publishSynced(this.w);
    report({ type: 'compactDone', position: this.w.position() });
  }

  /** `sleep`, but on the event loop: the copy's fdatasync settling ends it too. */
  private async sleepUntil(head: number, settled: Promise<void>): Promise<void> {
    Atomics.store(ctrl, SLEEPING, 1);
    const bell = Atomics.load(ctrl, WAKE);
    if (consumer.head() === head && Atomics.load(ctrl, CMD) === this.cmdSeen) {
      const r = waitAsync(ctrl, WAKE, bell, IDLE_WAIT_MS);
      if (r.async) await Promise.race([r.value, settled]);
    }
    Atomics.store(ctrl, SLEEPING, 0);
  }

  /** Appends everything below `head`, frees the ring, syncs once. False when there was nothing. */
  private batch(head: number): boolean {
    const w = this.w;
    const e = epoch.load();
    if (e > this.epoch) { w.setEpoch(e); this.epoch = e; }
    const buf = consumer.data;
    let n = 0;
    while (consumer.next(head)) {
      const k = consumer.keyStart;
      const kEnd = k + consumer.keyLen;
      switch (consumer.op) {
        case OP_PUT: w.appendPut(buf.subarray(k, kEnd), buf.subarray(kEnd, kEnd + consumer.valueLen)); break;
        case OP_DELETE: w.appendDelete(buf.subarray(k, kEnd)); break;
        case OP_COMMIT: {
          const c = decodeCommitBody(buf.subarray(k, kEnd));
          w.appendCommit(c.offsets, c.watermark);
          break;
        }
        default: throw new PerCoreWalError('ASSERTION', `unknown ring operation ${consumer.op} on core ${core}`, { coreId: core });
      }
      n++;
    }
    if (n === 0) return false;
    // The records are in the writer's buffer now: producers may reuse the ring while we sync.
    consumer.release();
    w.sync();
    publishSynced(w);
    Atomics.store(ctrl, DURABLE, consumer.lastTicketLo());
    Atomics.notify(ctrl, DURABLE);
    return true;
  }

  private sleep(head: number): void {
    Atomics.store(ctrl, SLEEPING, 1);
    const bell = Atomics.load(ctrl, WAKE);
    // Re-check after announcing the sleep: a producer that published before it saw no
    // sleeper; one that publishes after it bumps WAKE, and the wait returns at once.
    if (consumer.head() === head && Atomics.load(ctrl, CMD) === this.cmdSeen) Atomics.wait(ctrl, WAKE, bell);
    Atomics.store(ctrl, SLEEPING, 0);
  }

  private commands(): void {
    this.cmdSeen = Atomics.load(ctrl, CMD);
    for (let m = receiveMessageOnPort(port); m !== undefined; m = receiveMessageOnPort(port)) {
      this.command(m.message as PoolCommand);
      if (this.stopped || this.stopAfterJob) return;
    }
  }

  private command(cmd: PoolCommand): void {
    const w = this.w;
    switch (cmd.type) {
      case 'barrier': {
        // Everything appended so far is before the barrier and below its epoch; it and they
        // are synced together. The pool raises the global epoch only once every core has
        // its barrier, so no core stamps an entry before its barrier with the new epoch —
        // and should someone have advanced it meanwhile, the barrier goes above that.
        // No pause: what comes next is after the barrier, at its epoch, and the checkpoint
        // merges only up to the barrier, so the ring keeps being consumed.
        const e = this.epoch + 1n > cmd.epoch ? this.epoch + 1n : cmd.epoch;
        w.setEpoch(e);
        this.epoch = e;
        w.appendEpochBarrier();
        w.sync();
        publishSynced(w);
        Atomics.store(ctrl, DURABLE, consumer.lastTicketLo());
        Atomics.notify(ctrl, DURABLE);
        report({ type: 'barrierDone', position: w.position(), syncedPosition: w.syncedPosition(), sequence: w.sequence(), epoch: w.epoch() });
        return;
      }
      case 'compact': {
        // The checkpoint holding everything up to the barrier is durable. The records
        // appended since stay, crash-safely, at the front of the segment (recovery finds
        // no barrier at the checkpoint's position then, and replays the segment whole).
        // Appends go on during the copy; the loop runs it in the background (runAll).
        if (this.job !== null) {
          throw new PerCoreWalError('ASSERTION', `core ${core} got a compact command while compacting`, { coreId: core });
        }
        const job = w.beginCompaction(cmd.position);
        // Nothing to copy (from 0, or nothing after the barrier): the finish alone is short.
        if (job.start() === 0 || job.start() === job.phaseOneEnd()) this.finishCompaction(job);
        else this.job = job;
        return;
      }
      case 'stop':
        if (this.job !== null) this.stopAfterJob = true;
        else this.stop();
        return;
      case 'fault':
        if (cmd.how === 'exit') process.exit(7);
        if (cmd.how === 'throw') throw new Error(`injected fault on core ${core}`);
        for (;;) { /* hang: only terminate() ends this */ }
      case 'open':
        throw new PerCoreWalError('ASSERTION', `core ${core} got a second open command`, { coreId: core });
    }
  }

  /** Drain, sync, close: after CLOSING no producer can add to the ring, so the drain is complete. */
  private stop(): void {
    lockSide.withLock(() => Atomics.store(ctrl, STATE, STATE_CLOSING));
    while (this.batch(consumer.head()));
    const w = this.w;
    w.sync();
    publishSynced(w);
    w.close();
    Atomics.store(ctrl, STATE, STATE_CLOSED);
    Atomics.notify(ctrl, DURABLE);
    Atomics.notify(ctrl, TAIL);
    this.stopped = true;
    report({ type: 'closed', position: w.position(), sequence: w.sequence() });
  }
}

function main(): void {
  let s: SegmentScan | null;
  try {
    s = scan();
  } catch (e) {
    fail(e);
  }
  port.once('message', (cmd: PoolCommand) => {
    try {
      if (cmd.type !== 'open') {
        if (cmd.type === 'stop') { port.close(); return; }
        throw new PerCoreWalError('ASSERTION', `core ${core} expected an open command, got ${cmd.type}`, { coreId: core });
      }
      const w = open(s, cmd);
      publishSynced(w);
      Atomics.store(ctrl, STATE, STATE_RUNNING);
      report({ type: 'ready', position: w.position(), sequence: w.sequence(), epoch: w.epoch() });
      new CoreLoop(w).runAll().then(() => port.close(), fail);
    } catch (e) {
      fail(e);
    }
  });
}

main();
