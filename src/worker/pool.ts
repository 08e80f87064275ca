import { EventEmitter } from 'node:events';
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from 'node:worker_threads';
import { checkpointAfterBarriers, type PerCoreCheckpointMetadata } from '../checkpoint/coordinator.js';
import { replayStarts } from '../checkpoint/resume.js';
import { CheckpointStore } from '../checkpoint/store.js';
import type { U64Like } from '../entry/entry.js';
import { PerCoreWalError } from '../errors/errors.js';
import { realFs } from '../io/fs.js';
import { DEFAULT_MAX_RECORD_SIZE } from '../record/framing.js';
import { toU64 } from '../util/u64.js';
import { PerCoreWalConfig } from '../manager/config.js';
import { EpochRef } from '../manager/epoch.js';
import { CoreWalProducer, type AppendOptions, type BackpressureMode, type CoreWalProducerHandle } from './producer.js';
import {
  CMD, DEFAULT_RING_BYTES, DURABLE, fromWire, STATE, STATE_CLOSED, STATE_FAILED, SYNCED_HI, SYNCED_LO, SYNCED_SEQ, TAIL, WAKE,
  type CoreWorkerData, type PoolCommand, type WorkerReport,
} from './protocol.js';
import { createRing } from './ring.js';

export interface CoreWalPoolOptions {
  /** The WAL directory (created if missing). Segments are `segmentPattern` with `{core_id}` replaced. */
  dir: string;
  /** Worker threads = cores = segments. Default `os.availableParallelism()`; must match an existing WAL. */
  workers?: number;
  /** Segment file name; must contain `{core_id}`. Default `wal-{core_id}.log` (as `PerCoreWalConfig`). */
  segmentPattern?: string;
  /** Bytes of each core's ring: a power of two, default 4 MiB. A record takes at most half of it. */
  ringBytes?: number;
  /** Full ring: `'wait'` (default) for room, or `'reject'` with `BACKPRESSURE`. */
  backpressure?: BackpressureMode;
  /** Writer settings, as {@link CoreWalWriterOptions}. */
  bufferSize?: number;
  preallocate?: number;
  maxRecordSize?: number;
  /** Lowest epoch to resume at (e.g. a checkpoint's, when segments were reset). */
  minEpoch?: U64Like;
  /** Per core, the lowest next sequence (e.g. a checkpoint's, when segments were reset). */
  minSequences?: readonly U64Like[];
  /**
   * The global epoch to share (e.g. another component's `EpochRef`); it is raised to the
   * highest epoch found on disk. Default: a new one.
   */
  epochRef?: EpochRef;
  /**
   * The checkpoint store of this WAL, for {@link CoreWalPool.createCheckpoint}. Its latest
   * checkpoint's epoch and sequences are where cores resume whose segments it reset.
   */
  checkpointStore?: CheckpointStore;
}

/** Per core, what {@link CoreWalPool.start} found in its segment. */
export interface PoolCoreReport {
  coreId: number;
  path: string;
  /** End of the valid records: where the writer resumed. */
  validEnd: number;
  /** File length before a torn tail was cut. */
  fileLen: number;
  entries: number;
  tail: string;
  /** Sequence the core resumed at. */
  sequence: bigint;
}

interface CoreSlot {
  core: number;
  worker: Worker;
  port: MessagePort;
  ctrl: Int32Array;
  failed: PerCoreWalError | null;
  exited: boolean;
  exit: Promise<number>;
  /** Waiters for the next report of a type. */
  waiting: Map<string, { resolve: (r: WorkerReport) => void; reject: (e: unknown) => void }>;
}

type PoolEvents = {
  coreFailed: [coreId: number, error: PerCoreWalError];
};

const workerUrl = new URL('./core-worker.js', import.meta.url);

/**
 * Thread-per-core: one worker thread per core, each owning the {@link CoreWalWriter} of
 * its segment in one WAL directory (the same files and format as `PerCoreWalManager`).
 * Appends from the main thread (or from any thread through {@link CoreWalProducer})
 * cross into the workers through shared-memory rings; each worker appends everything
 * waiting, fdatasyncs once (group commit) and publishes the highest durable ticket, and
 * the append's promise resolves. The main event loop only copies bytes into a ring.
 *
 * The global epoch is shared memory too: {@link CoreWalPool.advanceEpoch} moves it, and
 * every worker picks it up before its next batch, without a message.
 *
 * A worker that dies (exception, `process.exit`, `terminate()`) makes its core fail: the
 * pool emits `'coreFailed'`, lists it in {@link CoreWalPool.failedCores}, and rejects the
 * core's unacknowledged and later appends with `WORKER_FAILED`. Acknowledged appends are
 * on disk; starting a pool on the same directory again cuts the torn tail and resumes
 * the core's sequence and epoch.
 *
 * @example
 * ```ts
 * const pool = await CoreWalPool.start({ dir: '/data/wal', workers: 2 });
 * pool.on('coreFailed', (core, err) => console.error(`core ${core} failed`, err));
 * const ticket = await pool.put('user:1', '{"name":"Ada"}');     // durable now
 * await pool.delete('user:2');
 * await pool.commit({ 'orders/0': 1042n }, 1_700_000_000_000n, { core: 0 });
 * await pool.close();                                             // drain, sync, close
 * ```
 */
export class CoreWalPool extends EventEmitter<PoolEvents> {
  private readonly slots: CoreSlot[];
  private readonly producer: CoreWalProducer;
  private readonly epochCell: EpochRef;
  private readonly cfg: PerCoreWalConfig;
  private readonly paths: string[];
  private readonly startReport: readonly PoolCoreReport[];
  private closing: Promise<void> | null = null;
  private readonly store: CheckpointStore | null;
  /** Checkpoints run one at a time; close() waits for the running one. */
  private checkpointChain: Promise<unknown> = Promise.resolve();

  private constructor(
    cfg: PerCoreWalConfig, paths: string[], slots: CoreSlot[], producer: CoreWalProducer, epoch: EpochRef, report: PoolCoreReport[],
    store: CheckpointStore | null,
  ) {
    super();
    this.store = store;
    this.cfg = cfg;
    this.paths = paths;
    this.slots = slots;
    this.producer = producer;
    this.epochCell = epoch;
    this.startReport = Object.freeze(report.map((r) => Object.freeze(r)));
    for (const s of slots) this.watch(s);
  }

  /**
   * Starts one worker per core on `options.dir`. Each worker reads its segment once (in
   * parallel), cuts a torn tail, and resumes at the highest epoch found in any segment
   * and at its own next sequence. Rejects (and stops every worker) if a segment is damaged
   * (`CORRUPTED`), or the directory holds segments of more cores than `workers`.
   */
  static async start(options: CoreWalPoolOptions): Promise<CoreWalPool> {
    const o = checkOptions(options);
    mkdirDurable(o.dir);
    refuseExtraSegments(o.config);
    const epoch = o.epochRef ?? EpochRef.create(0n);
    const rings = Array.from({ length: o.workers }, () => createRing(o.ringBytes));
    const paths = Array.from({ length: o.workers }, (_, c) => o.config.segmentPath(c));
    const slots: CoreSlot[] = [];
    try {
      for (let c = 0; c < o.workers; c++) slots.push(spawn(c, paths[c]!, rings[c]!, epoch, o));
      const scans = await Promise.all(slots.map((s) => expect(s, 'scanned'))) as Extract<WorkerReport, { type: 'scanned' }>[];
      // Every core resumes at the highest epoch any segment reached, so new entries order
      // after every surviving one.
      let e = o.minEpoch;
      for (const s of scans) if (s.lastEpoch !== null && s.lastEpoch > e) e = s.lastEpoch;
      e = epoch.raiseTo(e);
      // … and past the latest timestamp at that epoch, even if the wall clock stepped back
      // across the restart (as PerCoreWalManager.open does).
      let floor = -1n;
      for (const s of scans) if (s.lastEpoch === e && s.lastTimestampNs !== null && s.lastTimestampNs > floor) floor = s.lastTimestampNs;
      for (const s of slots) {
        const min = o.minSequences?.[s.core];
        send(s, { type: 'open', epoch: e, minTimestampNs: floor >= 0n ? floor + 1n : null, minSequence: min === undefined ? null : min });
      }
      const ready = await Promise.all(slots.map((s) => expect(s, 'ready'))) as Extract<WorkerReport, { type: 'ready' }>[];
      const report = scans.map((s, c): PoolCoreReport => ({
        coreId: c, path: paths[c]!, validEnd: s.validEnd, fileLen: s.fileLen, entries: s.entries, tail: s.tail, sequence: ready[c]!.sequence,
      }));
      const producer = CoreWalProducer.fromHandle({ kind: 'corewal-producer', rings, maxRecordSize: o.maxRecordSize, backpressure: o.backpressure });
      return new CoreWalPool(o.config, paths, slots, producer, epoch, report, o.store);
    } catch (e) {
      await Promise.all(slots.map(async (s) => { await s.worker.terminate(); s.port.close(); }));
      throw e;
    }
  }

  /** Appends a Put to the key's core (or `options.core`); resolves with its ticket once durable. */
  put(key: Uint8Array | string, value: Uint8Array | string, options?: AppendOptions): Promise<number> {
    if (this.closing !== null) return Promise.reject(this.closedError());
    return this.producer.put(key, value, options);
  }

  /** Appends a Delete to the key's core (or `options.core`); resolves with its ticket once durable. */
  delete(key: Uint8Array | string, options?: AppendOptions): Promise<number> {
    if (this.closing !== null) return Promise.reject(this.closedError());
    return this.producer.delete(key, options);
  }

  /** Appends a Commit (source offsets, optional watermark) to `options.core` (default 0); resolves once durable. */
  commit(offsets: ReadonlyMap<string, U64Like> | Record<string, U64Like>, watermark: U64Like | null = null, options?: AppendOptions): Promise<number> {
    if (this.closing !== null) return Promise.reject(this.closedError());
    return this.producer.commit(offsets, watermark, options);
  }

  /** The core a key is routed to. */
  coreOf(key: Uint8Array | string): number { return this.producer.coreOf(key); }

  /** A handle to post to another thread, where `CoreWalProducer.fromHandle` turns it into a producer. */
  producerHandle(): CoreWalProducerHandle { return this.producer.handle(); }

  numCores(): number { return this.slots.length; }
  /** The WAL's directory, core count and segment names, e.g. for `PerCoreRecoveryManager` or `PerCoreWalManager.open` after `close()`. */
  config(): PerCoreWalConfig { return this.cfg; }
  segmentPath(coreId: number): string {
    const p = this.paths[coreId];
    if (p === undefined) throw new PerCoreWalError('INVALID_CORE_ID', `core id must be an integer in [0, ${this.paths.length}), got ${String(coreId)}`);
    return p;
  }

  /** What `start` found in each segment. */
  openReport(): readonly PoolCoreReport[] { return this.startReport; }

  /** The global epoch. */
  epoch(): bigint { return this.epochCell.load(); }

  /** Advances the global epoch; every worker stamps its next batch with it. Returns the new epoch. */
  advanceEpoch(): bigint { return this.epochCell.advance(); }

  /** The global epoch's shared handle: post `epochRef().shared` to a thread, rebuild it with `EpochRef.fromShared`. */
  epochRef(): EpochRef { return this.epochCell; }

  /** Per core, the bytes of its segment the worker has made durable (as last published). */
  syncedPositions(): number[] {
    return this.slots.map((s) => {
      for (;;) {
        const v = Atomics.load(s.ctrl, SYNCED_SEQ);
        const lo = Atomics.load(s.ctrl, SYNCED_LO) >>> 0;
        const hi = Atomics.load(s.ctrl, SYNCED_HI);
        if ((v & 1) === 0 && Atomics.load(s.ctrl, SYNCED_SEQ) === v) return hi * 4294967296 + lo;
      }
    });
  }

  /** Cores whose worker died, in increasing order. */
  failedCores(): number[] {
    return this.slots.filter((s) => s.failed !== null).map((s) => s.core);
  }

  /** The error that made `coreId` fail, or null. */
  coreError(coreId: number): PerCoreWalError | null { return this.slots[coreId]?.failed ?? null; }

  /** Appends of the main thread not yet durable or refused. */
  pending(): number { return this.producer.pending(); }

  /**
   * Folds every core's segment into the pool's `checkpointStore` and then resets the
   * segments — the thread-per-core counterpart of
   * {@link PerCoreCheckpointCoordinator.createCheckpoint}, with the same files and the
   * same crash safety (SPEC invariant 7):
   *
   * 1. every worker appends an epoch barrier at the next epoch after what it has
   *    consumed, syncs, reports its position and sequence, and pauses — producers keep
   *    queueing into the rings meanwhile, so nothing appended after a barrier can be lost
   *    by the reset;
   * 2. the segments are merged up to those positions into the store (on this thread) and
   *    the checkpoint is written durably with the barriers' positions and CRCs;
   * 3. the global epoch moves to the checkpoint's; each worker resets its segment and
   *    resumes with what waited in its ring.
   *
   * A crash before step 2 completes recovers from the previous checkpoint plus the whole
   * WAL; after it, recovery skips what a segment still holds up to its barrier. A worker
   * failing during steps 1–2 makes the checkpoint reject with `WORKER_FAILED` (the others
   * resume); a core that has already failed makes it reject at once.
   *
   * @example
   * ```ts
   * const store = CheckpointStore.open({ checkpointDir: '/data/checkpoints' });
   * const pool = await CoreWalPool.start({ dir: '/data/wal', checkpointStore: store });
   * await pool.put('k', 'v');
   * const { checkpoint } = await pool.createCheckpoint(1n);
   * store.get('k');             // 'v'; the segments are empty again
   * ```
   */
  createCheckpoint(checkpointId: U64Like): Promise<PerCoreCheckpointMetadata> {
    return this.enqueueCheckpoint(checkpointId, true);
  }

  /** A checkpoint that leaves the segments as they are (e.g. a backup keeping WAL history). */
  createCheckpointNoTruncate(checkpointId: U64Like): Promise<PerCoreCheckpointMetadata> {
    return this.enqueueCheckpoint(checkpointId, false);
  }

  /** The checkpoint store given to `start`, or null. */
  checkpointStore(): CheckpointStore | null { return this.store; }

  private enqueueCheckpoint(checkpointId: U64Like, reset: boolean): Promise<PerCoreCheckpointMetadata> {
    if (this.closing !== null) return Promise.reject(this.closedError());
    const run = this.checkpointChain.catch(() => {}).then(() => this.checkpoint(checkpointId, reset));
    this.checkpointChain = run;
    return run;
  }

  private async checkpoint(checkpointId: U64Like, reset: boolean): Promise<PerCoreCheckpointMetadata> {
    const store = this.store;
    if (store === null) {
      throw new PerCoreWalError('INVALID_ARGUMENT', 'createCheckpoint needs a checkpointStore: pass one to CoreWalPool.start');
    }
    const id = toU64(checkpointId, 'checkpointId');
    const previous = store.latestCheckpoint();
    if (previous !== null && id <= previous.id) {
      throw new PerCoreWalError('INVALID_ARGUMENT', `checkpoint id ${id} must be greater than the latest checkpoint's, ${previous.id}`);
    }
    for (const s of this.slots) {
      if (s.failed !== null) {
        throw new PerCoreWalError('WORKER_FAILED', `cannot checkpoint: the worker of core ${s.core} has failed; restart the pool to recover its segment`,
          { coreId: s.core, path: this.paths[s.core], cause: s.failed });
      }
    }
    const cfg = this.cfg;
    const n = this.slots.length;
    const from = replayStarts(previous, n, (c) => cfg.segmentPath(c), cfg.fs);
    const target = this.epochCell.load() + 1n;
    const barriers = this.slots.map((s) => expect(s, 'barrierDone'));
    for (const s of this.slots) send(s, { type: 'barrier', epoch: target });
    const settled = await Promise.allSettled(barriers);
    const failed = settled.find((r) => r.status === 'rejected');
    if (failed !== undefined) {
      this.resumeAll();
      throw (failed as PromiseRejectedResult).reason;
    }
    const done = settled.map((r) => (r as PromiseFulfilledResult<WorkerReport>).value as Extract<WorkerReport, { type: 'barrierDone' }>);
    let epoch = target;
    for (const d of done) if (d.epoch > epoch) epoch = d.epoch;
    let meta: PerCoreCheckpointMetadata;
    try {
      meta = checkpointAfterBarriers(cfg, store, id, epoch, from, done.map((d) => d.position), done.map((d) => d.sequence));
    } catch (e) {
      // No checkpoint: the segments stay whole and the cores go on (entries after the
      // barriers belong to the new epoch either way).
      this.epochCell.raiseTo(epoch);
      this.resumeAll();
      throw e;
    }
    this.epochCell.raiseTo(epoch);
    if (!reset) {
      this.resumeAll();
      return meta;
    }
    // The checkpoint is durable (file and directory fsynced): only now may the WAL go.
    const resets = this.slots.map((s) => expect(s, 'resetDone'));
    for (const s of this.slots) if (s.failed === null) send(s, { type: 'reset' });
    const r = await Promise.allSettled(resets);
    const bad = r.find((x) => x.status === 'rejected');
    // A core that died before its reset is still recoverable: its barrier is in place.
    if (bad !== undefined) throw (bad as PromiseRejectedResult).reason;
    return meta;
  }

  private resumeAll(): void {
    for (const s of this.slots) if (s.failed === null && !s.exited) send(s, { type: 'resume' });
  }

  /**
   * Drains every ring, syncs and closes every segment, and stops the workers. Appends of
   * the main thread that were waiting for room in a ring go in first; appends made after
   * `close()` is called reject with `CLOSED`. Idempotent.
   */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    await this.checkpointChain.catch(() => {});
    await this.producer.whenUnblocked();
    const live = this.slots.filter((s) => s.failed === null && !s.exited);
    await Promise.all(live.map(async (s) => {
      const closed = expect(s, 'closed').catch((e: unknown) => e);
      send(s, { type: 'stop' });
      await closed;
      await s.exit;
    }));
    this.producer.pokeAll();
    const failed = this.slots.filter((s) => s.failed !== null && !s.exited);
    await Promise.all(failed.map((s) => s.worker.terminate()));
  }

  /**
   * @internal Test hook: makes a core's worker die as a bug or the OS would make it —
   * `'exit'` (process.exit inside it), `'throw'` (an uncaught exception), `'terminate'`
   * (`worker.terminate()` from outside).
   */
  async injectFault(coreId: number, how: 'exit' | 'throw' | 'terminate'): Promise<void> {
    const s = this.slots[coreId];
    if (s === undefined) throw new PerCoreWalError('INVALID_CORE_ID', `no core ${coreId}`);
    if (how === 'terminate') await s.worker.terminate();
    else send(s, { type: 'fault', how });
    await s.exit;
  }

  /** @internal The worker of a core, for tests and diagnostics. */
  workerOf(coreId: number): Worker | undefined { return this.slots[coreId]?.worker; }

  private closedError(): PerCoreWalError {
    return new PerCoreWalError('CLOSED', `the pool on ${this.cfg.baseDir} is closed`, { path: this.cfg.baseDir });
  }

  private watch(s: CoreSlot): void {
    s.port.on('message', (m: WorkerReport) => {
      if (m.type === 'failed') this.markFailed(s, fromWire(m.error));
    });
    void s.exit.then((code) => {
      // Reports posted just before the exit may still sit in the port.
      drainReports(s);
      if (Atomics.load(s.ctrl, STATE) !== STATE_CLOSED) {
        this.markFailed(s, new PerCoreWalError('WORKER_FAILED', `the worker of core ${s.core} exited (code ${code}) without closing its segment`,
          { coreId: s.core, path: this.paths[s.core] }));
      }
      // A listening port keeps the event loop alive.
      s.port.close();
    });
  }

  private markFailed(s: CoreSlot, cause: PerCoreWalError): void {
    if (s.failed !== null) return;
    if (Atomics.load(s.ctrl, STATE) === STATE_CLOSED) return;
    const err = new PerCoreWalError('WORKER_FAILED',
      `the worker of core ${s.core} failed; appends not yet durable on it are lost and later ones refused until the pool is restarted: ${cause.message}`,
      { coreId: s.core, path: this.paths[s.core], cause });
    s.failed = err;
    Atomics.store(s.ctrl, STATE, STATE_FAILED);
    Atomics.notify(s.ctrl, DURABLE);
    Atomics.notify(s.ctrl, TAIL);
    this.producer.failCore(s.core, err);
    for (const w of s.waiting.values()) w.reject(err);
    s.waiting.clear();
    if (this.listenerCount('coreFailed') > 0) this.emit('coreFailed', s.core, err);
  }
}

interface CheckedOptions {
  dir: string;
  workers: number;
  config: PerCoreWalConfig;
  ringBytes: number;
  backpressure: BackpressureMode;
  bufferSize: number | undefined;
  preallocate: number | undefined;
  maxRecordSize: number;
  minEpoch: bigint;
  minSequences: bigint[] | undefined;
  epochRef: EpochRef | undefined;
  store: CheckpointStore | null;
}

function checkOptions(options: CoreWalPoolOptions): CheckedOptions {
  if (options === null || typeof options !== 'object') throw new PerCoreWalError('INVALID_ARGUMENT', 'CoreWalPool.start takes an options object');
  const { dir } = options;
  if (typeof dir !== 'string' || dir.length === 0) throw new PerCoreWalError('INVALID_ARGUMENT', 'options.dir must be a non-empty string');
  const workers = options.workers ?? availableParallelism();
  if (!Number.isInteger(workers) || workers < 1 || workers > 65536) {
    throw new PerCoreWalError('INVALID_ARGUMENT', `workers must be an integer in [1, 65536], got ${String(workers)}`);
  }
    const bp = options.backpressure ?? 'wait';
  if (bp !== 'wait' && bp !== 'reject') throw new PerCoreWalError('INVALID_ARGUMENT', `backpressure must be 'wait' or 'reject', got ${String(bp)}`);
  for (const k of ['bufferSize', 'preallocate', 'maxRecordSize'] as const) {
    const v = options[k];
    if (v !== undefined && (!Number.isSafeInteger(v) || v < 0)) throw new PerCoreWalError('INVALID_ARGUMENT', `${k} must be a non-negative integer, got ${String(v)}`);
  }
  const store = options.checkpointStore ?? null;
  if (store !== null && !(store instanceof CheckpointStore)) throw new PerCoreWalError('INVALID_ARGUMENT', 'checkpointStore must be a CheckpointStore');
  let minSequences: bigint[] | undefined;
  if (options.minSequences !== undefined) {
    if (!Array.isArray(options.minSequences) || options.minSequences.length !== workers) {
      throw new PerCoreWalError('INVALID_ARGUMENT', `minSequences must hold one sequence per core (${workers})`);
    }
    minSequences = options.minSequences.map((s, c) => toU64(s, `minSequences[${c}]`));
  }
  let minEpoch = options.minEpoch === undefined ? 0n : toU64(options.minEpoch, 'minEpoch');
  // Segments a checkpoint reset resume at its epoch and sequences.
  const latest = store?.latestCheckpoint() ?? null;
  if (latest !== null) {
    if (latest.epoch > minEpoch) minEpoch = latest.epoch;
    const seqs = minSequences ?? new Array<bigint>(workers).fill(0n);
    for (let c = 0; c < workers && c < latest.nextSequences.length; c++) if (latest.nextSequences[c]! > seqs[c]!) seqs[c] = latest.nextSequences[c]!;
    minSequences = seqs;
  }
  return {
    dir, workers, config: new PerCoreWalConfig(dir, workers, { segmentPattern: options.segmentPattern }), ringBytes: options.ringBytes ?? DEFAULT_RING_BYTES, backpressure: bp,
    bufferSize: options.bufferSize, preallocate: options.preallocate, maxRecordSize: options.maxRecordSize ?? DEFAULT_MAX_RECORD_SIZE,
    minEpoch, minSequences, epochRef: options.epochRef, store,
  };
}

function mkdirDurable(dir: string): void {
  if (existsSync(dir)) return;
  try {
    mkdirSync(dir, { recursive: true });
    realFs.fsyncDir(dirname(dir));
  } catch (e) {
    throw new PerCoreWalError('IO', `cannot create the WAL directory ${dir}: ${(e as Error).message}`, { path: dir, cause: e });
  }
}

/** A WAL written with more cores than this pool has would lose the extra segments from view. */
function refuseExtraSegments(config: PerCoreWalConfig): void {
  const { baseDir: dir, numCores: workers } = config;
  const [pre, post] = config.segmentPattern.split('{core_id}') as [string, string];
  for (const f of readdirSync(dir)) {
    if (!f.startsWith(pre) || !f.endsWith(post)) continue;
    const id = f.slice(pre.length, f.length - post.length);
    if (/^\d+$/.test(id) && Number(id) >= workers) {
      throw new PerCoreWalError('INVALID_ARGUMENT',
        `${join(dir, f)} belongs to core ${id}, but the pool was started with ${workers} workers; start it with at least ${Number(id) + 1}`,
        { path: join(dir, f), coreId: Number(id) });
    }
  }
}

function spawn(core: number, path: string, ring: SharedArrayBuffer, epoch: EpochRef, o: CheckedOptions): CoreSlot {
  const { port1, port2 } = new MessageChannel();
  const wd: CoreWorkerData = {
    coreId: core, path, ring, epoch: epoch.shared, port: port2,
    bufferSize: o.bufferSize, preallocate: o.preallocate, maxRecordSize: o.maxRecordSize,
  };
  const worker = new Worker(workerUrl, { workerData: wd, transferList: [port2] });
  const exit = new Promise<number>((resolve) => worker.once('exit', resolve));
  // An uncaught exception also ends in 'exit'; the listener keeps it from being rethrown here.
  worker.on('error', () => {});
  const slot: CoreSlot = {
    core, worker, port: port1, ctrl: new Int32Array(ring, 0, 64), failed: null, exited: false, exit,
    waiting: new Map(),
  };
  void exit.then(() => { slot.exited = true; });
  port1.on('message', (m: WorkerReport) => {
    const w = slot.waiting.get(m.type);
    if (w !== undefined) { slot.waiting.delete(m.type); w.resolve(m); }
    if (m.type === 'failed') {
      const err = fromWire(m.error);
      for (const x of slot.waiting.values()) x.reject(err);
      slot.waiting.clear();
    }
  });
  void exit.then((code) => {
    drainReports(slot);
    const err = slot.failed ?? new PerCoreWalError('WORKER_FAILED', `the worker of core ${core} exited (code ${code})`, { coreId: core, path });
    for (const x of slot.waiting.values()) x.reject(err);
    slot.waiting.clear();
  });
  return slot;
}

/** Delivers reports still queued on the port (the 'exit' event can overtake them). */
function drainReports(s: CoreSlot): void {
  for (let m = receiveMessageOnPort(s.port); m !== undefined; m = receiveMessageOnPort(s.port)) s.port.emit('message', m.message);
}

function expect(s: CoreSlot, type: WorkerReport['type']): Promise<WorkerReport> {
  if (s.exited) {
    return Promise.reject(s.failed ?? new PerCoreWalError('WORKER_FAILED', `the worker of core ${s.core} has exited`, { coreId: s.core }));
  }
  return new Promise((resolve, reject) => s.waiting.set(type, { resolve, reject }));
}

function send(s: CoreSlot, cmd: PoolCommand): void {
  s.port.postMessage(cmd);
  // The worker may be asleep on WAKE (idle) or on CMD (paused): wake it either way.
  Atomics.add(s.ctrl, CMD, 1);
  Atomics.add(s.ctrl, WAKE, 1);
  Atomics.notify(s.ctrl, CMD);
  Atomics.notify(s.ctrl, WAKE);
}
