import { EventEmitter } from 'node:events';
import type { Worker } from 'node:worker_threads';
import { checkpointAfterBarriersAsync, type PerCoreCheckpointMetadata } from '../checkpoint/coordinator.js';
import { replayStarts } from '../checkpoint/resume.js';
import type { CheckpointStore } from '../checkpoint/store.js';
import type { U64Like } from '../entry/entry.js';
import { PerCoreWalError } from '../errors/errors.js';
import { toU64 } from '../util/u64.js';
import type { PerCoreWalConfig } from '../manager/config.js';
import { EpochRef } from '../manager/epoch.js';
import { checkOptions, mkdirDurable, refuseExtraSegments, type CoreWalPoolOptions } from './pool-options.js';
import { CoreWalProducer, type AppendOptions, type CoreWalProducerHandle } from './producer.js';
import { DURABLE, fromWire, STATE, STATE_CLOSED, STATE_FAILED, SYNCED_HI, SYNCED_LO, SYNCED_SEQ, TAIL, type WorkerReport } from './protocol.js';
import { createRing } from './ring.js';
import { drainReports, expectReport, sendCommand, spawnCore, type CoreSlot } from './slot.js';

export type { CoreWalPoolOptions } from './pool-options.js';

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

/** @internal The steps of a pool checkpoint a test hook sees; see {@link CoreWalPool.setCheckpointHook}. */
export type CheckpointStep = 'barriers' | 'durable' | 'compacted';

type PoolEvents = {
  coreFailed: [coreId: number, error: PerCoreWalError];
};

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
  private checkpointHook: ((step: CheckpointStep) => void | Promise<void>) | null = null;

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
      for (let c = 0; c < o.workers; c++) slots.push(spawnCore(c, paths[c]!, rings[c]!, epoch, o));
      const scans = await Promise.all(slots.map((s) => expectReport(s, 'scanned'))) as Extract<WorkerReport, { type: 'scanned' }>[];
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
        sendCommand(s, { type: 'open', epoch: e, minTimestampNs: floor >= 0n ? floor + 1n : null, minSequence: min === undefined ? null : min });
      }
      const ready = await Promise.all(slots.map((s) => expectReport(s, 'ready'))) as Extract<WorkerReport, { type: 'ready' }>[];
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
   * Folds every core's segment into the pool's `checkpointStore` and then drops what the
   * checkpoint holds from the segments — the thread-per-core counterpart of
   * {@link PerCoreCheckpointCoordinator.createCheckpoint}, with the same files and the
   * same crash safety (SPEC invariant 7), but without stalling appends:
   *
   * 1. every worker appends an epoch barrier at the next epoch after what it has
   *    consumed, syncs, reports its position and sequence, and goes on consuming its ring
   *    (what follows the barrier is at the barrier's epoch and not in this checkpoint);
   *    the global epoch then moves to the highest barrier's;
   * 2. the segments are merged up to those positions on this thread, in slices of a few
   *    milliseconds between which the event loop runs (appends keep being acknowledged);
   *    the store takes the merged changes and the checkpoint is written durably, with the
   *    barriers' positions and CRCs, in one synchronous step, so nobody sees the store
   *    half-merged;
   * 3. each worker compacts its segment ({@link CoreWalWriter.beginCompaction}, the
   *    two-phase {@link CoreWalWriter.compactFrom}): the records after its barrier move,
   *    crash-safely, to the front of a new segment file; the worker goes on appending
   *    during the copy, and its appends wait only for the short final step.
   *
   * A crash before step 2 completes recovers from the previous checkpoint plus the whole
   * WAL; after it, recovery skips what a segment still holds up to its barrier, or, once
   * compacted, replays the segment whole. A worker failing during steps 1–2 makes the
   * checkpoint reject with `WORKER_FAILED` (the others go on); one failing in step 3
   * leaves a durable checkpoint (its segment still holds its barrier, so a restart
   * recovers it) but the call rejects too. A core that has already failed makes it
   * reject at once.
   *
   * @example
   * ```ts
   * const store = CheckpointStore.open({ checkpointDir: '/data/checkpoints' });
   * const pool = await CoreWalPool.start({ dir: '/data/wal', checkpointStore: store });
   * await pool.put('k', 'v');
   * const { checkpoint } = await pool.createCheckpoint(1n);
   * store.get('k');             // 'v'; the segments hold only what came after the barriers
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

  /**
   * @internal Test hook: awaited at each step of a checkpoint — `'barriers'` (every
   * barrier synced, the merge about to start), `'durable'` (the checkpoint file and its
   * directory entry are durable, nothing compacted yet), `'compacted'` (every segment
   * compacted). Crash tests kill the process there.
   */
  setCheckpointHook(hook: ((step: CheckpointStep) => void | Promise<void>) | null): void { this.checkpointHook = hook; }

  private enqueueCheckpoint(checkpointId: U64Like, compact: boolean): Promise<PerCoreCheckpointMetadata> {
    if (this.closing !== null) return Promise.reject(this.closedError());
    const run = this.checkpointChain.catch(() => {}).then(() => this.checkpoint(checkpointId, compact));
    this.checkpointChain = run;
    return run;
  }

  private async checkpoint(checkpointId: U64Like, compact: boolean): Promise<PerCoreCheckpointMetadata> {
    const store = this.store;
    if (store === null) {
      throw new PerCoreWalError('INVALID_ARGUMENT', 'createCheckpoint needs a checkpointStore: pass one to CoreWalPool.start');
    }
    const id = toU64(checkpointId, 'checkpointId');
    const previous = store.latestCheckpoint();
    if (previous !== null && id <= previous.id) {
      throw new PerCoreWalError('INVALID_ARGUMENT', `checkpoint id ${id} must be greater than the latest checkpoint's, ${previous.id}`);
    }
    this.throwIfAnyFailed();
    const cfg = this.cfg;
    const n = this.slots.length;
    // Read before the barriers: the previous checkpoint's compaction is over (checkpoints
    // run one at a time), so this is where what it does not hold begins.
    const from = replayStarts(previous, n, (c) => cfg.segmentPath(c), cfg.fs);
    const target = this.epochCell.load() + 1n;
    const barriers = this.slots.map((s) => expectReport(s, 'barrierDone'));
    for (const s of this.slots) sendCommand(s, { type: 'barrier', epoch: target });
    const settled = await Promise.allSettled(barriers);
    const failed = settled.find((r) => r.status === 'rejected');
    // The cores that did write a barrier just go on: a barrier no checkpoint names is a marker.
    if (failed !== undefined) throw (failed as PromiseRejectedResult).reason;
    const done = settled.map((r) => (r as PromiseFulfilledResult<WorkerReport>).value as Extract<WorkerReport, { type: 'barrierDone' }>);
    let epoch = target;
    for (const d of done) if (d.epoch > epoch) epoch = d.epoch;
    // Every core has its barrier: from now on no core may stamp anything below `epoch`.
    this.epochCell.raiseTo(epoch);
    await this.checkpointHook?.('barriers');
    // The merge reads the segments up to the barriers while the workers append past them.
    const meta = await checkpointAfterBarriersAsync(cfg, store, id, epoch, from, done.map((d) => d.position), done.map((d) => d.sequence));
    await this.checkpointHook?.('durable');
    if (!compact) return meta;
    // The checkpoint is durable (file and directory fsynced): only now may the WAL go.
    const compactions = this.slots.map((s) => expectReport(s, 'compactDone'));
    this.slots.forEach((s, c) => { if (s.failed === null) sendCommand(s, { type: 'compact', position: done[c]!.position }); });
    const r = await Promise.allSettled(compactions);
    const bad = r.find((x) => x.status === 'rejected');
    // A core that died before its compaction is still recoverable: its barrier is in place.
    if (bad !== undefined) throw (bad as PromiseRejectedResult).reason;
    await this.checkpointHook?.('compacted');
    return meta;
  }

  private throwIfAnyFailed(): void {
    for (const s of this.slots) {
      if (s.failed !== null) {
        throw new PerCoreWalError('WORKER_FAILED', `cannot checkpoint: the worker of core ${s.core} has failed; restart the pool to recover its segment`,
          { coreId: s.core, path: this.paths[s.core], cause: s.failed });
      }
    }
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
      const closed = expectReport(s, 'closed').catch((e: unknown) => e);
      sendCommand(s, { type: 'stop' });
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
    else sendCommand(s, { type: 'fault', how });
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
