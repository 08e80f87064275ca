import { setImmediate as turn } from 'node:timers/promises';
import { performance } from 'node:perf_hooks';
import { ioError, PerCoreWalError } from '../errors/errors.js';
import { fdatasyncOffThread, type WalFs } from '../io/fs.js';
import { assert } from '../util/assert.js';
import { FrameCopy } from './frame-copy.js';

/** Blocks of the sliced copy: small enough that one is well under a millisecond of work. */
const SLICE_BLOCK = 256 * 1024;
/** Time the copy runs before {@link Compaction.copy} gives the event loop a turn. */
const DEFAULT_SLICE_MS = 1;

/**
 * @internal What a compaction needs of its writer. The writer hands it out from
 * `beginCompaction`; nothing else of the writer's state is touched.
 */
export interface CompactionHost {
  readonly fs: WalFs;
  readonly core: number;
  readonly path: string;
  readonly maxRecordSize: number;
  /** The segment's current fd (read only, below the synced position). */
  fd(): number;
  /** Throws `POISONED`/`CLOSED` when the writer can no longer be compacted. */
  checkWritable(): void;
  /** Syncs what was appended (no-op when nothing was) and returns the synced end. */
  syncAll(): number;
  /** Empties the segment durably (a compaction that keeps nothing). */
  truncateToZero(): void;
  /** `tmp` holds segment bytes [from, end), durably: rename it over the segment and move the writer onto it. */
  install(tmp: string, from: number, end: number): number;
  /** The compaction is over (finished, failed or abandoned): the writer may start another. */
  release(c: Compaction): void;
}

type State = 'copying' | 'copied' | 'syncing' | 'synced' | 'done' | 'failed';

/**
 * A compaction of a live segment in two phases, so that appends wait only for the short
 * second one (see {@link CoreWalWriter.beginCompaction}):
 *
 * 1. {@link Compaction.step} / {@link Compaction.copy} copy, CRC-checked, the records kept
 *    ([from, end1), end1 the synced end when it began) into `<segment>.compact`, and
 *    {@link Compaction.syncCopy} fdatasyncs it off the thread, while the writer goes on
 *    appending and syncing to the segment;
 * 2. {@link Compaction.finish} (synchronous) syncs the writer, copies the records appended
 *    meanwhile, fdatasyncs, renames over the segment, fsyncs the directory and reopens.
 *
 * Until the rename the segment is untouched, so a crash at any point loses nothing (the
 * leftover `.compact` is never read, and the next compaction overwrites it). A failure
 * before the rename removes the temporary file and leaves the writer as it was (poisoned
 * if it was its own I/O that failed); one after it poisons the writer, as
 * `compactFrom` does. {@link Compaction.abandon} drops it at any point but during `syncCopy`.
 */
export class Compaction {
  private readonly host: CompactionHost;
  private readonly from: number;
  private readonly end1: number;
  private readonly tmp: string;
  private state: State = 'copying';
  private out = -1;
  private copier: FrameCopy | null = null;
  /** Bytes of the temporary file known durable (relative to the segment: `from + n`). */
  private durableTo: number;

  /** @internal Made by `CoreWalWriter.beginCompaction`, which has synced up to `end1` and checked `from`. */
  constructor(host: CompactionHost, from: number, end1: number) {
    assert(from <= end1, 'a compaction starts at or before the synced end');
    this.host = host;
    this.from = from;
    this.end1 = end1;
    this.tmp = `${host.path}.compact`;
    this.durableTo = from;
  }

  /** Segment offset where the records kept begin. */
  start(): number { return this.from; }
  /** Synced end of the segment when the compaction began: phase 1 copies up to here. */
  phaseOneEnd(): number { return this.end1; }
  /** True once phase 1's copy is complete (whether or not synced yet). */
  isCopied(): boolean { return this.state !== 'copying'; }
  /** True while the compaction can still be finished. */
  isActive(): boolean { return this.state !== 'done' && this.state !== 'failed'; }

  /**
   * Copies phase 1's records until done or until `budgetMs` have passed (checked after
   * each block of 256 KiB). Returns true when the copy is complete. A bad frame or an I/O
   * error fails the compaction (temporary file removed, writer unchanged) and is thrown.
   */
  step(budgetMs = DEFAULT_SLICE_MS): boolean {
    if (this.state !== 'copying') {
      this.requireActive('step');
      return true;
    }
    if (this.from === 0 || this.from === this.end1) {
      // Nothing to copy yet: a compaction from 0 keeps the segment, one from its end starts empty.
      this.state = 'copied';
      return true;
    }
    const until = performance.now() + budgetMs;
    const done = this.guard(() => {
      this.host.checkWritable();
      return this.copierFor().copyTo(this.end1, () => performance.now() < until);
    });
    if (done) this.state = 'copied';
    return done;
  }

  /**
   * Phase 1's durability: fdatasyncs the copy on another thread (`WalFs.fdatasyncAsync`;
   * synchronously on a layer without it). Call once {@link Compaction.step} returned
   * true; {@link Compaction.finish} and `abandon` must wait for the promise. A failure
   * fails the compaction (temporary file removed) and rejects with `IO`.
   */
  async syncCopy(): Promise<void> {
    if (this.state !== 'copied') throw this.misuse('syncCopy', 'after the copy and once');
    if (this.out < 0) { this.state = 'synced'; return; }
    this.state = 'syncing';
    let err: unknown = null;
    try {
      await fdatasyncOffThread(this.host.fs, this.out);
    } catch (e) {
      err = e;
    }
    this.state = 'copied';
    // The writer may have been closed or poisoned while the fdatasync ran.
    this.guard(() => {
      if (err !== null) throw err;
      this.host.checkWritable();
    });
    this.durableTo = this.end1;
    this.state = 'synced';
  }

  /**
   * Phase 1 as a whole for callers with an event loop: the copy in slices of about
   * `sliceMs`, with a turn of the event loop between them, then {@link Compaction.syncCopy}.
   */
  async copy(sliceMs = DEFAULT_SLICE_MS): Promise<void> {
    while (!this.step(sliceMs)) await turn();
    await this.syncCopy();
  }

  /**
   * Phase 2, synchronous: syncs the writer, copies what it appended since phase 1 began,
   * fdatasyncs the copy, renames it over the segment, fsyncs the directory and reopens.
   * Whatever of phase 1 is not done yet is done here too. Positions move down by the
   * compaction's start; returns the new position.
   */
  finish(): number {
    if (this.state === 'syncing') throw this.misuse('finish', 'while syncCopy is running');
    this.requireActive('finish');
    const end2 = this.guard(() => {
      const end = this.host.syncAll();
      assert(end >= this.end1, 'the segment only grew during phase 1');
      return end;
    });
    if (this.from === 0) return this.done(end2);
    if (this.from === end2) {
      // Nothing to keep: an empty segment, as `reset` would leave it.
      this.close(true);
      this.done(0);
      this.host.truncateToZero();
      return 0;
    }
    this.guard(() => {
      this.copierFor().copyTo(end2);
      if (this.durableTo < end2) this.host.fs.fdatasyncSync(this.out);
      this.host.fs.closeSync(this.out);
      this.out = -1;
    });
    this.durableTo = end2;
    this.done(end2);
    // The rename's failures are the host's to report (before it: writer unchanged; after: poisoned).
    const n = this.host.install(this.tmp, this.from, end2);
    assert(n === end2 - this.from, 'positions move down by the compaction\'s start');
    return n;
  }

  /** Drops the compaction and its temporary file; the segment stays as it is. Idempotent. */
  abandon(): void {
    if (this.state === 'syncing') throw this.misuse('abandon', 'while syncCopy is running');
    this.fail();
  }

  private copierFor(): FrameCopy {
    if (this.copier === null) {
      const h = this.host;
      // 'w' truncates a leftover of a compaction a crash interrupted.
      this.out = h.fs.openSync(this.tmp, 'w');
      this.copier = new FrameCopy({ fs: h.fs, src: h.fd(), out: this.out, from: this.from, maxRecordSize: h.maxRecordSize, core: h.core, path: h.path },
        Math.min(SLICE_BLOCK, Math.max(1 << 16, this.end1 - this.from)));
    }
    return this.copier;
  }

  /** Runs `f`; on a throw the compaction fails (temporary file removed) and the error goes on, as a `PerCoreWalError`. */
  private guard<T>(f: () => T): T {
    try {
      return f();
    } catch (e) {
      this.fail();
      if (e instanceof PerCoreWalError) throw e;
      throw ioError('compact', e, this.tmp, undefined, this.host.core);
    }
  }

  private fail(): void {
    if (!this.isActive()) return;
    this.close(true);
    this.state = 'failed';
    this.host.release(this);
  }

  private done(n: number): number {
    this.state = 'done';
    this.host.release(this);
    return n;
  }

  private close(unlink: boolean): void {
    if (this.out >= 0) {
      try { this.host.fs.closeSync(this.out); } catch { /* reporting the first error */ }
      this.out = -1;
    }
    if (unlink && this.copier !== null) {
      try { this.host.fs.unlinkSync(this.tmp); } catch { /* it may not exist */ }
    }
  }

  private requireActive(op: string): void {
    if (!this.isActive()) throw this.misuse(op, 'on a compaction that is still running');
  }

  private misuse(op: string, when: string): PerCoreWalError {
    return new PerCoreWalError('INVALID_ARGUMENT', `Compaction.${op} may only be called ${when} (core ${this.host.core}, ${this.host.path}; state ${this.state})`,
      { coreId: this.host.core, path: this.host.path });
  }
}
