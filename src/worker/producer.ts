import { PAYLOAD_HEADER_SIZE } from '../entry/codec.js';
import { commitOperation, type U64Like } from '../entry/entry.js';
import { PerCoreWalError } from '../errors/errors.js';
import { DEFAULT_MAX_RECORD_SIZE } from '../record/framing.js';
import { Lane } from './lane.js';
import { encodeCommitBody, OP_COMMIT, OP_DELETE, OP_PUT } from './protocol.js';
import { RingProducer } from './ring.js';
import { coreForKey } from './route.js';

/** What to do when a core's ring is full. */
export type BackpressureMode = 'wait' | 'reject';

/**
 * Everything a thread needs to produce into a pool's cores: plain data and
 * `SharedArrayBuffer`s, so it can be posted to a worker (`postMessage`, `workerData`).
 * Rebuild the producer there with {@link CoreWalProducer.fromHandle}.
 */
export interface CoreWalProducerHandle {
  readonly kind: 'corewal-producer';
  readonly rings: readonly SharedArrayBuffer[];
  readonly maxRecordSize: number;
  readonly backpressure: BackpressureMode;
}

/** Per-append options. */
export interface AppendOptions {
  /** The core to append to; default: the key's hash ({@link CoreWalProducer.coreOf}); commits default to core 0. */
  core?: number;
  /**
   * When the core's ring is full: `true` waits for room (the promise settles later; the
   * event loop is never blocked), `false` rejects with `BACKPRESSURE`. Default: the
   * producer's `backpressure` mode (`'wait'` unless configured otherwise).
   */
  wait?: boolean;
}

/**
 * Appends to the cores of a {@link CoreWalPool} from any thread. Every append returns a
 * promise that resolves once the record is durable (its core's worker has fdatasynced
 * it), with the record's ticket: 1, 2, 3, … per core, the order in which the core
 * appended it. Records of one core are written in ticket order; records sent from one
 * producer to one core keep the order of the calls.
 *
 * Data crosses threads through one shared-memory ring per core, never one message per
 * record; completions arrive through `Atomics.waitAsync`, once per synced batch.
 *
 * Backpressure: when a core's ring is full, an append waits for room without blocking
 * the event loop (mode `'wait'`, the default), or rejects with `BACKPRESSURE` (mode
 * `'reject'`, or `{ wait: false }` on the call). A failed core rejects with
 * `WORKER_FAILED`, a closed pool with `CLOSED`; argument errors reject with
 * `INVALID_ARGUMENT`, `INVALID_CORE_ID` or `RECORD_TOO_LARGE` before anything is queued.
 *
 * @example
 * ```ts
 * // main thread
 * const pool = await CoreWalPool.start({ dir: '/data/wal', workers: 2 });
 * new Worker('./producer.js', { workerData: { wal: pool.producerHandle() } });
 * // producer.js (another thread)
 * const wal = CoreWalProducer.fromHandle(workerData.wal);
 * const ticket = await wal.put(Buffer.from('user:1'), Buffer.from('{"name":"Ada"}'));
 * ```
 */
export class CoreWalProducer {
  private readonly lanes: Lane[];
  private readonly maxRecord: number;
  private readonly waitDefault: boolean;
  private readonly handleData: CoreWalProducerHandle;
  private activeLanes = 0;
  private keepAlive: NodeJS.Timeout | null = null;

  private constructor(handle: CoreWalProducerHandle) {
    this.handleData = handle;
    this.lanes = handle.rings.map((sab, c) => new Lane(this, c, sab));
    this.maxRecord = handle.maxRecordSize;
    this.waitDefault = handle.backpressure !== 'reject';
  }

  /** Rebuilds a producer from the handle another thread posted ({@link CoreWalPool.producerHandle}). */
  static fromHandle(handle: CoreWalProducerHandle): CoreWalProducer {
    if (handle === null || typeof handle !== 'object' || handle.kind !== 'corewal-producer' || !Array.isArray(handle.rings) ||
      handle.rings.length === 0 || !handle.rings.every((r) => r instanceof SharedArrayBuffer)) {
      throw new PerCoreWalError('INVALID_ARGUMENT', 'CoreWalProducer.fromHandle takes the object returned by CoreWalPool.producerHandle()');
    }
    const maxRecordSize = handle.maxRecordSize ?? DEFAULT_MAX_RECORD_SIZE;
    if (!Number.isSafeInteger(maxRecordSize) || maxRecordSize <= 0) throw new PerCoreWalError('INVALID_ARGUMENT', 'handle.maxRecordSize must be a positive integer');
    const bp = handle.backpressure ?? 'wait';
    if (bp !== 'wait' && bp !== 'reject') throw new PerCoreWalError('INVALID_ARGUMENT', `backpressure must be 'wait' or 'reject', got ${String(bp)}`);
    return new CoreWalProducer({ kind: 'corewal-producer', rings: [...handle.rings], maxRecordSize, backpressure: bp });
  }

  /** The postable handle of this producer's cores (see {@link CoreWalProducer.fromHandle}). */
  handle(): CoreWalProducerHandle { return this.handleData; }

  numCores(): number { return this.lanes.length; }

  /** The core a key is routed to when no `core` is given. */
  coreOf(key: Uint8Array | string): number {
    return coreForKey(typeof key === 'string' ? Buffer.from(key, 'utf8') : key, this.lanes.length);
  }

  /** Appends a Put; resolves with its ticket once durable. Strings are UTF-8. */
  put(key: Uint8Array | string, value: Uint8Array | string, options?: AppendOptions): Promise<number> {
    if (typeof key === 'string') key = Buffer.from(key, 'utf8');
    if (typeof value === 'string') value = Buffer.from(value, 'utf8');
    if (!(key instanceof Uint8Array) || !(value instanceof Uint8Array)) return Promise.reject(badBytes(key, value));
    const lane = this.laneFor(key, options);
    if (lane === null) return Promise.reject(badCore(options!.core, this.lanes.length));
    const err = this.checkSize(lane, 4 + key.length + value.length, key.length + value.length);
    if (err !== null) return Promise.reject(err);
    return lane.append(OP_PUT, key, value, options?.wait ?? this.waitDefault);
  }

  /** Appends a Delete; resolves with its ticket once durable. */
  delete(key: Uint8Array | string, options?: AppendOptions): Promise<number> {
    if (typeof key === 'string') key = Buffer.from(key, 'utf8');
    if (!(key instanceof Uint8Array)) return Promise.reject(badBytes(key, new Uint8Array(0)));
    const lane = this.laneFor(key, options);
    if (lane === null) return Promise.reject(badCore(options!.core, this.lanes.length));
    const err = this.checkSize(lane, key.length, key.length);
    if (err !== null) return Promise.reject(err);
    return lane.append(OP_DELETE, key, null, options?.wait ?? this.waitDefault);
  }

  /**
   * Appends a Commit of source offsets (e.g. Kafka partition offsets) and an optional
   * watermark, to `options.core` (default core 0); resolves with its ticket once durable.
   */
  commit(offsets: ReadonlyMap<string, U64Like> | Record<string, U64Like>, watermark: U64Like | null = null, options?: AppendOptions): Promise<number> {
    let body: Uint8Array;
    try {
      const op = commitOperation(offsets, watermark);
      if (op.type !== 'commit') throw new Error('unreachable');
      body = encodeCommitBody(op.offsets, op.watermark);
    } catch (e) {
      return Promise.reject(e);
    }
    const core = options?.core ?? 0;
    const lane = Number.isInteger(core) ? this.lanes[core] : undefined;
    if (lane === undefined) return Promise.reject(badCore(core, this.lanes.length));
    const err = this.checkSize(lane, body.length, body.length);
    if (err !== null) return Promise.reject(err);
    return lane.append(OP_COMMIT, body, null, options?.wait ?? this.waitDefault);
  }

  /** Appends of this producer not yet settled (in the rings or waiting for room). */
  pending(): number {
    let n = 0;
    for (const l of this.lanes) n += l.pendingCount();
    return n;
  }

  /** @internal Resolves once no append of this producer waits for room in a ring. */
  async whenUnblocked(): Promise<void> {
    await Promise.all(this.lanes.map((l) => l.whenUnblocked()));
  }

  /** @internal Lanes report when they start and stop having appends in flight. */
  laneActive(on: boolean): void {
    this.activeLanes += on ? 1 : -1;
    if (this.activeLanes === (on ? 1 : 0)) {
      this.keepAlive ??= setInterval(noop, 1 << 30).unref();
      if (on) this.keepAlive.ref(); else this.keepAlive.unref();
    }
  }

  /** @internal The pool tells its own producer the detailed error of a failed core. */
  failCore(core: number, error: PerCoreWalError): void {
    const lane = this.lanes[core]!;
    lane.failure = error;
    lane.poke();
  }

  /** @internal Makes every lane look at its core's state again. */
  pokeAll(): void {
    for (const l of this.lanes) l.poke();
  }

  private laneFor(key: Uint8Array, options: AppendOptions | undefined): Lane | null {
    const core = options?.core;
    if (core === undefined) return this.lanes[coreForKey(key, this.lanes.length)]!;
    return (Number.isInteger(core) ? this.lanes[core] : undefined) ?? null;
  }

  private checkSize(lane: Lane, body: number, ringBytes: number): PerCoreWalError | null {
    const payload = PAYLOAD_HEADER_SIZE + body;
    if (payload > this.maxRecord) {
      return new PerCoreWalError('RECORD_TOO_LARGE', `record payload of ${payload} bytes exceeds maxRecordSize ${this.maxRecord} (core ${lane.core})`,
        { coreId: lane.core });
    }
    if (RingProducer.messageBytes(ringBytes, 0) > lane.ring.maxMessage) {
      return new PerCoreWalError('RECORD_TOO_LARGE',
        `record of ${ringBytes} key and value bytes does not fit the ring of core ${lane.core} (at most ${lane.ring.maxMessage - 16} bytes; raise the pool's ringBytes)`,
        { coreId: lane.core });
    }
    return null;
  }
}

function noop(): void {}

function badBytes(key: unknown, value: unknown): PerCoreWalError {
  const what = !(key instanceof Uint8Array) ? 'key' : 'value';
  const v = what === 'key' ? key : value;
  return new PerCoreWalError('INVALID_ARGUMENT', `${what} must be a Uint8Array, Buffer or string, got ${v === null ? 'null' : typeof v}`);
}

function badCore(core: unknown, n: number): PerCoreWalError {
  return new PerCoreWalError('INVALID_CORE_ID', `core must be an integer in [0, ${n}), got ${String(core)}`);
}
