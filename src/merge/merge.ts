import { PerCoreWalEntry, type U64Like } from '../entry/entry.js';
import { PerCoreWalError } from '../errors/errors.js';
import type { WalFs } from '../io/fs.js';
import { PerCoreWalReader, resultError } from '../reader/reader.js';
import { hi32, lo32, toPosition, toU64 } from '../util/u64.js';

/** One segment to merge. */
export interface MergeSource {
  coreId: number;
  path: string;
  /** Where to start (a record boundary, e.g. a checkpoint's WAL position). Default 0. */
  from?: number;
  /**
   * Where to stop (a record boundary). For a segment that is still being written this is
   * the writer's `completedPosition()`, so that bytes still in flight are never read.
   * Default: the end of the file.
   */
  end?: number;
}

export interface MergeOptions {
  /** Only entries with `epoch <= upToEpoch`. */
  upToEpoch?: U64Like;
  /** File layer; default Node's fs. */
  fs?: WalFs;
  /** Largest payload accepted (as the writers were configured). Default 256 MiB. */
  maxRecordSize?: number;
  /**
   * Read block per segment. Default: 16 MiB shared by the segments, at least 64 KiB and at
   * most 1 MiB each, so memory grows with the number of cores and never with the WAL.
   */
  blockSize?: number;
}

const MERGE_BUDGET = 16 << 20;
const MIN_BLOCK = 64 << 10;
const MAX_BLOCK = 1 << 20;

/**
 * A k-way merge of segments into the global order {@link PerCoreWalEntry.compare}.
 * Every segment is already in that order (SPEC invariant 4), so the merge streams: it
 * holds one entry and one read block per segment in a binary heap and reads each
 * segment exactly once (invariant 8).
 *
 * A segment ends at its `end`, at the end of its file, at a torn last record (the
 * ordinary result of a crash), or at its first entry above `upToEpoch`. A checksum
 * mismatch or corruption before that throws (`CHECKSUM_MISMATCH`, `CORRUPTED`), as does
 * a segment whose entries are out of order. Breaking out of a `for … of` closes the
 * files; call {@link WalMergeIterator.close} when stepping with `next()` by hand.
 *
 * @example
 * ```ts
 * const merge = WalMergeIterator.open([
 *   { coreId: 0, path: '/data/wal/wal-0.log' },
 *   { coreId: 1, path: '/data/wal/wal-1.log' },
 * ], { upToEpoch: 7n });
 * for (const entry of merge) apply(entry);
 * const resumeAt = merge.positions(); // per segment, just past the last entry yielded
 * ```
 */
export class WalMergeIterator implements IterableIterator<PerCoreWalEntry> {
  private readonly readers: PerCoreWalReader[];
  private readonly ends: number[];
  /** Current entry of each source, or null when the source is done. */
  private readonly heads: (PerCoreWalEntry | null)[];
  /** Position just past each head entry. */
  private readonly headEnds: number[];
  /** Position just past the last entry yielded from each source. */
  private readonly consumed: number[];
  /** Source indices, a min-heap on their head entries. */
  private readonly heap: number[] = [];
  private readonly limited: boolean;
  private readonly mHi: number;
  private readonly mLo: number;
  private yielded = 0;
  private primed = false;
  private closed = false;

  private constructor(readers: PerCoreWalReader[], ends: number[], options: MergeOptions) {
    this.readers = readers;
    this.ends = ends;
    this.heads = new Array<PerCoreWalEntry | null>(readers.length).fill(null);
    this.headEnds = readers.map((r) => r.position());
    this.consumed = readers.map((r) => r.position());
    this.limited = options.upToEpoch !== undefined;
    const max = this.limited ? toU64(options.upToEpoch, 'upToEpoch') : 0n;
    this.mHi = hi32(max);
    this.mLo = lo32(max);
  }

  /** Opens every source; nothing is read until the first `next()`. Bad arguments fail first. */
  static open(sources: readonly MergeSource[], options: MergeOptions = {}): WalMergeIterator {
    if (!Array.isArray(sources)) throw new PerCoreWalError('INVALID_ARGUMENT', 'sources must be an array of { coreId, path }');
    if (options.upToEpoch !== undefined) toU64(options.upToEpoch, 'upToEpoch');
    const froms = sources.map((s, i) => (s.from === undefined ? 0 : toPosition(s.from, `sources[${i}].from`)));
    const ends = sources.map((s, i) => (s.end === undefined ? Number.MAX_SAFE_INTEGER : toPosition(s.end, `sources[${i}].end`)));
    for (let i = 0; i < sources.length; i++) {
      if (froms[i]! > ends[i]!) {
        throw new PerCoreWalError('INVALID_POSITION', `merge of ${sources[i]!.path}: from ${froms[i]} is past end ${ends[i]}`,
          { path: sources[i]!.path, position: froms[i]!, coreId: sources[i]!.coreId });
      }
    }
    const blockSize = options.blockSize ??
      Math.min(MAX_BLOCK, Math.max(MIN_BLOCK, Math.floor(MERGE_BUDGET / Math.max(1, sources.length))));
    const readers: PerCoreWalReader[] = [];
    try {
      for (let i = 0; i < sources.length; i++) {
        const s = sources[i]!;
        readers.push(PerCoreWalReader.openFrom(s.coreId, s.path, froms[i]!, { fs: options.fs, maxRecordSize: options.maxRecordSize, blockSize }));
      }
    } catch (e) {
      for (const r of readers) r.close();
      throw e;
    }
    return new WalMergeIterator(readers, ends, options);
  }

  /** Entries yielded so far. */
  count(): number { return this.yielded; }

  /**
   * For each source, the position just past the last entry yielded from it (its `from` if
   * none): where a later merge or replay of that segment resumes.
   */
  positions(): number[] { return this.consumed.slice(); }

  next(): IteratorResult<PerCoreWalEntry> {
    if (this.closed) return { done: true, value: undefined };
    if (!this.primed) this.prime();
    const heap = this.heap;
    if (heap.length === 0) {
      this.close();
      return { done: true, value: undefined };
    }
    const src = heap[0]!;
    const entry = this.heads[src]!;
    this.consumed[src] = this.headEnds[src]!;
    this.yielded++;
    if (this.advance(src, entry)) this.siftDown(0);
    else {
      const lastSrc = heap.pop()!;
      if (heap.length > 0) { heap[0] = lastSrc; this.siftDown(0); }
    }
    return { done: false, value: entry };
  }

  /** Closes every file. Idempotent; iteration ends. */
  return(): IteratorResult<PerCoreWalEntry> {
    this.close();
    return { done: true, value: undefined };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.heap.length = 0;
    for (const r of this.readers) r.close();
  }

  /** Drains the merge into an array (memory grows with the result, unlike iteration). */
  toArray(): PerCoreWalEntry[] {
    const out: PerCoreWalEntry[] = [];
    for (let r = this.next(); !r.done; r = this.next()) out.push(r.value);
    return out;
  }

  [Symbol.iterator](): WalMergeIterator { return this; }

  private prime(): void {
    this.primed = true;
    try {
      for (let i = 0; i < this.readers.length; i++) {
        if (this.advance(i, null)) { this.heap.push(i); this.siftUp(this.heap.length - 1); }
      }
    } catch (e) {
      this.close();
      throw e;
    }
  }

  /** Reads source `i`'s next entry into its head; false when the source is done. */
  private advance(i: number, prev: PerCoreWalEntry | null): boolean {
    const reader = this.readers[i]!;
    const at = reader.position();
    if (at >= this.ends[i]!) { this.heads[i] = null; return false; }
    let r;
    try {
      r = reader.readNext();
    } catch (e) {
      this.close();
      throw e;
    }
    if (r.kind !== 'entry') {
      this.heads[i] = null;
      if (r.kind === 'eof' || r.kind === 'tornWrite') return false;
      this.close();
      throw resultError(r, reader.path(), reader.coreId());
    }
    const e = r.entry;
    if (this.limited && (e.eHi > this.mHi || (e.eHi === this.mHi && e.eLo > this.mLo))) {
      // Epochs never decrease within a segment: nothing later in it qualifies either.
      this.heads[i] = null;
      return false;
    }
    if (prev !== null && PerCoreWalEntry.compare(prev, e) >= 0) {
      this.close();
      throw new PerCoreWalError('CORRUPTED',
        `entry at byte ${at} of ${reader.path()} (core ${reader.coreId()}) does not order after the one before it ` +
        `(epoch ${prev.epoch} → ${e.epoch}, timestamp ${prev.timestampNs} → ${e.timestampNs}, sequence ${prev.sequence} → ${e.sequence})`,
        { path: reader.path(), position: at, coreId: reader.coreId() });
    }
    this.heads[i] = e;
    this.headEnds[i] = reader.position();
    return true;
  }

  private less(a: number, b: number): boolean {
    return PerCoreWalEntry.compare(this.heads[a]!, this.heads[b]!) < 0;
  }

  private siftUp(k: number): void {
    const heap = this.heap;
    const x = heap[k]!;
    while (k > 0) {
      const p = (k - 1) >> 1;
      const y = heap[p]!;
      if (!this.less(x, y)) break;
      heap[k] = y;
      k = p;
    }
    heap[k] = x;
  }

  private siftDown(k: number): void {
    const heap = this.heap;
    const n = heap.length;
    const x = heap[k]!;
    for (;;) {
      let c = 2 * k + 1;
      if (c >= n) break;
      if (c + 1 < n && this.less(heap[c + 1]!, heap[c]!)) c++;
      if (!this.less(heap[c]!, x)) break;
      heap[k] = heap[c]!;
      k = c;
    }
    heap[k] = x;
  }
}

/**
 * Every entry of `sources` in global order, as an array (see {@link WalMergeIterator}
 * for the streaming form, whose memory does not grow with the WAL).
 *
 * @example
 * ```ts
 * const entries = mergeSegmentFiles([0, 1, 2, 3].map((coreId) => ({ coreId, path: `/data/wal/wal-${coreId}.log` })));
 * ```
 */
export function mergeSegmentFiles(sources: readonly MergeSource[], options: MergeOptions = {}): PerCoreWalEntry[] {
  return WalMergeIterator.open(sources, options).toArray();
}
