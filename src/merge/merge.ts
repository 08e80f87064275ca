import { PerCoreWalEntry, type U64Like } from '../entry/entry.js';
import { PerCoreWalError } from '../errors/errors.js';
import type { WalFs } from '../io/fs.js';
import { PerCoreWalReader, resultError } from '../reader/reader.js';
import { hi32, lo32, toPosition, toU64, TWO_32 } from '../util/u64.js';

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
   * Read block per segment. Default {@link MERGE_BLOCK_SIZE}: 64 KiB, so memory grows with
   * the number of cores and never with the WAL.
   */
  blockSize?: number;
}

/**
 * Numbers per source in {@link WalMergeIterator}'s key array: the epoch as one double and
 * the timestamp less a base as one double. Both are rounded, so they keep the order, and
 * exact in practice (epochs below 2^53, timestamps within 2^52 ns of the base); where they
 * tie, the entries themselves are compared.
 */
const KEY = 2;
const EXACT = 2 ** 53;

/**
 * The read block per segment of a merge, whatever the number of segments. Entries refer to
 * the block they came from, so every block is a fresh allocation, freed when its entries
 * are collected. With 256 KiB blocks the allocator gave much of that memory back to the
 * system and took it again, page faults and all (up to half of the blocks' pages faulted
 * in, 10–50 ns of system time an entry); with 64 KiB blocks about a third as many did, and
 * the merge took less CPU (docs/PERFORMANCE.md, issue 4). 64 KiB is still one read per
 * ~400 records of 164 bytes.
 */
export const MERGE_BLOCK_SIZE = 64 << 10;

/**
 * A k-way merge of segments into the global order {@link PerCoreWalEntry.compare}.
 * Every segment is already in that order (SPEC invariant 4), so the merge streams: it
 * holds one entry and one read block per segment in a tournament (loser) tree and reads
 * each segment exactly once (invariant 8). Taking an entry costs ⌈log2 k⌉ comparisons.
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
  /**
   * The order key of each source's head, {@link KEY} numbers per source, compared without
   * touching the entries. A done source has an infinite epoch: it orders after every other.
   */
  private readonly keys: Float64Array;
  /** The high half of the first timestamp read: the base of the keys' timestamps. */
  private tBase = -1;
  /** Position just past each head entry. */
  private readonly headEnds: number[];
  /** Position just past the last entry yielded from each source. */
  private readonly consumed: number[];
  /**
   * The loser tree over the sources: `tree[0]` is the source with the smallest head,
   * `tree[t]` (t >= 1) the loser of the match at node t. Source i is leaf i + k; node t's
   * parent is t >> 1.
   */
  private readonly tree: Int32Array;
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
    // -Infinity: before a source's first entry, any entry orders after its "previous" one.
    this.keys = new Float64Array(readers.length * KEY).fill(-Infinity);
    this.tree = new Int32Array(Math.max(1, readers.length));
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
    const blockSize = options.blockSize ?? MERGE_BLOCK_SIZE;
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
    // Kept small so that a `for … of` can inline it; toArray() takes entries without it.
    const entry = this.take();
    return entry !== null ? { done: false, value: entry } : { done: true, value: undefined };
  }

  /** The next entry in order, or null (and the files closed) when there is none. */
  private take(): PerCoreWalEntry | null {
    if (this.closed) return null;
    if (!this.primed) this.prime();
    const src = this.tree[0]!;
    const entry = this.heads[src] ?? null;
    if (entry === null) {
      this.close();
      return null;
    }
    this.consumed[src] = this.headEnds[src]!;
    this.yielded++;
    this.advance(src, entry);
    this.replay(src);
    return entry;
  }

  /** Closes every file. Idempotent; iteration ends. */
  return(): IteratorResult<PerCoreWalEntry> {
    this.close();
    return { done: true, value: undefined };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.heads.fill(null);
    for (const r of this.readers) r.close();
  }

  /** Drains the merge into an array (memory grows with the result, unlike iteration). */
  toArray(): PerCoreWalEntry[] {
    const out: PerCoreWalEntry[] = [];
    for (let e = this.take(); e !== null; e = this.take()) out.push(e);
    return out;
  }

  [Symbol.iterator](): WalMergeIterator { return this; }

  private prime(): void {
    this.primed = true;
    const k = this.readers.length;
    if (k === 0) return;
    try {
      for (let i = 0; i < k; i++) this.advance(i, null);
    } catch (e) {
      this.close();
      throw e;
    }
    // Matches bottom-up: winners[t] is the winner below node t; leaves are k .. 2k-1.
    const winners = new Int32Array(2 * k);
    for (let i = 0; i < k; i++) winners[k + i] = i;
    for (let t = k - 1; t >= 1; t--) {
      const a = winners[2 * t]!, b = winners[2 * t + 1]!;
      if (this.less(b, a)) { winners[t] = b; this.tree[t] = a; } else { winners[t] = a; this.tree[t] = b; }
    }
    this.tree[0] = winners[1]!;
  }

  /** Source `w`'s head changed: replays its matches from its leaf to the root. */
  private replay(w: number): void {
    const tree = this.tree;
    for (let t = (w + this.readers.length) >> 1; t > 0; t >>= 1) {
      const l = tree[t]!;
      if (this.less(l, w)) { tree[t] = w; w = l; }
    }
    tree[0] = w;
  }

  /**
   * Reads source `i`'s next entry into its head and key (null and an infinite key when the
   * source is done), checking that it orders after `prev`, the source's previous head.
   */
  private advance(i: number, prev: PerCoreWalEntry | null): void {
    const reader = this.readers[i]!;
    const at = reader.position();
    let e: PerCoreWalEntry | null = null;
    if (at < this.ends[i]!) {
      try {
        e = reader.readEntry();
      } catch (err) {
        this.close();
        throw err;
      }
      if (e === null) {
        const r = reader.stopResult();
        if (r.kind !== 'eof' && r.kind !== 'tornWrite') {
          this.close();
          throw resultError(r, reader.path(), reader.coreId());
        }
      } else if (this.limited && (e.eHi > this.mHi || (e.eHi === this.mHi && e.eLo > this.mLo))) {
        // Epochs never decrease within a segment: nothing later in it qualifies either.
        e = null;
      }
    }
    const K = this.keys, o = i * KEY;
    this.heads[i] = e;
    if (e === null) {
      K[o] = Infinity;
      return;
    }
    const th = e.tHi;
    if (this.tBase < 0) this.tBase = th;
    const E = e.eHi * TWO_32 + e.eLo, T = (th - this.tBase) * TWO_32 + e.tLo;
    // The key still holds the previous head's (-Infinity before the first): see less().
    const pE = K[o]!, pT = K[o + 1]!;
    if (!(E !== pE ? E > pE : E < EXACT && T !== pT ? T > pT : PerCoreWalEntry.compare(prev!, e) < 0)) {
      this.close();
      throw new PerCoreWalError('CORRUPTED',
        `entry at byte ${at} of ${reader.path()} (core ${reader.coreId()}) does not order after the one before it ` +
        `(epoch ${prev!.epoch} → ${e.epoch}, timestamp ${prev!.timestampNs} → ${e.timestampNs}, sequence ${prev!.sequence} → ${e.sequence})`,
        { path: reader.path(), position: at, coreId: reader.coreId() });
    }
    K[o] = E;
    K[o + 1] = T;
    this.headEnds[i] = reader.position();
  }

  /** True when source a's head orders before source b's (ties, between done sources only, by index). */
  private less(a: number, b: number): boolean {
    const K = this.keys, i = a * KEY, j = b * KEY;
    // The rounded epoch and timestamp decide when they differ. Equal rounded epochs below
    // 2^53 are equal epochs; two infinite ones are two done sources.
    let x = K[i]!, y = K[j]!;
    if (x !== y) return x < y;
    if (x < EXACT) {
      x = K[i + 1]!; y = K[j + 1]!;
      if (x !== y) return x < y;
    } else if (x === Infinity) {
      return a < b;
    }
    const d = PerCoreWalEntry.compare(this.heads[a]!, this.heads[b]!);
    return d < 0 || (d === 0 && a < b);
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
