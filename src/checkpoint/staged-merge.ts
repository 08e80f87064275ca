import { setImmediate as nextTurn } from 'node:timers/promises';
import type { PerCoreWalConfig } from '../manager/config.js';
import { CursorMerge } from '../recovery/merge.js';
import { foldCopied, readBackRef, ReplayTable } from '../recovery/replay-table.js';
import { assert } from '../util/assert.js';
import { checkpointVisitor, openCheckpointCursors } from './merge-visit.js';
import { ShardedMap, type StringMap } from './sharded-map.js';
import type { CheckpointStore } from './store.js';

/**
 * What merging segments would change in a {@link CheckpointStore}, held aside so that the
 * store can take all of it at once ({@link applyStaged}): a merge that yields to the event
 * loop must not let anyone see the store half-way through it.
 */
export interface StagedChanges {
  /** By map key: the value the key ends with, or null when it ends deleted. */
  readonly kv: StringMap<Uint8Array | null>;
  /** Source offsets set by Commit entries, the last one per source. */
  readonly offsets: Map<string, bigint>;
  /** The last watermark a Commit set; undefined when none did. */
  watermark: bigint | undefined;
  /** WAL entries merged (markers included). */
  entries: number;
}

/** How the merge shares its thread: work for about `sliceMs`, then give the event loop a turn. */
export interface MergeSlicing {
  sliceMs: number;
  /** Entries (or values read back) between two looks at the clock. */
  stepEntries?: number;
}

const DEFAULT_SLICING: MergeSlicing = { sliceMs: 1, stepEntries: 1024 };

/** Tells a long job on a shared thread when its slice is over, and gives the event loop its turn then. */
export class Slicer {
  readonly sliceMs: number;
  readonly stepEntries: number;
  private sliceStart = performance.now();

  constructor(slicing: MergeSlicing = DEFAULT_SLICING) {
    this.sliceMs = slicing.sliceMs;
    this.stepEntries = slicing.stepEntries ?? 1024;
  }

  /** Resolves at once inside the slice; after it, on the event loop's next turn (setImmediate: I/O callbacks run first). */
  async maybeYield(): Promise<void> {
    if (performance.now() - this.sliceStart < this.sliceMs) return;
    await nextTurn();
    this.sliceStart = performance.now();
  }
}

/**
 * `mergeSegmentsIntoStore` (coordinator.ts) for a thread that others share: the same
 * global order and the same replay table, but it stops every `sliceMs` to let the event
 * loop run (the pool's producers live there and wait for their acknowledgements), and it
 * collects the outcome in a {@link StagedChanges} instead of writing the store. The
 * segments must hold whole synced records in `from`..`to` and nobody may rewrite that
 * range while this runs (writers append past `to`, which is fine).
 */
export async function mergeSegmentsStaged(
  cfg: PerCoreWalConfig, from: readonly number[], to: readonly number[], slicer: Slicer = new Slicer(), sortRun = SORT_RUN,
): Promise<StagedChanges> {
  const step = slicer.stepEntries;
  // Sharded like the store's map: it may hold more keys than one Map can, and grows without a long rehash.
  const out: StagedChanges = { kv: new ShardedMap(), offsets: new Map(), watermark: undefined, entries: 0 };
  const cursors = openCheckpointCursors(cfg, from, to);
  const maybeYield = (): Promise<void> => slicer.maybeYield();
  try {
    const table = new ReplayTable();
    const merge = new CursorMerge(cursors);
    const visit = checkpointVisitor(table, (offsets, watermark) => {
      for (const [name, off] of offsets) out.offsets.set(name, off);
      if (watermark !== null) out.watermark = watermark;
    });
    while (merge.step(visit, step)) await maybeYield();
    out.entries = merge.count;
    await maybeYield();
    // foldReplay, in slices: values still in the segments are read back in file order.
    const set = (k: string, v: Uint8Array): void => { out.kv.set(k, v); };
    const refs = foldCopied(table, set, (k) => { out.kv.set(k, null); }, false);
    await maybeYield();
    // Sorted, the references read every segment forward; but one sort of 300k of them is
    // ~25 ms on the event loop. Sorted in runs between turns instead, then read back
    // through a merge of the runs.
    const runs = new SortedRuns(refs, Math.max(sortRun, Math.ceil(refs.length / MAX_RUNS)));
    while (!runs.sortSome()) await maybeYield();
    for (let i = 0, ref = runs.next(); ref >= 0; ref = runs.next()) {
      readBackRef(cursors, ref, set);
      if (++i % step === 0) await maybeYield();
    }
    return out;
  } finally {
    for (const c of cursors) c.close();
  }
}

/** References sorted per run between two turns of the event loop (~1 ms of sorting). */
const SORT_RUN = 16384;
/** Runs are made longer rather than more numerous than this: the merge looks at every run's head per value. */
const MAX_RUNS = 64;

/**
 * Non-negative numbers in ascending order, sorted a run at a time ({@link SortedRuns.sortSome})
 * and handed out by a merge of the runs ({@link SortedRuns.next}): a sort that can stop.
 */
export class SortedRuns {
  private readonly a: Float64Array;
  private readonly run: number;
  private sortedTo = 0;
  /** Per run: the next index to hand out, and its end. */
  private readonly head: Int32Array;
  private readonly end: Int32Array;

  constructor(values: Float64Array, run: number) {
    assert(Number.isInteger(run) && run > 0, 'a run holds at least one value');
    this.a = values;
    this.run = run;
    const runs = Math.ceil(values.length / run);
    this.head = new Int32Array(runs);
    this.end = new Int32Array(runs);
    for (let r = 0; r < runs; r++) {
      this.head[r] = r * run;
      this.end[r] = Math.min((r + 1) * run, values.length);
    }
  }

  /** Sorts the next run; true once all are sorted. */
  sortSome(): boolean {
    if (this.sortedTo >= this.a.length) return true;
    const to = Math.min(this.sortedTo + this.run, this.a.length);
    this.a.subarray(this.sortedTo, to).sort();
    this.sortedTo = to;
    return to >= this.a.length;
  }

  /** The smallest value not handed out yet, or -1 when none is left. */
  next(): number {
    assert(this.sortedTo >= this.a.length, 'every run is sorted before the merge');
    const a = this.a, head = this.head, end = this.end;
    let best = -1;
    // A linear look at each run's head: a few dozen runs at most (one per SORT_RUN values).
    for (let r = 0; r < head.length; r++) {
      if (head[r]! < end[r]! && (best < 0 || a[head[r]!]! < a[head[best]!]!)) best = r;
    }
    if (best < 0) return -1;
    return a[head[best]!++]!;
  }
}

/** Writes staged changes into the store, synchronously: nobody sees a part of them without the rest. */
export function applyStaged(store: CheckpointStore, staged: StagedChanges): void {
  for (const [name, off] of staged.offsets) store.setSourceOffset(name, off);
  if (staged.watermark !== undefined) store.setWatermark(staged.watermark);
  for (const [k, v] of staged.kv) {
    if (v === null) store.deleteByMapKey(k); else store.putByMapKey(k, v);
  }
}
