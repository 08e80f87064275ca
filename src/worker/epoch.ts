import { PerCoreWalError } from '../errors/errors.js';
import { U64_MAX } from '../util/u64.js';

/**
 * Stand-in for the manager's `EpochRef` (same memory layout: one aligned u64 read and
 * changed only with `Atomics`) until it lands on main; the pool only uses `create`,
 * `fromShared`, `shared`, `load`, `advance` and `raiseTo`, so swapping it is an import.
 */
export class EpochRef {
  readonly shared: SharedArrayBuffer;
  private readonly cell: BigUint64Array;

  private constructor(shared: SharedArrayBuffer, byteOffset: number) {
    this.shared = shared;
    this.cell = new BigUint64Array(shared, byteOffset, 1);
  }

  static create(initial: bigint = 0n): EpochRef {
    const r = new EpochRef(new SharedArrayBuffer(8), 0);
    Atomics.store(r.cell, 0, initial);
    return r;
  }

  static fromShared(shared: SharedArrayBuffer, byteOffset = 0): EpochRef {
    if (!(shared instanceof SharedArrayBuffer)) throw new PerCoreWalError('INVALID_ARGUMENT', 'an epoch handle is a SharedArrayBuffer');
    return new EpochRef(shared, byteOffset);
  }

  load(): bigint { return Atomics.load(this.cell, 0); }

  advance(): bigint {
    for (;;) {
      const cur = Atomics.load(this.cell, 0);
      if (cur === U64_MAX) throw new PerCoreWalError('EPOCH_MISMATCH', 'the global epoch is at its maximum');
      if (Atomics.compareExchange(this.cell, 0, cur, cur + 1n) === cur) return cur + 1n;
    }
  }

  raiseTo(epoch: bigint): bigint {
    for (;;) {
      const cur = Atomics.load(this.cell, 0);
      if (cur >= epoch) return cur;
      if (Atomics.compareExchange(this.cell, 0, cur, epoch) === cur) return epoch;
    }
  }
}
