import { TAG_COMMIT, TAG_DELETE, TAG_PUT } from '../entry/codec.js';
import type { PerCoreWalConfig } from '../manager/config.js';
import { SegmentCursor } from '../recovery/cursor.js';
import { DELETED, type ReplayTable } from '../recovery/replay-table.js';

/**
 * Cursors over `from[c]`..`to[c]` of every core's segment, for a checkpoint's merge. Any
 * bad byte is an error: these segments are live and synced. The caller closes them.
 */
export function openCheckpointCursors(cfg: PerCoreWalConfig, from: readonly number[], to: readonly number[]): SegmentCursor[] {
  const cursors: SegmentCursor[] = [];
  try {
    for (let c = 0; c < from.length; c++) {
      cursors.push(new SegmentCursor(c, cfg.segmentPath(c), {
        fs: cfg.fs, maxRecordSize: cfg.maxRecordSize, mode: 'absoluteConsistency', from: from[c]!, end: to[c]!,
      }));
    }
    return cursors;
  } catch (e) {
    for (const c of cursors) c.close();
    throw e;
  }
}

/**
 * What a checkpoint's merge does with each entry, in global order: Puts and Deletes go to
 * `table` (the last change per key wins; a value still in its segment is kept as a
 * reference, read once at the fold), Commits to `onCommit`; Checkpoint and EpochBarrier
 * entries are markers.
 */
export function checkpointVisitor(
  table: ReplayTable, onCommit: (offsets: Map<string, bigint>, watermark: bigint | null) => void,
): (c: SegmentCursor) => void {
  return (c) => {
    switch (c.hTag) {
      case TAG_PUT: {
        c.loadHeadKey();
        const ref = c.headValueRef();
        table.set(c.kBuf, c.kStart, c.kEnd, ref >= 0 ? ref : table.copyRef(c.headValue()));
        break;
      }
      case TAG_DELETE:
        c.loadHeadKey();
        table.set(c.kBuf, c.kStart, c.kEnd, DELETED);
        break;
      case TAG_COMMIT: {
        const op = c.headEntry().operation;
        if (op.type === 'commit') onCommit(op.offsets, op.watermark);
        break;
      }
      default: break;
    }
  };
}
