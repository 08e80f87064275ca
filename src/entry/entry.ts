import { PerCoreWalError } from '../errors/errors.js';
import { wallNowNs } from '../util/clock.js';
import { hi32, joinU64, lo32, requireBytes, toCoreId, toI64, toU64 } from '../util/u64.js';

/** What an entry does. u64/i64 values are `bigint`. */
export type WalOperation =
  | { type: 'put'; key: Uint8Array; value: Uint8Array }
  | { type: 'delete'; key: Uint8Array }
  | { type: 'checkpoint'; id: bigint }
  | { type: 'commit'; offsets: Map<string, bigint>; watermark: bigint | null }
  | { type: 'epochBarrier'; epoch: bigint };

export type WalOperationType = WalOperation['type'];

/** Anything accepted where a u64/i64 is expected: a bigint or a safe-integer number. */
export type U64Like = bigint | number;

/** Operation tags of the payload format (docs/FORMAT.md), re-exported by `codec.ts`. */
export const TAG_PUT = 1;
export const TAG_DELETE = 2;
export const TAG_CHECKPOINT = 3;
export const TAG_COMMIT = 4;
export const TAG_EPOCH_BARRIER = 5;
/** Bytes of the payload header before the body, re-exported by `codec.ts`. */
export const PAYLOAD_HEADER_SIZE = 36;

/** @internal `buf[start, end)` as a Buffer of its own (never a view: entries outlive read blocks). */
export function copyBytes(buf: Uint8Array, start: number, end: number): Buffer {
  const out = Buffer.allocUnsafe(end - start);
  // Buffer's copy takes any Uint8Array as its source; cheaper than a subarray and a set.
  Buffer.prototype.copy.call(buf, out, 0, start, end);
  return out;
}

/** @internal A Put of the key `buf[key, value)` and the value `buf[value, end)`, copied into one buffer of their own. */
export function putOperation(buf: Uint8Array, key: number, value: number, end: number): WalOperation {
  const both = copyBytes(buf, key, end);
  return { type: 'put', key: both.subarray(0, value - key), value: both.subarray(value - key) };
}

/**
 * One log entry: an operation stamped with its core, epoch, core-local sequence and
 * timestamp. Entries order globally by {@link PerCoreWalEntry.compare}.
 *
 * The u64 fields are kept as 32-bit halves so that decoding and merging never do
 * bigint arithmetic; the `bigint` getters build the values on access.
 *
 * An entry read from a segment builds its Put or Delete operation (a copy of the key and
 * value) the first time `operation`, `key()` or `value()` is asked for: until then it
 * refers to the bytes of the read block it came from, which the reader never overwrites
 * (it reads on into a fresh block instead). So an entry stays valid for as long as it is
 * kept, and one that is kept but never looked at keeps its read block alive too.
 *
 * @example
 * ```ts
 * const e = PerCoreWalEntry.put(0, 1n, 0n, Buffer.from('k'), Buffer.from('v'), PerCoreWalEntry.nowNs());
 * e.isPut(); // true
 * ```
 */
export class PerCoreWalEntry {
  readonly coreId: number;
  /** @internal */ readonly eHi: number;
  /** @internal */ readonly eLo: number;
  /** @internal */ readonly sHi: number;
  /** @internal */ readonly sLo: number;
  /** @internal */ readonly tHi: number;
  /** @internal */ readonly tLo: number;
  /**
   * @internal Bytes of its segment that were durable when this entry was appended
   * (0 for entries built in memory). Recovery uses it to tell crash debris from damage.
   */
  readonly syncedBoundary: number;
  #op: WalOperation | null;
  // Not built yet (#op null): the entry's whole payload is #src[#at, #end), a Put or Delete
  // (docs/FORMAT.md) that has been checked already.
  #src: Uint8Array | null;
  #at: number;
  #end: number;

  /**
   * @internal Use the static factories. With `src`, `operation` is null: the entry is a Put
   * or Delete whose checked payload is `src[at, end)`, built on first use; `src` must never
   * be written again.
   */
  constructor(
    coreId: number, eHi: number, eLo: number, sHi: number, sLo: number, tHi: number, tLo: number,
    operation: WalOperation | null, syncedBoundary = 0, src: Uint8Array | null = null, at = 0, end = 0,
  ) {
    this.coreId = coreId;
    this.eHi = eHi; this.eLo = eLo;
    this.sHi = sHi; this.sLo = sLo;
    this.tHi = tHi; this.tLo = tLo;
    this.syncedBoundary = syncedBoundary;
    this.#op = operation;
    this.#src = src;
    this.#at = at;
    this.#end = end;
  }

  /** What the entry does. */
  get operation(): WalOperation {
    return this.#op ?? this.#build();
  }

  #build(): WalOperation {
    const src = this.#src;
    if (src === null) throw new PerCoreWalError('ASSERTION', 'entry has neither an operation nor its bytes');
    const body = this.#at + PAYLOAD_HEADER_SIZE, end = this.#end;
    let op: WalOperation;
    if (src[this.#at + 1] === TAG_PUT) {
      const key = body + 4;
      const value = key + (src[body]! | (src[body + 1]! << 8) | (src[body + 2]! << 16)) + src[body + 3]! * 0x1000000;
      op = putOperation(src, key, value, end);
    } else {
      op = { type: 'delete', key: copyBytes(src, body, end) };
    }
    this.#op = op;
    this.#src = null; // the read block is no longer needed
    return op;
  }

  /** The operation's type (`operation.type`), without building the operation. */
  get operationType(): WalOperationType {
    const op = this.#op;
    if (op !== null) return op.type;
    return this.#src![this.#at + 1] === TAG_PUT ? 'put' : 'delete';
  }

  get epoch(): bigint { return joinU64(this.eHi, this.eLo); }
  get sequence(): bigint { return joinU64(this.sHi, this.sLo); }
  get timestampNs(): bigint { return joinU64(this.tHi, this.tLo); }

  /** @internal Validating constructor for the public factories (cold path). */
  static make(coreId: unknown, epoch: unknown, sequence: unknown, timestampNs: unknown, op: WalOperation): PerCoreWalEntry {
    const c = toCoreId(coreId);
    const e = toU64(epoch, 'epoch');
    const s = toU64(sequence, 'sequence');
    const t = toU64(timestampNs, 'timestampNs');
    return new PerCoreWalEntry(c, hi32(e), lo32(e), hi32(s), lo32(s), hi32(t), lo32(t), op);
  }

  static put(coreId: number, epoch: U64Like, sequence: U64Like, key: Uint8Array, value: Uint8Array, timestampNs: U64Like): PerCoreWalEntry {
    return PerCoreWalEntry.make(coreId, epoch, sequence, timestampNs, {
      type: 'put', key: requireBytes(key, 'key'), value: requireBytes(value, 'value'),
    });
  }

  static delete(coreId: number, epoch: U64Like, sequence: U64Like, key: Uint8Array, timestampNs: U64Like): PerCoreWalEntry {
    return PerCoreWalEntry.make(coreId, epoch, sequence, timestampNs, { type: 'delete', key: requireBytes(key, 'key') });
  }

  static checkpoint(coreId: number, epoch: U64Like, sequence: U64Like, checkpointId: U64Like, timestampNs: U64Like): PerCoreWalEntry {
    return PerCoreWalEntry.make(coreId, epoch, sequence, timestampNs, { type: 'checkpoint', id: toU64(checkpointId, 'checkpointId') });
  }

  static commit(
    coreId: number, epoch: U64Like, sequence: U64Like,
    offsets: ReadonlyMap<string, U64Like> | Record<string, U64Like>, watermark: U64Like | null | undefined, timestampNs: U64Like,
  ): PerCoreWalEntry {
    return PerCoreWalEntry.make(coreId, epoch, sequence, timestampNs, commitOperation(offsets, watermark));
  }

  static epochBarrier(coreId: number, epoch: U64Like, sequence: U64Like, timestampNs: U64Like): PerCoreWalEntry {
    return PerCoreWalEntry.make(coreId, epoch, sequence, timestampNs, { type: 'epochBarrier', epoch: toU64(epoch, 'epoch') });
  }

  /** Wall-clock time in nanoseconds since the Unix epoch. */
  static nowNs(): bigint {
    return wallNowNs();
  }

  /** Global order: (epoch, timestampNs, coreId, sequence). Within one core this is write order. */
  static compare(a: PerCoreWalEntry, b: PerCoreWalEntry): number {
    return (
      a.eHi - b.eHi || a.eLo - b.eLo || a.tHi - b.tHi || a.tLo - b.tLo ||
      a.coreId - b.coreId || a.sHi - b.sHi || a.sLo - b.sLo
    );
  }

  isPut(): boolean { return this.operationType === 'put'; }
  isDelete(): boolean { return this.operationType === 'delete'; }
  isCheckpoint(): boolean { return this.operationType === 'checkpoint'; }
  isCommit(): boolean { return this.operationType === 'commit'; }
  isEpochBarrier(): boolean { return this.operationType === 'epochBarrier'; }
  /** Put and Delete change state; the other operations are markers or metadata. */
  isStateOperation(): boolean { const t = this.operationType; return t === 'put' || t === 'delete'; }
  key(): Uint8Array | undefined {
    const op = this.operation;
    return op.type === 'put' || op.type === 'delete' ? op.key : undefined;
  }
  value(): Uint8Array | undefined {
    const op = this.operation;
    return op.type === 'put' ? op.value : undefined;
  }

  /** What `console.log` and `util.inspect` show: the public fields, the operation built. */
  [Symbol.for('nodejs.util.inspect.custom')](_depth: number, options: object, inspect: (v: unknown, o: object) => string): string {
    const view = { coreId: this.coreId, epoch: this.epoch, sequence: this.sequence, timestampNs: this.timestampNs, operation: this.operation };
    return `PerCoreWalEntry ${inspect(view, options)}`;
  }
}

/** Validates and normalises commit arguments (cold path). */
export function commitOperation(
  offsets: ReadonlyMap<string, U64Like> | Record<string, U64Like>, watermark: U64Like | null | undefined,
): WalOperation {
  if (offsets === null || typeof offsets !== 'object') {
    throw new PerCoreWalError('INVALID_ARGUMENT', 'offsets must be a Map or a plain object of source name to offset');
  }
  const out = new Map<string, bigint>();
  const it = offsets instanceof Map ? (offsets as ReadonlyMap<string, U64Like>).entries() : Object.entries(offsets as Record<string, U64Like>);
  for (const [name, off] of it) {
    if (typeof name !== 'string') throw new PerCoreWalError('INVALID_ARGUMENT', 'source names must be strings');
    if (Buffer.byteLength(name) > 0xffff) throw new PerCoreWalError('INVALID_ARGUMENT', `source name longer than 65535 bytes: ${name.slice(0, 40)}…`);
    out.set(name, toI64(off, `offset of ${name}`));
  }
  if (out.size > 0xffff) throw new PerCoreWalError('INVALID_ARGUMENT', 'a commit holds at most 65535 sources');
  const wm = watermark === null || watermark === undefined ? null : toI64(watermark, 'watermark');
  return { type: 'commit', offsets: out, watermark: wm };
}
