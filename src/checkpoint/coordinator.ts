import type { U64Like } from '../entry/entry.js';
import { PerCoreWalError } from '../errors/errors.js';
import type { PerCoreWalConfig } from '../manager/config.js';
import { PerCoreWalManager } from '../manager/manager.js';
import { mergeCursors } from '../recovery/merge.js';
import { foldReplay, ReplayTable } from '../recovery/replay-table.js';
import { assert } from '../util/assert.js';
import { toU64 } from '../util/u64.js';
import type { CheckpointMetadata } from './format.js';
import { checkpointVisitor, openCheckpointCursors } from './merge-visit.js';
import { barrierCrcAt, BARRIER_RECORD_SIZE, replayStarts } from './resume.js';
import { mergeSegmentsStaged, Slicer, type MergeSlicing } from './staged-merge.js';
import { CheckpointStore } from './store.js';

/** What one coordinated checkpoint did. */
export interface PerCoreCheckpointMetadata {
  checkpoint: CheckpointMetadata;
  /** Per core, the segment position after the epoch barrier (before the reset). */
  walPositions: number[];
  /** WAL entries merged into the checkpoint (markers included; entries an earlier checkpoint held are not). */
  entriesMerged: number;
}

/**
 * Folds every core's segment into a {@link CheckpointStore} checkpoint:
 * advance the epoch (to E), write an epoch barrier to every segment, sync them all,
 * merge them in global order and apply Put/Delete to the state and Commit to the source
 * offsets and watermark (markers are ignored), write the checkpoint durably — with
 * epoch E, the per-core positions and next sequences — and only then reset the segments.
 *
 * Crash safety (SPEC invariant 7): the checkpoint records, per core, the position just
 * past its barrier and the barrier record's CRC. Recovery replays a segment from there if
 * that barrier is still in place (the segment was not reset) and from its start if not
 * (it was reset: all it holds came later). So a crash before the checkpoint is durable
 * replays from the previous one, a crash after it but before or while the segments are
 * reset skips the entries still there that the checkpoint holds, and no entry is applied
 * twice — whatever epoch or sequence a restarted writer resumed at.
 *
 * @example
 * ```ts
 * const wal = PerCoreWalManager.create(new PerCoreWalConfig('/data/wal', 2));
 * const store = CheckpointStore.open({ checkpointDir: '/data/checkpoints' });
 * const coordinator = PerCoreCheckpointCoordinator.create(wal, store);
 * wal.writer(0).appendPut(Buffer.from('k'), Buffer.from('v'));
 * const { checkpoint, entriesMerged } = coordinator.createCheckpoint(1n);
 * store.get('k');            // Buffer 'v'; the segments are empty again
 * ```
 */
export class PerCoreCheckpointCoordinator {
  private readonly wal: PerCoreWalManager;
  private readonly cps: CheckpointStore;

  private constructor(wal: PerCoreWalManager, store: CheckpointStore) {
    this.wal = wal;
    this.cps = store;
  }

  /**
   * Ties a WAL to a checkpoint store. If the store's latest checkpoint is ahead of the
   * WAL (its segments were reset and the WAL was opened without `minEpoch` /
   * `minSequences`), the writers are moved up to the checkpoint's epoch and sequences, so
   * that epochs and sequences keep increasing across the checkpoint.
   */
  static create(walManager: PerCoreWalManager, store: CheckpointStore): PerCoreCheckpointCoordinator {
    if (!(walManager instanceof PerCoreWalManager)) throw new PerCoreWalError('INVALID_ARGUMENT', 'walManager must be a PerCoreWalManager');
    if (!(store instanceof CheckpointStore)) throw new PerCoreWalError('INVALID_ARGUMENT', 'store must be a CheckpointStore');
    const latest = store.latestCheckpoint();
    if (latest !== null) {
      let max = latest.epoch;
      for (let c = 0; c < walManager.numCores(); c++) if (walManager.writer(c).epoch() > max) max = walManager.writer(c).epoch();
      if (walManager.epoch() < max) walManager.setEpochAll(max);
      for (let c = 0; c < walManager.numCores() && c < latest.nextSequences.length; c++) walManager.writer(c).raiseSequenceTo(latest.nextSequences[c]!);
    }
    return new PerCoreCheckpointCoordinator(walManager, store);
  }

  walManager(): PerCoreWalManager { return this.wal; }
  store(): CheckpointStore { return this.cps; }

  /** Checkpoint, then reset every segment. */
  createCheckpoint(checkpointId: U64Like): PerCoreCheckpointMetadata {
    return this.checkpoint(checkpointId, true);
  }

  /** Checkpoint without resetting the segments (e.g. a backup checkpoint keeping WAL history). */
  createCheckpointNoTruncate(checkpointId: U64Like): PerCoreCheckpointMetadata {
    return this.checkpoint(checkpointId, false);
  }

  /** The global epoch. */
  epoch(): bigint { return this.wal.epoch(); }

  /** Syncs every segment, without checkpointing. */
  flush(): void { this.wal.syncAll(); }

  /** Source offsets as of the latest checkpoint (plus any set on the store since). */
  sourceOffsets(): Map<string, bigint> { return this.cps.sourceOffsets(); }

  watermark(): bigint | null { return this.cps.watermark(); }

  listCheckpoints(): CheckpointMetadata[] { return this.cps.listCheckpoints(); }

  cleanupOldCheckpoints(keepCount: number): void { this.cps.cleanupOldCheckpoints(keepCount); }

  private checkpoint(checkpointId: U64Like, reset: boolean): PerCoreCheckpointMetadata {
    // Every argument and writer is checked before the first barrier is written.
    const id = toU64(checkpointId, 'checkpointId');
    const store = this.cps;
    const wal = this.wal;
    const previous = store.latestCheckpoint();
    if (previous !== null && id <= previous.id) {
      throw new PerCoreWalError('INVALID_ARGUMENT', `checkpoint id ${id} must be greater than the latest checkpoint's, ${previous.id}`);
    }
    const n = wal.numCores();
    for (let c = 0; c < n; c++) {
      const w = wal.writer(c);
      const poison = w.poisonedBy();
      if (poison !== null) {
        throw new PerCoreWalError('POISONED', `cannot checkpoint: the writer of core ${c} is poisoned (${poison.message})`, { coreId: c, path: w.path(), cause: poison });
      }
      if (w.isSyncPending() || w.writesInFlight() > 0) {
        throw new PerCoreWalError('SYNC_IN_FLIGHT', `cannot checkpoint: core ${c} has StorageIo operations in flight; feed their completions to checkAllCompletions first`,
          { coreId: c, path: w.path() });
      }
    }
    const cfg = wal.config();
    // Where the entries the previous checkpoint does not hold begin: after its barrier in a
    // segment it did not reset, at 0 in one it did.
    const from = replayStarts(previous, n, (c) => cfg.segmentPath(c), cfg.fs);
    const epoch = wal.advanceEpoch();
    const barrierStarts: number[] = [];
    for (let c = 0; c < n; c++) barrierStarts.push(wal.writer(c).appendEpochBarrier());
    wal.syncAll();
    const walPositions = wal.positions();
    const nextSequences: bigint[] = [];
    for (let c = 0; c < n; c++) {
      assert(walPositions[c] === barrierStarts[c]! + BARRIER_RECORD_SIZE, 'the barrier is the last record of its segment');
      nextSequences.push(wal.writer(c).sequence());
    }
    const done = checkpointAfterBarriers(cfg, store, id, epoch, from, walPositions, nextSequences);
    // The checkpoint is durable (file and directory fsynced): only now may the WAL go.
    if (reset) wal.resetAll();
    return done;
  }
}

/**
 * @internal Shared by {@link PerCoreCheckpointCoordinator} and `CoreWalPool`.
 * Merges every segment from `from` to `to` in global order into the store: commits as
 * they come, Puts and Deletes through a replay table folded in at the end (the last
 * change per key, the live values read once), so that a WAL overwriting its keys costs
 * no allocation per entry. Any bad byte is an error: these segments are live and synced.
 */
export function mergeSegmentsIntoStore(cfg: PerCoreWalConfig, store: CheckpointStore, from: readonly number[], to: readonly number[]): number {
  const cursors = openCheckpointCursors(cfg, from, to);
  try {
    const table = new ReplayTable();
    const n = mergeCursors(cursors, checkpointVisitor(table, (offsets, watermark) => {
      for (const [name, off] of offsets) store.setSourceOffset(name, off);
      if (watermark !== null) store.setWatermark(watermark);
    }));
    foldReplay(table, cursors, (k, v) => store.putByMapKey(k, v), (k) => store.deleteByMapKey(k));
    return n;
  } finally {
    for (const c of cursors) c.close();
  }
}

/**
 * @internal Shared by {@link PerCoreCheckpointCoordinator} and `CoreWalPool`: everything
 * a checkpoint does once every segment ends with its synced epoch barrier (at
 * `walPositions`): the barriers' CRCs, the merge of `from`..`walPositions` into the store,
 * and the durable checkpoint file. The caller resets the segments afterwards, if at all.
 */
export function checkpointAfterBarriers(
  cfg: PerCoreWalConfig, store: CheckpointStore, id: bigint, epoch: bigint,
  from: readonly number[], walPositions: number[], nextSequences: bigint[],
): PerCoreCheckpointMetadata {
  const barrierCrcs: number[] = [];
  for (let c = 0; c < walPositions.length; c++) barrierCrcs.push(barrierCrcAt(cfg.fs, cfg.segmentPath(c), c, walPositions[c]!));
  const merged = mergeSegmentsIntoStore(cfg, store, from, walPositions);
  const checkpoint = store.createCheckpoint(id, { epoch, walPositions, nextSequences, barrierCrcs });
  return { checkpoint, walPositions, entriesMerged: merged };
}

/**
 * @internal For `CoreWalPool`: {@link checkpointAfterBarriers} for a thread that others
 * share. The merge gives the event loop a turn every few milliseconds and is staged; the
 * checkpoint file is written in slices too, and the store takes the merge together with
 * the checkpoint in one synchronous step at the end, so nobody sees the store half-merged. The writers may go on appending after their
 * barriers meanwhile: the merge reads only up to `walPositions`.
 */
export async function checkpointAfterBarriersAsync(
  cfg: PerCoreWalConfig, store: CheckpointStore, id: bigint, epoch: bigint,
  from: readonly number[], walPositions: number[], nextSequences: bigint[], slicing?: MergeSlicing,
): Promise<PerCoreCheckpointMetadata> {
  const barrierCrcs: number[] = [];
  for (let c = 0; c < walPositions.length; c++) barrierCrcs.push(barrierCrcAt(cfg.fs, cfg.segmentPath(c), c, walPositions[c]!));
  const slicer = new Slicer(slicing);
  const staged = await mergeSegmentsStaged(cfg, from, walPositions, slicer);
  const checkpoint = await store.createCheckpointStaged(id, { epoch, walPositions, nextSequences, barrierCrcs }, staged, () => slicer.maybeYield());
  return { checkpoint, walPositions, entriesMerged: staged.entries };
}
