import type { PerCoreWalEntry, U64Like } from '../entry/entry.js';
import { PerCoreWalError } from '../errors/errors.js';
import { PerCoreWalManager } from '../manager/manager.js';
import { hi32, lo32, toU64 } from '../util/u64.js';
import type { CheckpointMetadata } from './format.js';
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
 * Crash safety (SPEC invariant 7): every entry before the barriers has an epoch below E
 * and every entry after it E or more, so recovery replays exactly the entries of epoch
 * E and later on top of the checkpoint: a crash before the checkpoint is durable replays
 * from the previous one, a crash after it but before or while the segments are reset
 * skips the old entries still there, and none is applied twice.
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
   * `minSequences`), the writers are moved up to the checkpoint's epoch and sequences so
   * that new entries replay after it. Entries already written below that epoch would be
   * taken for part of the checkpoint: that fails with `EPOCH_MISMATCH`.
   */
  static create(walManager: PerCoreWalManager, store: CheckpointStore): PerCoreCheckpointCoordinator {
    if (!(walManager instanceof PerCoreWalManager)) throw new PerCoreWalError('INVALID_ARGUMENT', 'walManager must be a PerCoreWalManager');
    if (!(store instanceof CheckpointStore)) throw new PerCoreWalError('INVALID_ARGUMENT', 'store must be a CheckpointStore');
    const latest = store.latestCheckpoint();
    if (latest !== null) {
      const n = walManager.numCores();
      for (let c = 0; c < n; c++) {
        const w = walManager.writer(c);
        // A segment the checkpoint left alone ends with its barrier at the checkpoint's epoch;
        // one it reset is empty. Anything else was written after a restart that lost the epoch.
        if (w.epoch() < latest.epoch && w.position() > 0) {
          throw new PerCoreWalError('EPOCH_MISMATCH',
            `core ${c} has entries at epoch ${w.epoch()}, below the epoch ${latest.epoch} of checkpoint ${latest.id}: recovery would take them ` +
            `for part of the checkpoint. Open the WAL with PerCoreWalManager.open(config, { minEpoch, minSequences }) from recoverPerCore's result.`,
            { coreId: c, path: w.path() });
        }
      }
      if (walManager.epoch() < latest.epoch) walManager.setEpochAll(latest.epoch);
      for (let c = 0; c < n && c < latest.nextSequences.length; c++) walManager.writer(c).raiseSequenceTo(latest.nextSequences[c]!);
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
    }
    const epoch = wal.advanceEpoch();
    wal.writeEpochBarrierAll();
    wal.syncAll();
    const walPositions = wal.positions();
    const nextSequences: bigint[] = [];
    for (let c = 0; c < n; c++) nextSequences.push(wal.writer(c).sequence());
    // Entries below the previous checkpoint's epoch are in it already (a no-truncate
    // checkpoint leaves them in the segments).
    const floor = previous?.epoch ?? 0n;
    const fHi = hi32(floor), fLo = lo32(floor);
    let merged = 0;
    const it = wal.mergeIter();
    try {
      for (let r = it.next(); !r.done; r = it.next()) {
        const e: PerCoreWalEntry = r.value;
        if (e.eHi < fHi || (e.eHi === fHi && e.eLo < fLo)) continue;
        merged++;
        const op = e.operation;
        switch (op.type) {
          case 'put': store.putOwned(op.key, op.value); break;
          case 'delete': store.deleteBytes(op.key); break;
          case 'commit':
            for (const [name, off] of op.offsets) store.setSourceOffset(name, off);
            if (op.watermark !== null) store.setWatermark(op.watermark);
            break;
          default: break; // Checkpoint and EpochBarrier entries are markers.
        }
      }
    } finally {
      it.close();
    }
    const checkpoint = store.createCheckpoint(id, { epoch, walPositions, nextSequences });
    // The checkpoint is durable (file and directory fsynced): only now may the WAL go.
    if (reset) wal.resetAll();
    return { checkpoint, walPositions, entriesMerged: merged };
  }
}
