import type { U64Like } from '../entry/entry.js';
import { PerCoreWalError } from '../errors/errors.js';
import { toU64, U64_MAX } from '../util/u64.js';

/**
 * The global epoch: one u64 in a `SharedArrayBuffer`, read and changed only with
 * `Atomics`, so every worker thread sees the same value without a lock — the
 * counterpart of the original's shared `AtomicU64`. It never decreases.
 *
 * Post `ref.shared` to a worker (it is a `SharedArrayBuffer`, shared, not copied) and
 * rebuild the handle there with {@link EpochRef.fromShared}.
 *
 * @example
 * ```ts
 * // main thread
 * const ref = manager.epochRef();
 * const worker = new Worker(url, { workerData: { epoch: ref.shared } });
 * // worker thread
 * const epoch = EpochRef.fromShared(workerData.epoch);
 * writer.setEpoch(epoch.load());
 * ```
 */
export class EpochRef {
  /** The shared memory holding the epoch; post this to workers. */
  readonly shared: SharedArrayBuffer;
  private readonly cell: BigUint64Array;

  private constructor(shared: SharedArrayBuffer, byteOffset: number) {
    this.shared = shared;
    this.cell = new BigUint64Array(shared, byteOffset, 1);
  }

  /** A new epoch cell holding `initial` (default 0). */
  static create(initial: U64Like = 0n): EpochRef {
    const ref = new EpochRef(new SharedArrayBuffer(8), 0);
    Atomics.store(ref.cell, 0, toU64(initial, 'initial epoch'));
    return ref;
  }

  /** Rebuilds a handle on memory another thread posted (`ref.shared`). */
  static fromShared(shared: SharedArrayBuffer, byteOffset = 0): EpochRef {
    if (!(shared instanceof SharedArrayBuffer)) {
      throw new PerCoreWalError('INVALID_ARGUMENT', 'EpochRef.fromShared takes the SharedArrayBuffer of an EpochRef (ref.shared)');
    }
    if (!Number.isInteger(byteOffset) || byteOffset < 0 || byteOffset % 8 !== 0 || byteOffset + 8 > shared.byteLength) {
      throw new PerCoreWalError('INVALID_ARGUMENT', `byteOffset ${byteOffset} does not address an aligned u64 inside ${shared.byteLength} bytes`);
    }
    return new EpochRef(shared, byteOffset);
  }

  /** The current epoch. */
  load(): bigint {
    return Atomics.load(this.cell, 0);
  }

  /** Increments the epoch and returns the new value (a CAS loop, so it can never wrap). */
  advance(): bigint {
    for (;;) {
      const cur = Atomics.load(this.cell, 0);
      if (cur === U64_MAX) throw new PerCoreWalError('EPOCH_MISMATCH', 'the global epoch is at its maximum (2^64 - 1) and cannot advance');
      const next = cur + 1n;
      if (Atomics.compareExchange(this.cell, 0, cur, next) === cur) return next;
    }
  }

  /** Raises the epoch to at least `epoch`; returns the epoch afterwards. Never lowers it. */
  raiseTo(epoch: U64Like): bigint {
    const want = toU64(epoch, 'epoch');
    for (;;) {
      const cur = Atomics.load(this.cell, 0);
      if (cur >= want) return cur;
      if (Atomics.compareExchange(this.cell, 0, cur, want) === cur) return want;
    }
  }
}
