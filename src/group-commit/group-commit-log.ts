import type { PerCoreWalEntry } from '../entry/entry.js';
import { PerCoreWalError } from '../errors/errors.js';
import { registerWriterSegment } from '../storage-io/register.js';
import { ThreadPoolStorageIo } from '../storage-io/thread-pool.js';
import type { IoCompletion, IoFd, StorageIo } from '../storage-io/types.js';
import { CoreWalWriter, type CoreWalWriterOptions } from '../writer/writer.js';

/** How records are grouped under one datasync. */
export interface GroupCommitOptions {
  /**
   * The backend; default a new {@link ThreadPoolStorageIo} owned (and closed) by the log.
   * Several logs may share one backend: their completions are dispatched to each.
   */
  storageIo?: StorageIo;
  /** The writer's segment as registered with `storageIo`; default: registered by the log (and deregistered on close). */
  fd?: IoFd;
  /**
   * When the disk is idle, how long the first record of a group waits for company
   * before the group's datasync is submitted. Default 0: at the next turn of the event
   * loop, so every append made in the same turn shares the datasync. While
   * `maxSyncsInFlight` datasyncs are in flight, new records form the next group, submitted
   * the moment one completes (but not before `maxDelayMs` has passed since that group's
   * first record).
   */
  maxDelayMs?: number;
  /**
   * A group is submitted as soon as it holds this many bytes (and fewer than
   * `maxSyncsInFlight` datasyncs are in flight), without waiting out `maxDelayMs` or the
   * end of the turn; later records form the next group. Default 8 MiB.
   */
  maxGroupBytes?: number;
  /**
   * Datasyncs in flight at once. Default 1: records that arrive while a datasync runs are
   * written meanwhile and wait for it, then share the next one. With 2 or more they start
   * their own datasync at the end of their turn instead: worth it on a disk that runs
   * concurrent flushes in parallel (e.g. an NVMe drive with power-loss protection, where
   * fdatasync needs no cache flush); on a disk that flushes one at a time it only makes
   * more, smaller groups (measured 0.8–1x with 64 and 256 producers on a virtio disk). A
   * group's callers still resolve only once its datasync, every write below it and every
   * datasync submitted before it have completed well.
   */
  maxSyncsInFlight?: number;
}

export interface GroupCommitLogOptions extends GroupCommitOptions {
  /** Core id of the segment. Default 0. */
  coreId?: number;
  /** Options of the writer `open` creates. */
  writerOptions?: CoreWalWriterOptions;
}

/** Counters, for monitoring and benchmarks. */
export interface GroupCommitStats {
  /** Records appended. */
  records: number;
  /** Datasyncs submitted (groups). */
  groups: number;
  /** Callers still waiting for durability. */
  waiting: number;
}

type Resolve = (position: number) => void;
type Reject = (err: unknown) => void;

// One executor for every promise: it hands the resolving functions over through these
// two slots, so `put` allocates no closure of its own.
let capturedResolve: Resolve | null = null;
let capturedReject: Reject | null = null;
function capture(resolve: Resolve, reject: Reject): void {
  capturedResolve = resolve;
  capturedReject = reject;
}

const OPEN = 0;
const CLOSING = 1;
const CLOSED = 2;

/** An append refused for backpressure, retried as completions free room. */
interface Deferred {
  kind: 'put' | 'delete' | 'entry' | 'sync';
  key: Uint8Array | null;
  value: Uint8Array | null;
  entry: PerCoreWalEntry | null;
  resolve: Resolve;
  reject: Reject;
}

/**
 * Group commit for event-loop code: many concurrent callers each `await` the
 * durability of their own record, and share one datasync. Built on a
 * {@link CoreWalWriter}'s StorageIo path, it never blocks the event loop (with the
 * default {@link ThreadPoolStorageIo}); it works the same inside a worker thread.
 *
 * Each `put`/`delete`/`append` resolves to the record's start position once a datasync
 * covering the record has completed (`syncedPosition()` is past its end), never before.
 * A failed write or datasync rejects every affected caller with the writer's
 * `PerCoreWalError` (code `IO`, with `errno`); from then on every call rejects with
 * `POISONED`. Records refused by the backend for lack of room wait in order and go out as
 * completions free it.
 *
 * Keys and values are encoded at once, except while the backend is full: then they wait
 * by reference, so do not modify them until their promise settles (as with `fs.write`).
 * `open` is synchronous (it creates or validates the segment); nothing after it blocks.
 *
 * @example
 * ```ts
 * import { GroupCommitLog } from 'corewal';
 * const log = GroupCommitLog.open('/data/wal/wal-0.log', { coreId: 0 });
 * // Any number of concurrent requests; those arriving together share a datasync.
 * const position = await log.put(Buffer.from('user:1'), Buffer.from('{"name":"Ada"}'));
 * await log.close();
 * ```
 */
export class GroupCommitLog {
  private readonly w: CoreWalWriter;
  private readonly sio: StorageIo;
  private readonly fd: IoFd;
  private readonly ownsWriter: boolean;
  private readonly ownsSio: boolean;
  private readonly ownsFd: boolean;
  private readonly maxDelay: number;
  private readonly maxBytes: number;
  private readonly maxSyncs: number;
  private readonly dispatcher: Dispatcher;
  // Waiters in append order, so in position order: resolved as syncedPosition passes qEnd.
  private qStart: number[] = [];
  private qEnd: number[] = [];
  private qRes: (Resolve | undefined)[] = [];
  private qRej: (Reject | undefined)[] = [];
  private qHead = 0;
  private deferred: Deferred[] = [];
  private groupBytes = 0;
  private groupOpenedAt = -1;
  /** End of the last group submitted (its datasync's boundary). */
  private submitted = 0;
  private scheduled = false;
  private timer: NodeJS.Timeout | null = null;
  private failure: PerCoreWalError | null = null;
  private state = OPEN;
  private closePromise: Promise<void> | null = null;
  private nRecords = 0;
  private nGroups = 0;
  private readonly onImmediate = (): void => this.tick();
  private readonly onTimer = (): void => { this.timer = null; this.tick(); };

  private constructor(writer: CoreWalWriter, options: GroupCommitOptions, ownsWriter: boolean) {
    this.maxDelay = options.maxDelayMs ?? 0;
    this.maxBytes = options.maxGroupBytes ?? 8 << 20;
    this.maxSyncs = options.maxSyncsInFlight ?? 1;
    if (typeof this.maxDelay !== 'number' || !(this.maxDelay >= 0) || !Number.isFinite(this.maxDelay)) {
      throw new PerCoreWalError('INVALID_ARGUMENT', `maxDelayMs must be a finite number >= 0, got ${String(options.maxDelayMs)}`);
    }
    if (!Number.isSafeInteger(this.maxBytes) || this.maxBytes < 1) {
      throw new PerCoreWalError('INVALID_ARGUMENT', `maxGroupBytes must be a positive integer, got ${String(options.maxGroupBytes)}`);
    }
    if (!Number.isSafeInteger(this.maxSyncs) || this.maxSyncs < 1) {
      throw new PerCoreWalError('INVALID_ARGUMENT', `maxSyncsInFlight must be a positive integer, got ${String(options.maxSyncsInFlight)}`);
    }
    if (options.fd !== undefined && options.storageIo === undefined) {
      throw new PerCoreWalError('INVALID_ARGUMENT', 'fd is the segment registered with storageIo: pass storageIo too');
    }
    this.w = writer;
    this.submitted = writer.syncedPosition();
    this.ownsWriter = ownsWriter;
    this.ownsSio = options.storageIo === undefined;
    this.sio = options.storageIo ?? new ThreadPoolStorageIo();
    this.ownsFd = options.fd === undefined;
    try {
      this.fd = options.fd ?? registerWriterSegment(writer, this.sio);
    } catch (e) {
      if (this.ownsSio) this.sio.close();
      throw e;
    }
    this.dispatcher = Dispatcher.of(this.sio);
    this.dispatcher.add(this);
    // Makes the backend the writer's: records are encoded into the writer's buffer by the
    // direct append methods, and the buffer goes out through the backend, one write per turn.
    writer.flushViaStorageIo(this.sio, this.fd);
  }

  /**
   * Opens (or creates) the segment at `path` with a new writer and, unless given one, a
   * new {@link ThreadPoolStorageIo}. `close()` closes all of them.
   */
  static open(path: string, options: GroupCommitLogOptions = {}): GroupCommitLog {
    const writer = CoreWalWriter.create(options.coreId ?? 0, path, options.writerOptions);
    try {
      return new GroupCommitLog(writer, options, true);
    } catch (e) {
      writer.close();
      throw e;
    }
  }

  /**
   * Group commit on an existing writer (e.g. one of a `PerCoreWalManager`'s). The log
   * does not close the writer; use only the log to append while it is open.
   */
  static forWriter(writer: CoreWalWriter, options: GroupCommitOptions = {}): GroupCommitLog {
    if (!(writer instanceof CoreWalWriter)) throw new PerCoreWalError('INVALID_ARGUMENT', 'forWriter takes a CoreWalWriter');
    return new GroupCommitLog(writer, options, false);
  }

  /** Appends a Put; resolves to its position once durable. */
  put(key: Uint8Array, value: Uint8Array): Promise<number> {
    if (this.failure !== null || this.state !== OPEN || this.deferred.length > 0) return this.slow('put', key, value, null);
    let start: number;
    try {
      start = this.w.appendPut(key, value);
    } catch (e) {
      return this.refused(e, 'put', key, value, null);
    }
    return this.waitFor(start);
  }

  /** Appends a Delete; resolves to its position once durable. */
  delete(key: Uint8Array): Promise<number> {
    if (this.failure !== null || this.state !== OPEN || this.deferred.length > 0) return this.slow('delete', key, null, null);
    let start: number;
    try {
      start = this.w.appendDelete(key);
    } catch (e) {
      return this.refused(e, 'delete', key, null, null);
    }
    return this.waitFor(start);
  }

  /** Appends any entry (stamped by the writer); resolves to its position once durable. */
  append(entry: PerCoreWalEntry): Promise<number> {
    if (this.failure !== null || this.state !== OPEN || this.deferred.length > 0) return this.slow('entry', null, null, entry);
    let start: number;
    try {
      start = this.w.append(entry);
    } catch (e) {
      return this.refused(e, 'entry', null, null, entry);
    }
    return this.waitFor(start);
  }

  /** Resolves to `syncedPosition()` once everything appended so far is durable. */
  sync(): Promise<number> {
    if (this.failure !== null || this.state === CLOSED || this.deferred.length > 0) return this.slow('sync', null, null, null);
    return this.syncWaiter();
  }

  /** The writer underneath (for its positions, epoch, sequence; do not append to it directly). */
  writer(): CoreWalWriter { return this.w; }
  /** Where the next record starts. */
  position(): number { return this.w.position(); }
  /** Bytes durable. */
  syncedPosition(): number { return this.w.syncedPosition(); }
  /** The failure that poisoned the log, or null. */
  failedWith(): PerCoreWalError | null { return this.failure; }

  stats(): GroupCommitStats {
    return { records: this.nRecords, groups: this.nGroups, waiting: this.qEnd.length - this.qHead + this.deferred.length };
  }

  /**
   * Waits until everything appended is durable (or has failed), then closes what the log
   * owns: the fd it registered, the backend and writer it created. Calls made after
   * `close()` reject with `CLOSED`. Rejects with the failure if the last records could
   * not be made durable.
   */
  close(): Promise<void> {
    this.closePromise ??= this.doClose();
    return this.closePromise;
  }

  private async doClose(): Promise<void> {
    this.state = CLOSING;
    let err: unknown = null;
    // A failure reported before close() was already reported to every caller it affected.
    if (this.failure === null) {
      try {
        await this.slowOrSync();
      } catch (e) {
        err = e;
      }
    }
    // With a failure, in-flight operations may still be running: let them finish.
    if (this.ioOutstanding()) await this.dispatcher.idle(this);
    this.state = CLOSED;
    if (this.timer !== null) { clearTimeout(this.timer); this.timer = null; }
    this.dispatcher.remove(this);
    try {
      if (this.ownsSio) this.sio.close();
      else if (this.ownsFd) this.sio.deregisterFd(this.fd);
    } finally {
      if (this.ownsWriter) this.w.close();
      else if (!this.ioOutstanding()) this.w.detachStorageIo();
    }
    if (err !== null) throw err;
  }

  private slowOrSync(): Promise<number> {
    return this.deferred.length > 0 || this.failure !== null ? this.slow('sync', null, null, null) : this.syncWaiter();
  }

  // ---- waiting for durability -----------------------------------------------------

  private waitFor(start: number): Promise<number> {
    const end = this.w.position();
    const p = new Promise<number>(capture);
    this.qStart.push(start);
    this.qEnd.push(end);
    this.qRes.push(capturedResolve!);
    this.qRej.push(capturedReject!);
    this.nRecords++;
    if (this.groupOpenedAt < 0) this.groupOpenedAt = performance.now();
    this.groupBytes += end - start;
    // A full group goes now, while the rest of this turn's callers form the next one:
    // their appends then overlap its datasync instead of waiting behind it.
    if (this.groupBytes >= this.maxBytes && this.w.syncsInFlight() < this.maxSyncs) {
      this.maybeCommit();
      this.dispatcher.run();
    }
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.onImmediate);
    }
    return p;
  }

  private syncWaiter(): Promise<number> {
    const end = this.w.position();
    if (end <= this.w.syncedPosition() && this.qHead === this.qEnd.length) return Promise.resolve(this.w.syncedPosition());
    const p = new Promise<number>(capture);
    this.qStart.push(end);
    this.qEnd.push(end);
    this.qRes.push(capturedResolve!);
    this.qRej.push(capturedReject!);
    if (this.groupOpenedAt < 0) this.groupOpenedAt = performance.now();
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.onImmediate);
    }
    return p;
  }

  /** Starts submitted writes, then submits the group's datasync when the policy says so. */
  private tick(): void {
    this.scheduled = false;
    if (this.failure !== null || this.state === CLOSED) return;
    try {
      // This turn's records start on their way now, overlapping any datasync in flight.
      this.w.flushViaStorageIo(this.sio, this.fd);
    } catch (e) {
      // No room: they stay buffered and go with the next datasync or turn.
      if ((e as PerCoreWalError).code !== 'BACKPRESSURE') {
        this.failWith(e);
        return;
      }
    }
    // The datasync is submitted before the backend starts anything, so that it queues
    // right behind the group's writes: ThreadPoolStorageIo then runs both as one pool job,
    // one trip to the pool per group instead of two (with 256 producers nearly every group
    // went as a write job and then a datasync job).
    this.maybeCommit();
    try {
      this.sio.flush();
    } catch (e) {
      this.failWith(e);
      return;
    }
    this.dispatcher.run();
  }

  private maybeCommit(): void {
    if (this.failure !== null || this.w.syncsInFlight() >= this.maxSyncs || this.qHead === this.qEnd.length
      || this.w.position() <= this.submitted) return;
    if (this.maxDelay > 0 && this.groupBytes < this.maxBytes) {
      const wait = this.groupOpenedAt + this.maxDelay - performance.now();
      if (wait > 0) {
        this.timer ??= setTimeout(this.onTimer, wait);
        return;
      }
    }
    if (this.timer !== null) { clearTimeout(this.timer); this.timer = null; }
    try {
      this.w.syncViaStorageIoPipelined(this.sio, this.fd);
    } catch (e) {
      // No room for the datasync: it goes once completions free some.
      if ((e as PerCoreWalError).code === 'BACKPRESSURE') return;
      this.failWith(e);
      return;
    }
    this.nGroups++;
    this.submitted = this.w.position();
    this.groupBytes = 0;
    this.groupOpenedAt = -1;
  }

  /** @internal True while the writer has StorageIo operations in flight. */
  ioOutstanding(): boolean {
    return this.w.isSyncPending() || this.w.writesInFlight() > 0;
  }

  /** @internal A batch of completions from the shared backend. */
  onCompletions(batch: readonly IoCompletion[]): void {
    if (this.failure !== null) {
      // Still account for what was in flight, so that close() knows when it is over.
      try { this.w.checkCompletions(batch); } catch { /* already failed */ }
      return;
    }
    try {
      this.w.checkCompletions(batch);
    } catch (e) {
      this.failWith(e);
      return;
    }
    this.resolveDurable();
    if (this.deferred.length > 0) this.retryDeferred();
    this.maybeCommit();
  }

  private resolveDurable(): void {
    const synced = this.w.syncedPosition();
    const qEnd = this.qEnd;
    let h = this.qHead;
    const n = qEnd.length;
    while (h < n && qEnd[h]! <= synced) {
      const r = this.qRes[h]!;
      this.qRes[h] = undefined;
      this.qRej[h] = undefined;
      r(this.qStart[h]!);
      h++;
    }
    this.qHead = h;
    if (h === n) {
      if (h > 0) {
        this.qHead = 0;
        this.qStart.length = 0; this.qEnd.length = 0; this.qRes.length = 0; this.qRej.length = 0;
      }
    } else if (h > 1024 && h * 2 > n) {
      this.qStart.splice(0, h); this.qEnd.splice(0, h); this.qRes.splice(0, h); this.qRej.splice(0, h);
      this.qHead = 0;
    }
  }

  /** @internal Poisons the log: durable records resolve, every other waiter rejects with `err`. */
  failWith(e: unknown): void {
    if (this.failure !== null) return;
    const err = e instanceof PerCoreWalError ? e
      : new PerCoreWalError('IO', `group commit on ${this.w.path()} failed: ${(e as Error)?.message ?? String(e)}`,
        { path: this.w.path(), coreId: this.w.coreId(), cause: e });
    this.resolveDurable();
    this.failure = err;
    if (this.timer !== null) { clearTimeout(this.timer); this.timer = null; }
    for (let h = this.qHead; h < this.qEnd.length; h++) this.qRej[h]!(err);
    this.qHead = 0;
    this.qStart.length = 0; this.qEnd.length = 0; this.qRes.length = 0; this.qRej.length = 0;
    // Never appended: they fail as a later call would.
    const deferred = this.deferred;
    this.deferred = [];
    for (const d of deferred) d.reject(this.poisoned());
  }

  private poisoned(): PerCoreWalError {
    return new PerCoreWalError('POISONED',
      `group commit log on ${this.w.path()} (core ${this.w.coreId()}) is poisoned by an earlier failure (${this.failure!.message}); reopen it through recovery`,
      { path: this.w.path(), coreId: this.w.coreId(), cause: this.failure });
  }

  // ---- cold paths -----------------------------------------------------------------

  private slow(kind: Deferred['kind'], key: Uint8Array | null, value: Uint8Array | null, entry: PerCoreWalEntry | null): Promise<number> {
    if (this.failure !== null) return Promise.reject(this.poisoned());
    if (this.state === CLOSED || (this.state === CLOSING && kind !== 'sync')) {
      return Promise.reject(new PerCoreWalError('CLOSED', `group commit log on ${this.w.path()} is closed`, { path: this.w.path(), coreId: this.w.coreId() }));
    }
    // Behind records still waiting for room, to keep call order = log order.
    const p = new Promise<number>(capture);
    this.deferred.push({ kind, key, value, entry, resolve: capturedResolve!, reject: capturedReject! });
    this.dispatcher.run();
    return p;
  }

  private refused(e: unknown, kind: Deferred['kind'], key: Uint8Array | null, value: Uint8Array | null, entry: PerCoreWalEntry | null): Promise<number> {
    if ((e as PerCoreWalError).code !== 'BACKPRESSURE') return Promise.reject(e);
    if (!this.ioOutstanding()) {
      // Nothing of ours in flight would free room: the backend is full of others' work.
      return Promise.reject(e);
    }
    return this.slow(kind, key, value, entry);
  }

  /** Appends deferred records in order while the backend takes them. */
  private retryDeferred(): void {
    const q = this.deferred;
    let i = 0;
    for (; i < q.length; i++) {
      const d = q[i]!;
      let start: number;
      try {
        if (d.kind === 'sync') {
          this.syncWaiter().then(d.resolve, d.reject);
          continue;
        }
        start = d.kind === 'put' ? this.w.appendPut(d.key!, d.value!)
          : d.kind === 'delete' ? this.w.appendDelete(d.key!)
            : this.w.append(d.entry!);
      } catch (e) {
        if ((e as PerCoreWalError).code === 'BACKPRESSURE') break;
        d.reject(e);
        continue;
      }
      this.waitFor(start).then(d.resolve, d.reject);
    }
    if (i > 0) q.splice(0, i);
  }
}

/**
 * Polls one backend for every log using it and hands each batch to all of them (a log
 * ignores completions that are not its writer's).
 */
class Dispatcher {
  private static readonly byBackend = new WeakMap<StorageIo, Dispatcher>();
  private readonly sio: StorageIo;
  private readonly logs: GroupCommitLog[] = [];
  private readonly out: IoCompletion[] = [];
  private running = false;
  private idleWaiters: { log: GroupCommitLog; resolve: () => void }[] = [];

  private constructor(sio: StorageIo) { this.sio = sio; }

  static of(sio: StorageIo): Dispatcher {
    let d = Dispatcher.byBackend.get(sio);
    if (d === undefined) Dispatcher.byBackend.set(sio, (d = new Dispatcher(sio)));
    return d;
  }

  add(log: GroupCommitLog): void { this.logs.push(log); }
  remove(log: GroupCommitLog): void {
    const i = this.logs.indexOf(log);
    if (i >= 0) this.logs.splice(i, 1);
  }

  /** Resolves once `log` has nothing in flight (or the backend failed, so nothing more will come). */
  idle(log: GroupCommitLog): Promise<void> {
    if (!log.ioOutstanding()) return Promise.resolve();
    const p = new Promise<void>((resolve) => this.idleWaiters.push({ log, resolve }));
    this.run();
    return p;
  }

  run(): void {
    if (this.running) return;
    this.running = true;
    void this.loop();
  }

  private busy(): boolean {
    for (let i = 0; i < this.logs.length; i++) if (this.logs[i]!.ioOutstanding()) return true;
    return false;
  }

  private async loop(): Promise<void> {
    const out = this.out;
    let crashed = false;
    try {
      while (this.busy()) {
        this.sio.flush();
        await this.sio.waitForCompletions();
        out.length = 0;
        this.sio.pollCompletions(out);
        if (out.length === 0) {
          // Nothing arrived although something is outstanding: yield rather than spin.
          await new Promise<void>((resolve) => setImmediate(resolve));
          continue;
        }
        const logs = this.logs;
        for (let i = 0; i < logs.length; i++) logs[i]!.onCompletions(out);
        out.length = 0;
        if (this.idleWaiters.length > 0) this.wakeIdle(false);
      }
    } catch (e) {
      // The backend itself failed (e.g. closed underneath): nothing in flight will complete.
      crashed = true;
      for (const log of [...this.logs]) log.failWith(e);
    } finally {
      this.running = false;
      this.wakeIdle(crashed);
    }
    // Work may have been added between the last check and `running = false`.
    if (!crashed && this.busy()) this.run();
  }

  private wakeIdle(all: boolean): void {
    const ws = this.idleWaiters;
    if (ws.length === 0) return;
    this.idleWaiters = [];
    for (const w of ws) {
      if (all || !w.log.ioOutstanding()) w.resolve();
      else this.idleWaiters.push(w);
    }
  }
}
