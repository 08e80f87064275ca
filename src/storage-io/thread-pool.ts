import * as nodeFs from 'node:fs';
import { PerCoreWalError, StorageIoError } from '../errors/errors.js';
import { assert } from '../util/assert.js';
import { nativeAddon, type NativeBinding, type NativeLane } from '../util/native.js';
import {
  badFd, checkData, checkLimit, checkOffset, checkOsFd, closedError, DEFAULT_MAX_QUEUED, drainCompletions, ECANCELED, EIO, negErrno, queueFull,
  registeredFdSize, ZERO_BLOCK_SIZE, zeroSlice,
} from './common.js';
import type { IoCompletion, IoFd, StorageIo } from './types.js';

type WriteCallback = (err: NodeJS.ErrnoException | null, written: number) => void;
type DoneCallback = (err: NodeJS.ErrnoException | null) => void;

/**
 * The asynchronous file operations {@link ThreadPoolStorageIo} runs on libuv's thread
 * pool. The default is Node's `fs`; tests inject one that fails chosen calls.
 */
export interface ThreadPoolFs {
  write(fd: number, buffer: Uint8Array, offset: number, length: number, position: number, callback: WriteCallback): void;
  writev(fd: number, buffers: Uint8Array[], position: number, callback: WriteCallback): void;
  fdatasync(fd: number, callback: DoneCallback): void;
  close(fd: number, callback: DoneCallback): void;
  fstatSync(fd: number): { size: number };
}

/** Node's own asynchronous `fs`. */
export const nodeThreadPoolFs: ThreadPoolFs = {
  write: (fd, b, o, l, p, cb) => nodeFs.write(fd, b, o, l, p, cb),
  writev: (fd, bs, p, cb) => nodeFs.writev(fd, bs, p, cb),
  fdatasync: (fd, cb) => nodeFs.fdatasync(fd, cb),
  close: (fd, cb) => nodeFs.close(fd, cb),
  fstatSync: (fd) => nodeFs.fstatSync(fd),
};

export interface ThreadPoolStorageIoOptions {
  /** Operations submitted and not yet polled before `submit*` fails with `QUEUE_FULL`. Default 65536. */
  maxQueued?: number;
  /** Bytes of submitted data held in copies before `submit*` fails with `BUFFER_EXHAUSTED`. Default 64 MiB. */
  maxBufferedBytes?: number;
  /** Size of the pooled slabs submitted data is copied into. Default 1 MiB. */
  slabSize?: number;
  /** Largest vectored write coalesced from contiguous submissions. Default 4 MiB. */
  maxBatchBytes?: number;
  /** File layer; defaults to Node's asynchronous fs. */
  fs?: ThreadPoolFs;
  /**
   * A datasync queued right behind a batch of writes runs in the same pool job, after them,
   * when the native addon is built and `fs` is Node's own: one trip to the pool and back per
   * group commit round instead of two. Default true; false keeps two jobs (Node's fs).
   */
  nativeJobs?: boolean;
  /**
   * With the native addon on Linux, each fd's jobs run on a "sticky" libuv pool thread: after
   * a job it waits up to this long for the fd's next one, which the event loop then hands it
   * without going through libuv's queue. That queue takes a mutex and a condvar on the event
   * loop for every job and every completion, and on a busy small machine the event loop
   * sometimes sleeps on them for milliseconds. At most half the pool's threads wait like this
   * at once; the others return to libuv at once. Default 2 ms; 0 queues every job afresh.
   */
  lingerMs?: number;
}

const WRITE = 0;
const ZEROS = 1;
const SYNC = 2;
const MAX_IOV = 1024;
const MAX_FREE_SLABS = 8;
// What the job on a lane does.
const LANE_WRITE = 0;
const LANE_SYNC = 1;
const LANE_BOTH = 2;
const NO_BUFFERS: Buffer[] = [];
/**
 * Lanes per fd: a write and a datasync may run at once on one fd (the writes submitted
 * after a datasync), and a group commit with several datasyncs in flight overlaps more.
 * Work beyond that goes to libuv's queue the ordinary way.
 */
const LANES_PER_FD = 4;

/** One of an fd's lanes and the job it runs. */
class Lane {
  readonly handle: NativeLane;
  busy = false;
  kind = LANE_WRITE;
  token = 0;
  constructor(native: NativeBinding, f: FdState, owner: ThreadPoolStorageIo, lingerUs: number) {
    this.handle = native.createLane!((werr, written, serr) => owner.laneDone(f, this, werr, written, serr), lingerUs);
  }
}
const RESOLVED = Promise.resolve();

/** A block submitted data is copied into; reused once every write using it completed. */
class Slab {
  readonly buf: Buffer;
  used = 0;
  refs = 0;
  readonly pooled: boolean;
  /** The caller's own bytes (`submitWriteOwned`): not ours to count or reuse. */
  readonly lent: boolean;
  constructor(buf: Buffer, pooled: boolean, lent = false) {
    this.buf = buf;
    this.pooled = pooled;
    this.lent = lent;
  }
}

/**
 * One registered fd: a FIFO of operations not yet started, at most one (coalesced)
 * write in flight, and any number of datasyncs in flight.
 */
class FdState {
  readonly os: number;
  appendAt: number;
  /** errno of the first failed operation; everything after it is cancelled. */
  failed = 0;
  deregistered = false;
  closing = false;
  dirty = false;
  // Queue of not-started operations, [head, length); [head, eligible) has been flushed.
  kind: number[] = [];
  tok: number[] = [];
  pos: number[] = [];
  len: number[] = [];
  slab: (Slab | null)[] = [];
  sOff: number[] = [];
  head = 0;
  eligible = 0;
  // The write in flight.
  writing = false;
  syncing = 0;
  bTok: number[] = [];
  bLen: number[] = [];
  bSlab: (Slab | null)[] = [];
  bPos = 0;
  bBytes = 0;
  bDone = 0;
  /** The batch's buffers; empty when it is one run inside one slab (`bRun` at `bRunOff`). */
  bIov: Buffer[] = [];
  bRun: Slab | null = null;
  bRunOff = 0;
  readonly onWrite: WriteCallback;
  /** Sticky lanes, created as work on the fd first needs them. */
  readonly lanes: Lane[] = [];

  constructor(os: number, size: number, owner: ThreadPoolStorageIo) {
    this.os = os;
    this.appendAt = size;
    this.onWrite = (err, n) => owner.writeDone(this, err, n);
  }

  queued(): number { return this.kind.length - this.head; }
}

/**
 * A {@link StorageIo} that never blocks the calling thread: writes and datasyncs run on
 * libuv's thread pool — as native jobs on each fd's sticky lanes where the addon is built
 * (see `lingerMs`), else through Node's asynchronous `fs`. Use it on the event loop (or a
 * worker's) with `CoreWalWriter`'s `*ViaStorageIo` methods, or through
 * {@link GroupCommitLog}, which drives it for you.
 *
 * - `submit*` copies the data into pooled slabs: the caller may reuse its buffer at once.
 * - Per fd, writes run in submission order, one at a time; contiguous writes flushed
 *   together go out as one vectored write. A datasync starts only once every write
 *   submitted before it on that fd has completed (SPEC invariant 2); writes submitted
 *   after it may run meanwhile.
 * - After an operation on an fd fails, every later one on that fd completes with
 *   `-ECANCELED` without running, so the file never holds a record after a hole.
 * - Bounded: past `maxQueued` operations (or `maxBufferedBytes` of copies) `submit*`
 *   throws `QUEUE_FULL` (`BUFFER_EXHAUSTED`) and queues nothing.
 *
 * @example
 * ```ts
 * const sio = new ThreadPoolStorageIo();
 * const fd = sio.registerFd(fs.openSync('/data/wal-0.log', 'r+'));
 * sio.submitAppend(fd, record);
 * const syncToken = sio.submitDatasync(fd);
 * sio.flush();
 * const done: IoCompletion[] = [];
 * while (!done.some((c) => c.token === syncToken)) {
 *   await sio.waitForCompletions();
 *   sio.pollCompletions(done);
 * }
 * sio.close();
 * ```
 */
export class ThreadPoolStorageIo implements StorageIo {
  private readonly fs: ThreadPoolFs;
  private readonly maxQueued: number;
  private readonly maxBuffered: number;
  private readonly slabSize: number;
  private readonly maxBatch: number;
  private readonly fds: (FdState | undefined)[] = [];
  private readonly dirtyFds: FdState[] = [];
  private nextToken = 1;
  /** Tokens handed out and not yet polled. */
  private outstanding = 0;
  /** Operations flushed (or cancelled-to-be) whose completion is not staged yet. */
  private running = 0;
  private cTok: number[] = [];
  private cRes: number[] = [];
  private cur: Slab | null = null;
  private readonly freeSlabs: Slab[] = [];
  private slabBytes = 0;
  private readonly native: NativeBinding | null;
  /** Write + datasync pool jobs started (for `info()`). */
  private writeDatasyncJobs = 0;
  /** Lane microseconds to linger; 0 when lanes are off. */
  private readonly lingerUs: number;
  private laneJobs = 0;
  /** Pool jobs queued, and parked threads woken, by lanes already closed. */
  private laneThreadsClosed = 0;
  private laneWakesClosed = 0;
  private wake: (() => void) | null = null;
  private waitP: Promise<void> | null = null;
  private idleWaiters: (() => void)[] = [];
  private closed = false;

  constructor(options: ThreadPoolStorageIoOptions = {}) {
    this.fs = options.fs ?? nodeThreadPoolFs;
    this.maxQueued = checkLimit(options.maxQueued ?? DEFAULT_MAX_QUEUED, 'maxQueued', 1);
    this.slabSize = checkLimit(options.slabSize ?? 1 << 20, 'slabSize', 4096);
    this.maxBuffered = checkLimit(options.maxBufferedBytes ?? 64 << 20, 'maxBufferedBytes', this.slabSize);
    this.maxBatch = checkLimit(options.maxBatchBytes ?? 4 << 20, 'maxBatchBytes', 1);
    const addon = (options.nativeJobs ?? true) && this.fs === nodeThreadPoolFs ? nativeAddon().binding : null;
    this.native = addon !== null && typeof addon.writevDatasync === 'function' ? addon : null;
    const linger = options.lingerMs ?? 2;
    if (!(typeof linger === 'number' && linger >= 0 && linger <= 1000)) {
      throw new PerCoreWalError('INVALID_ARGUMENT', `lingerMs must be a number of milliseconds in [0, 1000], got ${String(linger)}`);
    }
    this.lingerUs = this.native !== null && typeof this.native.createLane === 'function' ? Math.round(linger * 1000) : 0;
  }

  /**
   * Whether write + datasync jobs run natively and how many have been started; whether fds
   * run on sticky lanes, the jobs those ran, and the pool jobs queued for them (the fewer
   * per lane job, the more often the event loop handed a job straight to a waiting thread),
   * and how many of those hand-overs woke a thread that had parked to linger.
   */
  info(): { nativeJobs: boolean; writeDatasyncJobs: number; lanes: boolean; laneJobs: number; laneThreads: number; laneWakes: number } {
    let threads = this.laneThreadsClosed;
    let wakes = this.laneWakesClosed;
    for (const f of this.fds) {
      for (const l of f?.lanes ?? []) {
        const st = this.native!.laneStats!(l.handle);
        threads += st.threads;
        wakes += st.wakes;
      }
    }
    return {
      nativeJobs: this.native !== null,
      writeDatasyncJobs: this.writeDatasyncJobs,
      lanes: this.lingerUs > 0,
      laneJobs: this.laneJobs,
      laneThreads: threads,
      laneWakes: wakes,
    };
  }

  registerFd(fd: number): IoFd {
    this.checkOpen();
    checkOsFd(fd);
    const size = registeredFdSize(this.fs, fd);
    this.fds.push(new FdState(fd, size, this));
    return (this.fds.length - 1) as IoFd;
  }

  /** Stops accepting operations on `fd`; what was submitted still runs, then the OS fd is closed. */
  deregisterFd(fd: IoFd): void {
    this.checkOpen();
    const f = this.fdState(fd);
    this.fds[fd] = undefined;
    this.retire(f);
  }

  submitWrite(fd: IoFd, data: Uint8Array, offset: number): number {
    checkData(data);
    checkOffset(offset);
    const f = this.admit(fd);
    return this.enqueueData(f, data, offset);
  }

  /** As `submitWrite`, without the copy: `data` must stay unmodified until this completion is polled. */
  submitWriteOwned(fd: IoFd, data: Uint8Array, offset: number): number {
    checkData(data);
    checkOffset(offset);
    const f = this.admit(fd);
    const n = data.length;
    if (f.failed !== 0 || n === 0) return this.enqueue(f, WRITE, offset, n, null, 0);
    const buf = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, n);
    const slab = new Slab(buf, false, true);
    slab.used = n;
    slab.refs = 1;
    return this.enqueue(f, WRITE, offset, n, slab, 0);
  }

  submitAppend(fd: IoFd, data: Uint8Array): number {
    checkData(data);
    const f = this.admit(fd);
    const token = this.enqueueData(f, data, f.appendAt);
    f.appendAt += data.length;
    return token;
  }

  submitZeros(fd: IoFd, offset: number, length: number): number {
    checkOffset(offset);
    checkOffset(length, 'length');
    const f = this.admit(fd);
    return this.enqueue(f, ZEROS, offset, length, null, 0);
  }

  submitDatasync(fd: IoFd): number {
    const f = this.admit(fd);
    return this.enqueue(f, SYNC, 0, 0, null, 0);
  }

  flush(): number {
    this.checkOpen();
    let started = 0;
    const dirty = this.dirtyFds;
    for (let i = 0; i < dirty.length; i++) started += this.flushFd(dirty[i]!);
    dirty.length = 0;
    return started;
  }

  pollCompletions(out: IoCompletion[]): void {
    this.checkOpen();
    this.outstanding -= drainCompletions(this.cTok, this.cRes, out);
  }

  pendingCount(): number { return this.outstanding; }

  /**
   * Resolves once `pollCompletions` has something. Also resolves at once when nothing
   * flushed is still running, since then nothing could ever arrive (flush first).
   */
  waitForCompletions(): Promise<void> {
    this.checkOpen();
    if (this.cTok.length > 0 || this.running === 0) return RESOLVED;
    this.waitP ??= new Promise<void>((resolve) => { this.wake = resolve; });
    return this.waitP;
  }

  /** Flushes, then resolves once no operation is running (completions stay staged for polling). */
  whenIdle(): Promise<void> {
    if (!this.closed) this.flush();
    if (this.running === 0) return RESOLVED;
    return new Promise<void>((resolve) => { this.idleWaiters.push(resolve); });
  }

  /** Stops accepting work; what was submitted still runs, then every registered fd is closed. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (let i = 0; i < this.fds.length; i++) {
      const f = this.fds[i];
      if (f === undefined) continue;
      this.fds[i] = undefined;
      this.retire(f);
    }
    this.dirtyFds.length = 0;
    this.notify();
  }

  // ---- submission --------------------------------------------------------------

  private admit(fd: IoFd): FdState {
    this.checkOpen();
    const f = typeof fd === 'number' ? this.fds[fd] : undefined;
    if (f === undefined) throw badFd(fd);
    if (this.outstanding >= this.maxQueued) throw queueFull('ThreadPoolStorageIo', this.maxQueued);
    return f;
  }

  private enqueueData(f: FdState, data: Uint8Array, offset: number): number {
    const n = data.length;
    if (f.failed !== 0 || n === 0) return this.enqueue(f, WRITE, offset, n, null, 0);
    let slab: Slab;
    if (n > this.slabSize >>> 1) {
      slab = this.newSlab(n, false);
    } else {
      let cur = this.cur;
      if (cur === null || cur.used + n > cur.buf.length) {
        if (cur !== null) {
          // Retired: it returns to the pool once its last write completed (now, if none is left).
          this.cur = null;
          if (cur.refs === 0) this.releaseSlab(cur);
        }
        this.cur = cur = this.freeSlabs.pop() ?? this.newSlab(this.slabSize, true);
      }
      slab = cur;
    }
    const at = slab.used;
    slab.buf.set(data, at);
    slab.used = at + n;
    slab.refs++;
    return this.enqueue(f, WRITE, offset, n, slab, at);
  }

  private newSlab(size: number, pooled: boolean): Slab {
    if (this.slabBytes + size > this.maxBuffered) {
      // Idle slabs are memory too: give them up before refusing.
      while (this.freeSlabs.length > 0) this.slabBytes -= this.freeSlabs.pop()!.buf.length;
      const cur = this.cur;
      if (cur !== null && cur.refs === 0 && this.slabBytes + size > this.maxBuffered) {
        this.cur = null;
        this.slabBytes -= cur.buf.length;
      }
    }
    if (this.slabBytes + size > this.maxBuffered) {
      throw new StorageIoError('BUFFER_EXHAUSTED',
        `ThreadPoolStorageIo holds ${this.slabBytes} bytes of unwritten data; ${size} more would exceed maxBufferedBytes ${this.maxBuffered}`);
    }
    this.slabBytes += size;
    return new Slab(Buffer.allocUnsafeSlow(size), pooled);
  }

  private releaseSlab(s: Slab): void {
    if (s.lent) return;
    if (s.pooled && this.freeSlabs.length < MAX_FREE_SLABS) {
      s.used = 0;
      this.freeSlabs.push(s);
    } else {
      this.slabBytes -= s.buf.length;
    }
  }

  private unref(s: Slab | null): void {
    if (s !== null && --s.refs === 0 && s !== this.cur) this.releaseSlab(s);
  }

  private enqueue(f: FdState, kind: number, pos: number, len: number, slab: Slab | null, sOff: number): number {
    const token = this.nextToken++;
    this.outstanding++;
    if (f.failed !== 0) {
      this.unref(slab);
      this.stage(token, -ECANCELED);
      return token;
    }
    f.kind.push(kind);
    f.tok.push(token);
    f.pos.push(pos);
    f.len.push(len);
    f.slab.push(slab);
    f.sOff.push(sOff);
    if (!f.dirty) {
      f.dirty = true;
      this.dirtyFds.push(f);
    }
    return token;
  }

  private flushFd(f: FdState): number {
    f.dirty = false;
    const n = f.kind.length - f.eligible;
    f.eligible = f.kind.length;
    this.running += n;
    this.pump(f);
    return n;
  }

  // ---- execution ------------------------------------------------------------------

  /** Starts what may start on `f`: datasyncs once no earlier write is unfinished, writes one batch at a time. */
  private pump(f: FdState): void {
    while (f.head < f.eligible && !f.writing) {
      if (f.kind[f.head] === SYNC) {
        const token = f.tok[f.head]!;
        f.head++;
        this.startSync(f, token);
      } else {
        this.startBatch(f);
      }
    }
    this.compact(f);
    if (f.deregistered) this.maybeCloseOs(f);
  }

  private startSync(f: FdState, token: number): void {
    f.syncing++;
    const lane = this.freeLane(f);
    if (lane !== null && this.submitLane(f, lane, LANE_SYNC, token, NO_BUFFERS)) return;
    this.fs.fdatasync(f.os, (err) => this.syncDone(f, token, err === null ? 0 : -negErrno(err)));
  }

  private syncDone(f: FdState, token: number, errno: number): void {
    f.syncing--;
    this.complete(token, errno === 0 ? 0 : -errno);
    if (errno !== 0) this.failFd(f, errno);
    if (f.deregistered) this.maybeCloseOs(f);
    this.notify();
  }

  /** One of `f`'s lanes with no job running (created if there are fewer than LANES_PER_FD); null when lanes are off. */
  private freeLane(f: FdState): Lane | null {
    if (this.lingerUs === 0) return null;
    const lanes = f.lanes;
    for (let i = 0; i < lanes.length; i++) if (!lanes[i]!.busy) return lanes[i]!;
    if (lanes.length >= LANES_PER_FD) return null;
    const lane = new Lane(this.native!, f, this, this.lingerUs);
    lanes.push(lane);
    return lane;
  }

  /** Hands the job to `lane`; false if the pool would not take it (the caller runs it the ordinary way). */
  private submitLane(f: FdState, lane: Lane, kind: number, token: number, iov: Buffer[]): boolean {
    try {
      this.native!.laneSubmit!(lane.handle, f.os, iov, f.bPos, kind !== LANE_WRITE);
    } catch {
      // Only when libuv refuses a new pool job (as an environment shuts down).
      return false;
    }
    lane.busy = true;
    lane.kind = kind;
    lane.token = token;
    this.laneJobs++;
    return true;
  }

  /** @internal Callback of the job on one of `f`'s lanes: what it did, then its results. */
  laneDone(f: FdState, lane: Lane, writeErrno: number, written: number, syncErrno: number): void {
    assert(lane.busy, 'a lane reports only the job it was given');
    lane.busy = false;
    if (lane.kind === LANE_SYNC) {
      this.syncDone(f, lane.token, syncErrno);
    } else if (lane.kind === LANE_BOTH) {
      this.writeDatasyncDone(f, lane.token, writeErrno, written, syncErrno);
    } else {
      this.batchWritten(f, writeErrno, written);
      this.pump(f);
      this.notify();
    }
  }

  /** Takes the contiguous writes at the head of `f`'s queue and starts them as one write. */
  private startBatch(f: FdState): void {
    const iov: Buffer[] = [];
    f.bIov = iov;
    f.bRun = null;
    f.bTok.length = 0; f.bLen.length = 0; f.bSlab.length = 0;
    const start = f.pos[f.head]!;
    let bytes = 0;
    let segSlab: Slab | null = null;
    let segStart = 0;
    let segEnd = 0;
    let i = f.head;
    for (; i < f.eligible && f.kind[i] !== SYNC; i++) {
      const len = f.len[i]!;
      if (i > f.head && (f.pos[i] !== start + bytes || bytes + len > this.maxBatch || iov.length >= MAX_IOV - 8)) break;
      const slab = f.slab[i]!;
      f.bTok.push(f.tok[i]!);
      f.bLen.push(len);
      f.bSlab.push(slab);
      f.slab[i] = null;
      bytes += len;
      if (len === 0) continue;
      if (f.kind[i] === ZEROS) {
        if (segSlab !== null) { iov.push(segSlab.buf.subarray(segStart, segEnd)); segSlab = null; }
        for (let z = 0; z < len; z += ZERO_BLOCK_SIZE) iov.push(zeroSlice(Math.min(ZERO_BLOCK_SIZE, len - z)));
        continue;
      }
      const off = f.sOff[i]!;
      if (segSlab === slab && off === segEnd) {
        segEnd += len;
      } else {
        if (segSlab !== null) iov.push(segSlab.buf.subarray(segStart, segEnd));
        segSlab = slab; segStart = off; segEnd = off + len;
      }
    }
    f.head = i;
    f.bPos = start;
    f.bBytes = bytes;
    f.bDone = 0;
    if (bytes === 0) {
      this.finishBatch(f, 0);
      return;
    }
    f.writing = true;
    const withSync = f.head < f.eligible && f.kind[f.head] === SYNC;
    const lane = this.freeLane(f);
    if (lane !== null) {
      if (segSlab !== null) iov.push(segSlab.buf.subarray(segStart, segEnd));
      segSlab = null;  // in `iov` now, for the ordinary paths below too
      if (this.submitLane(f, lane, withSync ? LANE_BOTH : LANE_WRITE, withSync ? f.tok[f.head]! : 0, iov)) {
        if (withSync) {
          f.head++;
          f.syncing++;
          this.writeDatasyncJobs++;
        }
        return;
      }
    }
    if (this.native !== null && withSync) {
      if (segSlab !== null) iov.push(segSlab.buf.subarray(segStart, segEnd));
      this.startWriteDatasync(f, iov);
      return;
    }
    if (iov.length === 0) {
      // A single run inside one slab: pwrite straight from it, no view to build.
      f.bRun = segSlab;
      f.bRunOff = segStart;
      this.fs.write(f.os, segSlab!.buf, segStart, segEnd - segStart, start, f.onWrite);
      return;
    }
    if (segSlab !== null) iov.push(segSlab.buf.subarray(segStart, segEnd));
    this.issue(f, iov);
  }

  private issue(f: FdState, iov: Buffer[]): void {
    const at = f.bPos + f.bDone;
    // More buffers than one writev takes: the rest follows as if the write were short.
    if (iov.length > MAX_IOV) iov = iov.slice(0, MAX_IOV);
    if (iov.length === 1) this.fs.write(f.os, iov[0]!, 0, iov[0]!.length, at, f.onWrite);
    else this.fs.writev(f.os, iov, at, f.onWrite);
  }

  /** The batch and the datasync queued right behind it, as one native pool job. */
  private startWriteDatasync(f: FdState, iov: Buffer[]): void {
    const token = f.tok[f.head]!;
    f.head++;
    f.syncing++;
    this.writeDatasyncJobs++;
    this.native!.writevDatasync(f.os, iov, f.bPos, (werr, written, serr) => this.writeDatasyncDone(f, token, werr, written, serr));
  }

  /** @internal Callback of a write + datasync job: the batch's results, then the datasync's (cancelled if the write failed). */
  writeDatasyncDone(f: FdState, token: number, writeErrno: number, written: number, syncErrno: number): void {
    this.batchWritten(f, writeErrno, written);
    f.syncing--;
    if (syncErrno < 0) {
      this.complete(token, -ECANCELED);
    } else {
      this.complete(token, syncErrno === 0 ? 0 : -syncErrno);
      if (syncErrno !== 0) this.failFd(f, syncErrno);
    }
    this.pump(f);
    if (f.deregistered) this.maybeCloseOs(f);
    this.notify();
  }

  /** The batch in flight, written by a native job: `written` bytes, then `writeErrno` if it stopped short. */
  private batchWritten(f: FdState, writeErrno: number, written: number): void {
    assert(f.writing && written <= f.bBytes, 'a native job completes the batch in flight');
    f.writing = false;
    f.bDone = written;
    // The job continues short writes itself: one that stopped short without an errno made no progress.
    this.finishBatch(f, writeErrno === 0 && written < f.bBytes ? EIO : writeErrno);
  }

  /** @internal Callback of the write in flight on `f`. */
  writeDone(f: FdState, err: NodeJS.ErrnoException | null, n: number): void {
    assert(f.writing, 'a write completion belongs to the write in flight');
    if (err === null && n > 0) {
      f.bDone += n;
      if (f.bDone < f.bBytes) {
        // Short write: the kernel moved part of it; the rest goes next, and a real
        // failure (ENOSPC, EIO) surfaces on that attempt.
        this.issue(f, remainingIov(f, f.bDone));
        return;
      }
      f.writing = false;
      this.finishBatch(f, 0);
    } else {
      f.writing = false;
      this.finishBatch(f, err === null ? EIO : -negErrno(err));
    }
    this.pump(f);
    this.notify();
  }

  /** Completes the batch: ops wholly written succeed; with `errno`, the rest fail and the fd is failed. */
  private finishBatch(f: FdState, errno: number): void {
    let covered = errno === 0 ? f.bBytes : f.bDone;
    for (let k = 0; k < f.bTok.length; k++) {
      const len = f.bLen[k]!;
      if (covered >= len) {
        covered -= len;
        this.complete(f.bTok[k]!, len);
      } else {
        covered = 0;
        this.complete(f.bTok[k]!, -errno);
      }
      this.unref(f.bSlab[k]!);
    }
    f.bTok.length = 0; f.bLen.length = 0; f.bSlab.length = 0;
    f.bIov = [];
    f.bRun = null;
    if (errno !== 0) this.failFd(f, errno);
  }

  /** Marks `f` failed and cancels everything queued on it. */
  private failFd(f: FdState, errno: number): void {
    if (f.failed === 0) f.failed = errno;
    for (let i = f.head; i < f.kind.length; i++) {
      if (i < f.eligible) this.running--;
      this.unref(f.slab[i]!);
      f.slab[i] = null;
      this.stage(f.tok[i]!, -ECANCELED);
    }
    f.head = f.eligible = f.kind.length;
    this.compact(f);
  }

  private complete(token: number, result: number): void {
    this.running--;
    this.stage(token, result);
  }

  private stage(token: number, result: number): void {
    this.cTok.push(token);
    this.cRes.push(result);
    // Completions staged inside submit or flush (cancellations, empty writes) wake a waiter too.
    if (this.wake !== null) this.notify();
  }

  private notify(): void {
    const w = this.wake;
    if (w !== null && (this.cTok.length > 0 || this.running === 0 || this.closed)) {
      this.wake = null;
      this.waitP = null;
      w();
    }
    if (this.running === 0 && this.idleWaiters.length > 0) {
      const ws = this.idleWaiters;
      this.idleWaiters = [];
      for (const r of ws) r();
    }
  }

  private compact(f: FdState): void {
    if (f.head === f.kind.length) {
      if (f.head === 0) return;
      f.kind.length = 0; f.tok.length = 0; f.pos.length = 0; f.len.length = 0; f.slab.length = 0; f.sOff.length = 0;
      f.head = 0; f.eligible = 0;
    } else if (f.head > 4096 && f.head * 2 > f.kind.length) {
      const h = f.head;
      f.kind.splice(0, h); f.tok.splice(0, h); f.pos.splice(0, h); f.len.splice(0, h); f.slab.splice(0, h); f.sOff.splice(0, h);
      f.head = 0;
      f.eligible -= h;
    }
  }

  // ---- teardown ------------------------------------------------------------------

  private retire(f: FdState): void {
    f.deregistered = true;
    if (f.dirty) {
      const i = this.dirtyFds.indexOf(f);
      if (i >= 0) this.dirtyFds.splice(i, 1);
    }
    this.flushFd(f);
  }

  private maybeCloseOs(f: FdState): void {
    if (f.closing || f.writing || f.syncing > 0 || f.head < f.kind.length) return;
    f.closing = true;
    for (const l of f.lanes) {
      const st = this.native!.laneStats!(l.handle);
      this.laneThreadsClosed += st.threads;
      this.laneWakesClosed += st.wakes;
      this.native!.laneClose!(l.handle);
    }
    f.lanes.length = 0;
    // Nothing is left to report a close error to; the writes before it were reported.
    this.fs.close(f.os, () => {});
  }

  private fdState(fd: IoFd): FdState {
    const f = typeof fd === 'number' ? this.fds[fd] : undefined;
    if (f === undefined) throw badFd(fd);
    return f;
  }

  private checkOpen(): void {
    if (this.closed) throw closedError('ThreadPoolStorageIo');
  }
}

/** The batch's buffers from byte `skip` on (short-write path only). */
function remainingIov(f: FdState, skip: number): Buffer[] {
  if (f.bRun !== null) return [f.bRun.buf.subarray(f.bRunOff + skip, f.bRunOff + f.bBytes)];
  const out: Buffer[] = [];
  for (const b of f.bIov) {
    if (skip >= b.length) { skip -= b.length; continue; }
    out.push(skip > 0 ? b.subarray(skip) : b);
    skip = 0;
  }
  return out;
}
