/**
 * The body of one core's worker thread: it owns that core's `CoreWalWriter` and is the
 * only consumer of the core's ring. Blocking is the point here — the thread sleeps in
 * `Atomics.wait` when the ring is empty, and `sync()` blocks in fdatasync — so the main
 * thread never does.
 *
 * Group commit: every message drained from the ring in one pass is appended, then one
 * `sync()` covers them all, then DURABLE moves past the last ticket of the pass. While a
 * sync runs the ring keeps filling, so the next pass carries everything that arrived.
 */
import { receiveMessageOnPort, workerData, type MessagePort } from 'node:worker_threads';
import { PerCoreWalError } from '../errors/errors.js';
import { realFs } from '../io/fs.js';
import { scanSegment, type SegmentScan } from '../reader/scan.js';
import { CoreWalWriter, type CoreWalWriterOptions } from '../writer/writer.js';
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

  constructor(w: CoreWalWriter) {
    this.w = w;
    this.epoch = w.epoch();
    // Not the current value: a command posted before this loop started (say a stop right
    // after 'ready') must still be read, so the first iteration always polls the port.
    this.cmdSeen = (Atomics.load(ctrl, CMD) - 1) | 0;
  }

  run(): void {
    for (;;) {
      if (Atomics.load(ctrl, CMD) !== this.cmdSeen) {
        this.commands();
        if (this.stopped) return;
      }
      const head = consumer.head();
      if (!this.batch(head)) this.sleep(head);
    }
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
      if (this.stopped) return;
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
      case 'compact':
        // The checkpoint holding everything up to the barrier is durable. The records
        // appended since stay, crash-safely, at the front of the segment (recovery finds
        // no barrier at the checkpoint's position then, and replays the segment whole).
        // Appends wait in the ring meanwhile.
        w.compactFrom(cmd.position);
        publishSynced(w);
        report({ type: 'compactDone', position: w.position() });
        return;
      case 'stop':
        this.stop();
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
      new CoreLoop(w).run();
      port.close();
    } catch (e) {
      fail(e);
    }
  });
}

main();
