import { fstatSync, closeSync, existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PerCoreWalError, StorageIoError } from '../errors/errors.js';
import { requireBytes, toPosition } from '../util/u64.js';
import type { IoCompletion, IoFd, StorageIo } from './types.js';

// ---- the native binding (native/uring.c) ------------------------------------------------

interface NativeProbe { supported: boolean; errno: number; reason: string | null; features?: number }
interface NativeRing {
  handle: object;
  buffers: ArrayBuffer;
  sqEntries: number;
  cqEntries: number;
  sqpoll: boolean;
  sqpollErrno: number;
  features: number;
}
interface NativeBinding {
  probe(): NativeProbe;
  create(sqEntries: number, bufCount: number, bufSize: number, fileSlots: number, trySqpoll: boolean, sqIdleMs: number): NativeRing;
  submit(h: object, ops: Float64Array, count: number): number;
  reap(h: object, out: Float64Array): number;
  cqReady(h: object): number;
  wait(h: object, minComplete: number): void;
  updateFile(h: object, slot: number, fd: number): void;
  watch(h: object, onWake: () => void): void;
  setWaiting(h: object, on: boolean): void;
  close(h: object): void;
}

/** Whether this process can use {@link UringStorageIo}, and why not when it cannot. */
export interface UringSupport {
  supported: boolean;
  /** Why not (platform, addon missing or failed to load, kernel or seccomp refusal); null when supported. */
  reason: string | null;
}

const ADDON_NAME = 'corewal_uring.node';
let support: UringSupport | null = null;
let binding: NativeBinding | null = null;

/**
 * Loads the addon on first use only: importing corewal must work where it was never
 * built (other platforms, no compiler). `COREWAL_URING_ADDON` names another build of it,
 * or `off` to disable io_uring.
 */
function loadSupport(): UringSupport {
  if (support !== null) return support;
  const override = process.env['COREWAL_URING_ADDON'];
  if (process.platform !== 'linux') {
    support = { supported: false, reason: `io_uring is Linux-only (this platform is ${process.platform})` };
  } else if (override === 'off' || override === '0') {
    support = { supported: false, reason: 'disabled by COREWAL_URING_ADDON=off' };
  } else {
    const req = createRequire(import.meta.url);
    // dist/src/storage-io/uring.js → the package root, where node-gyp puts build/.
    const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
    const candidates = override ? [override] : [join(root, 'build', 'Release', ADDON_NAME), join(root, 'build', 'Debug', ADDON_NAME)];
    const found = candidates.find((p) => existsSync(p));
    if (found === undefined) {
      support = {
        supported: false,
        reason: `the io_uring addon is not built (no ${candidates[0]}); it builds at npm install where a C compiler and Linux headers exist — run \`node scripts/build-native.mjs\` to see why it did not`,
      };
    } else {
      try {
        const b = req(found) as NativeBinding;
        const p = b.probe();
        if (p.supported) {
          binding = b;
          support = { supported: true, reason: null };
        } else {
          support = { supported: false, reason: p.reason ?? 'io_uring probe failed' };
        }
      } catch (e) {
        support = { supported: false, reason: `the io_uring addon ${found} failed to load: ${(e as Error).message}` };
      }
    }
  }
  return support;
}

// ---- options and state ------------------------------------------------------------------

/** Options of {@link UringStorageIo.create}. */
export interface UringStorageIoOptions {
  /**
   * Submission queue entries: the most SQEs queued plus in flight at once; beyond it
   * submissions fail with `QUEUE_FULL`. Contiguous appends share an SQE (see `coalesce`),
   * so this bounds operations only for scattered writes. Default 256.
   */
  queueDepth?: number;
  /** Registered buffers in the pool. Default 32. */
  bufferCount?: number;
  /** Bytes per registered buffer; larger writes span several. Default 64 KiB. */
  bufferSize?: number;
  /** Registered file slots: the most fds registered at once. Default 64. */
  maxFiles?: number;
  /**
   * Try `IORING_SETUP_SQPOLL` (a kernel thread picks submissions up, so `flush()` usually
   * makes no syscall). Refused (EPERM: older kernel, no privilege, policy) → plain
   * `io_uring_enter`. Default true.
   */
  sqpoll?: boolean;
  /** Milliseconds the SQPOLL thread spins without work before sleeping. Default 50. */
  sqThreadIdleMs?: number;
  /**
   * Merge a write into the previous not-yet-flushed write on the same fd when it starts
   * where that one ends and fits its buffer: one SQE, one syscall's worth of kernel work,
   * still one completion per token. Default true.
   */
  coalesce?: boolean;
}

/** What a ring turned out to be, and counters for tests and benchmarks. */
export interface UringStorageIoInfo {
  /** Whether the ring runs with a kernel SQ polling thread. */
  sqpoll: boolean;
  /** errno of the refused SQPOLL setup (e.g. 1 = EPERM), 0 when SQPOLL was not refused. */
  sqpollRefusedErrno: number;
  sqEntries: number;
  cqEntries: number;
  queueDepth: number;
  bufferCount: number;
  bufferSize: number;
  freeBuffers: number;
  registeredFds: number;
  /** SQEs handed to the kernel since creation (fewer than operations when writes coalesce). */
  sqesSubmitted: number;
  /** Datasyncs submitted with IOSQE_IO_DRAIN because earlier writes on their fd were in flight. */
  drainedSyncs: number;
  /**
   * Datasync completions the kernel posted before a completion of an earlier write on
   * the same fd, which this class then held back. The kernel's ordering makes this 0;
   * tests assert it.
   */
  syncsHeldBack: number;
}

const KIND_WRITE = 0;
const KIND_SYNC = 1;
const FLAG_LINK = 1;
const FLAG_DRAIN = 2;
const STRIDE = 8;
const MAX_BUFFER_SIZE = 1 << 30;
const MAX_BUFFERS = 16384;
const MIN_BUFFERS_ON_ENOMEM = 4;

/** One SQE: a (possibly coalesced) write from one registered buffer, or a datasync. */
interface Op {
  kind: number;
  fd: FdState;
  /** Per-fd submission order. */
  seq: number;
  buf: number;
  used: number;
  offset: number;
  tokens: number[];
  lens: number[];
  done: boolean;
}

interface FdState {
  id: number;
  slot: number;
  osFd: number;
  cursor: number;
  nextSeq: number;
  /** Operations not yet flushed, in submission order. */
  queued: Op[];
  /** SQEs in the kernel (flushed, completion not yet reaped). */
  inflight: number;
  inflightWrites: number;
  /** Writes not yet completed, in seq order (head index `wHead`). */
  writes: Op[];
  wHead: number;
  /** Datasync completions waiting for an earlier write's completion. */
  held: { op: Op; result: number }[];
}

interface SplitToken { left: number; bytes: number; err: number }

function ioErr(op: string, e: unknown): StorageIoError {
  const errno = typeof (e as { errno?: unknown }).errno === 'number' ? Math.abs((e as { errno: number }).errno) : undefined;
  return new StorageIoError('IO', `${op} failed: ${(e as Error).message}`, { errno, cause: e });
}

function intOption(v: number | undefined, dflt: number, min: number, max: number, name: string): number {
  const n = v ?? dflt;
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new PerCoreWalError('INVALID_ARGUMENT', `${name} must be an integer in [${min}, ${max}], got ${String(v)}`);
  }
  return n;
}

/**
 * A {@link StorageIo} backend on Linux io_uring: one ring per instance — create one per
 * core (worker thread) — with registered files, a registered buffer pool and a kernel
 * SQ polling thread where the kernel allows one.
 *
 * - `submitWrite`/`submitAppend` copy the bytes into a free registered buffer
 *   (`IORING_OP_WRITE_FIXED`; `BUFFER_EXHAUSTED` when none is free, buffers return to the
 *   pool on completion). Appends are writes at an explicit offset: each fd's append
 *   cursor starts at its size when registered. Contiguous writes not yet flushed share a
 *   buffer and an SQE, each keeping its own token and completion.
 * - `submitDatasync` is `IORING_OP_FSYNC` with `IORING_FSYNC_DATASYNC`, ordered in the
 *   kernel after every write submitted before it on that fd (SPEC invariant 2): it ends a
 *   chain of `IOSQE_IO_LINK`ed writes flushed with it, and drains (`IOSQE_IO_DRAIN`) when
 *   writes from earlier flushes are still in flight. A write failing inside a chain
 *   completes the datasync with `-ECANCELED`, never with success.
 * - `flush()` publishes the SQEs (one `io_uring_enter`, or none while the SQPOLL thread
 *   is awake); `pollCompletions` reads the CQ ring in user space; `waitForCompletions`
 *   sleeps on an eventfd the ring signals, watched by libuv, so nothing spins. The watch
 *   is active only while a wait is pending, so an idle instance never keeps the process
 *   alive.
 * - Results are bytes or `-errno`, as the kernel reports them.
 *
 * Support: {@link UringStorageIo.isSupported} says whether this process can use it
 * (Linux, the addon built at install, and a kernel and seccomp policy that allow
 * `io_uring_setup`); everywhere else {@link UringStorageIo.create} throws `UNSUPPORTED`.
 * Call `close()`: it waits for operations in flight, closes every registered fd and
 * releases the ring.
 *
 * @example
 * ```ts
 * import { openSync } from 'node:fs';
 * import { CoreWalWriter, UringStorageIo } from 'corewal';
 *
 * if (UringStorageIo.isSupported().supported) {
 *   const sio = UringStorageIo.create();
 *   const w = CoreWalWriter.create(0, '/data/wal/wal-0.log');
 *   const fd = sio.registerFd(openSync(w.path(), 'r+'));
 *   w.appendPutViaStorageIo(Buffer.from('k'), Buffer.from('v'), sio, fd);
 *   w.syncViaStorageIo(sio, fd);                       // flushes too
 *   const done: IoCompletion[] = [];
 *   while (w.isSyncPending()) {
 *     await sio.waitForCompletions();
 *     done.length = 0;
 *     sio.pollCompletions(done);
 *     w.checkCompletions(done);                        // throws IO (and poisons) on -errno
 *   }
 *   sio.close();
 * }
 * ```
 */
export class UringStorageIo implements StorageIo {
  private readonly native: NativeBinding;
  private readonly h: object;
  private readonly pool: Uint8Array;
  private readonly bufSize: number;
  private readonly bufCount: number;
  private readonly depth: number;
  private readonly coalesce: boolean;
  private readonly ring: NativeRing;
  private readonly freeBufs: number[] = [];
  private readonly freeSlots: number[] = [];
  private readonly fds = new Map<number, FdState>();
  private readonly inflight = new Map<number, Op>();
  private readonly split = new Map<number, SplitToken>();
  /** Fds with queued operations, in the order they first got one. */
  private readonly dirty = new Set<FdState>();
  private readonly desc: Float64Array;
  private readonly cqBuf: Float64Array;
  /** Completions already taken off the CQ (by close/deregister waits, or zero-length writes). */
  private staged: IoCompletion[] = [];
  private waiters: (() => void)[] = [];
  private waiting = false;
  private closed = false;
  private nextToken = 1;
  private nextUserData = 1;
  private nextFdId = 1;
  /** SQEs queued or in the kernel: bounded by `depth`, which also keeps the CQ from overflowing. */
  private sqes = 0;
  private queuedOps = 0;
  private pending = 0;
  private sqesSubmitted = 0;
  private drainedSyncs = 0;
  private syncsHeldBack = 0;

  /**
   * Whether io_uring can be used here, with the reason when not: not Linux, the addon
   * not built or not loadable, or a kernel/seccomp policy refusing `io_uring_setup`
   * (ENOSYS/EPERM) or lacking a feature corewal needs. Probed once per process.
   *
   * @example
   * ```ts
   * const { supported, reason } = UringStorageIo.isSupported();
   * const sio = supported ? UringStorageIo.create() : new ThreadPoolStorageIo();
   * if (!supported) console.warn(`io_uring unavailable: ${reason}`);
   * ```
   */
  static isSupported(): UringSupport {
    const s = loadSupport();
    return { supported: s.supported, reason: s.reason };
  }

  /**
   * Sets up a ring. Throws `UNSUPPORTED` (with the reason) where {@link isSupported} says
   * false, `IO` when the kernel refuses a resource, `INVALID_ARGUMENT` for bad options.
   * When the registered pool exceeds RLIMIT_MEMLOCK (ENOMEM), it retries with half as
   * many buffers, down to 4; {@link info} reports what it got.
   *
   * @example
   * ```ts
   * const sio = UringStorageIo.create({ bufferCount: 64, bufferSize: 128 * 1024 });
   * console.log(sio.info().sqpoll);
   * ```
   */
  static create(options: UringStorageIoOptions = {}): UringStorageIo {
    const s = loadSupport();
    if (!s.supported || binding === null) throw new StorageIoError('UNSUPPORTED', `UringStorageIo is not supported here: ${s.reason}`);
    return new UringStorageIo(binding, options);
  }

  private constructor(native: NativeBinding, options: UringStorageIoOptions) {
    const depth = intOption(options.queueDepth, 256, 1, 32768, 'queueDepth');
    let count = intOption(options.bufferCount, 32, 1, MAX_BUFFERS, 'bufferCount');
    const size = intOption(options.bufferSize, 64 * 1024, 1, MAX_BUFFER_SIZE, 'bufferSize');
    const slots = intOption(options.maxFiles, 64, 1, 32768, 'maxFiles');
    const idle = intOption(options.sqThreadIdleMs, 50, 1, 60_000, 'sqThreadIdleMs');
    this.native = native;
    let ring: NativeRing | null = null;
    for (;;) {
      try {
        ring = native.create(depth, count, size, slots, options.sqpoll ?? true, idle);
        break;
      } catch (e) {
        const errno = (e as { errno?: number }).errno;
        if (errno === 12 && count > MIN_BUFFERS_ON_ENOMEM && /REGISTER_BUFFERS/.test((e as Error).message)) {
          count = Math.max(MIN_BUFFERS_ON_ENOMEM, count >> 1);
          continue;
        }
        throw ioErr('io_uring ring setup', e);
      }
    }
    this.ring = ring;
    this.h = ring.handle;
    this.pool = new Uint8Array(ring.buffers);
    this.bufSize = size;
    this.bufCount = count;
    this.depth = Math.min(depth, ring.sqEntries);
    this.coalesce = options.coalesce ?? true;
    for (let i = count - 1; i >= 0; i--) this.freeBufs.push(i);
    for (let i = slots - 1; i >= 0; i--) this.freeSlots.push(i);
    this.desc = new Float64Array(this.depth * STRIDE);
    this.cqBuf = new Float64Array(2 * Math.max(64, Math.min(ring.cqEntries, 4096)));
    try {
      native.watch(this.h, () => this.onWake());
    } catch (e) {
      native.close(this.h);
      throw ioErr('watching the completion eventfd', e);
    }
  }

  /** What the ring turned out to be (SQPOLL or not, sizes) and counters. */
  info(): UringStorageIoInfo {
    return {
      sqpoll: this.ring.sqpoll,
      sqpollRefusedErrno: this.ring.sqpollErrno,
      sqEntries: this.ring.sqEntries,
      cqEntries: this.ring.cqEntries,
      queueDepth: this.depth,
      bufferCount: this.bufCount,
      bufferSize: this.bufSize,
      freeBuffers: this.freeBufs.length,
      registeredFds: this.fds.size,
      sqesSubmitted: this.sqesSubmitted,
      drainedSyncs: this.drainedSyncs,
      syncsHeldBack: this.syncsHeldBack,
    };
  }

  private checkOpen(): void {
    if (this.closed) throw new StorageIoError('CLOSED', 'UringStorageIo is closed');
  }

  private state(fd: IoFd): FdState {
    const st = typeof fd === 'number' ? this.fds.get(fd) : undefined;
    if (st === undefined) throw new StorageIoError('BAD_FD', `IoFd ${String(fd)} is not registered with this UringStorageIo`);
    return st;
  }

  /**
   * Installs `fd` in a registered-file slot (`IORING_REGISTER_FILES_UPDATE`) and takes
   * ownership of it. Its append cursor starts at its current size. On failure the caller
   * still owns `fd`. `BAD_FD` for something that is not an open fd, `QUEUE_FULL` when
   * every slot (`maxFiles`) is taken.
   */
  registerFd(fd: number): IoFd {
    this.checkOpen();
    if (!Number.isSafeInteger(fd) || fd < 0 || fd > 0x7fffffff) throw new StorageIoError('BAD_FD', `not a file descriptor: ${String(fd)}`);
    let size: number;
    try {
      size = fstatSync(fd).size;
    } catch (e) {
      throw new StorageIoError('BAD_FD', `fd ${fd} is not open: ${(e as Error).message}`, { cause: e });
    }
    const slot = this.freeSlots.pop();
    if (slot === undefined) throw new StorageIoError('QUEUE_FULL', `all ${this.fds.size} registered-file slots are in use (maxFiles)`);
    try {
      this.native.updateFile(this.h, slot, fd);
    } catch (e) {
      this.freeSlots.push(slot);
      const errno = (e as { errno?: number }).errno;
      if (errno === 9) throw new StorageIoError('BAD_FD', `fd ${fd} cannot be registered: ${(e as Error).message}`, { cause: e });
      throw ioErr(`registering fd ${fd}`, e);
    }
    const id = this.nextFdId++;
    this.fds.set(id, {
      id, slot, osFd: fd, cursor: size, nextSeq: 0, queued: [], inflight: 0, inflightWrites: 0, writes: [], wHead: 0, held: [],
    });
    return id as IoFd;
  }

  /**
   * Flushes what is queued on `fd`, waits (blocking) until its operations in flight have
   * completed — their completions stay available to `pollCompletions` — then clears its
   * slot and closes it.
   */
  deregisterFd(fd: IoFd): void {
    this.checkOpen();
    const st = this.state(fd);
    if (st.queued.length > 0) this.flush();
    this.drainUntil(() => st.inflight === 0 && st.held.length === 0);
    this.fds.delete(st.id);
    let failure: unknown = null;
    try {
      this.native.updateFile(this.h, st.slot, -1);
      this.freeSlots.push(st.slot);
    } catch (e) {
      failure = e; // the slot stays taken: the kernel still holds the file
    }
    try {
      closeSync(st.osFd);
    } catch (e) {
      failure ??= e;
    }
    if (failure !== null) throw ioErr(`deregistering fd ${st.osFd}`, failure);
  }

  /** Blocks in io_uring_enter until `done()`, moving completions to the staging list. */
  private drainUntil(done: () => boolean): void {
    while (!done()) {
      if (this.inflight.size === 0) break;
      try {
        this.native.wait(this.h, 1);
      } catch (e) {
        throw ioErr('waiting for completions', e);
      }
      this.reapInto(this.staged);
    }
  }

  submitWrite(fd: IoFd, data: Uint8Array, offset: number): number {
    this.checkOpen();
    const st = this.state(fd);
    if (!(data instanceof Uint8Array)) requireBytes(data, 'data');
    const off = toPosition(offset, 'offset');
    return this.enqueueWrite(st, data, off);
  }

  submitAppend(fd: IoFd, data: Uint8Array): number {
    this.checkOpen();
    const st = this.state(fd);
    if (!(data instanceof Uint8Array)) requireBytes(data, 'data');
    const token = this.enqueueWrite(st, data, st.cursor);
    st.cursor += data.length;
    return token;
  }

  private enqueueWrite(st: FdState, data: Uint8Array, offset: number): number {
    const len = data.length;
    const bs = this.bufSize;
    if (len === 0) {
      const token = this.nextToken++;
      this.staged.push({ token, result: 0 });
      this.pending++;
      return token;
    }
    const q = st.queued;
    const last = q.length > 0 ? q[q.length - 1]! : null;
    if (this.coalesce && last !== null && last.kind === KIND_WRITE && last.offset + last.used === offset && bs - last.used >= len) {
      const token = this.nextToken++;
      this.pool.set(data, last.buf * bs + last.used);
      last.used += len;
      last.tokens.push(token);
      last.lens.push(len);
      this.pending++;
      return token;
    }
    const parts = Math.ceil(len / bs);
    if (this.sqes + parts > this.depth) {
      throw new StorageIoError('QUEUE_FULL', `io_uring queue full: ${this.sqes} of ${this.depth} operations queued or in flight; flush and poll completions`);
    }
    if (this.freeBufs.length < parts) {
      throw new StorageIoError('BUFFER_EXHAUSTED',
        `no free registered buffer for a ${len}-byte write (${this.freeBufs.length} of ${this.bufCount} free, ${bs} bytes each); poll completions to return buffers`);
    }
    const token = this.nextToken++;
    if (parts > 1) this.split.set(token, { left: parts, bytes: 0, err: 0 });
    for (let p = 0; p < parts; p++) {
      const from = p * bs;
      const n = Math.min(bs, len - from);
      const buf = this.freeBufs.pop()!;
      this.pool.set(from === 0 && n === len ? data : data.subarray(from, from + n), buf * bs);
      const op: Op = { kind: KIND_WRITE, fd: st, seq: st.nextSeq++, buf, used: n, offset: offset + from, tokens: [token], lens: [n], done: false };
      this.queue(st, op);
      st.writes.push(op);
    }
    this.pending++;
    return token;
  }

  private queue(st: FdState, op: Op): void {
    st.queued.push(op);
    this.sqes++;
    this.queuedOps++;
    this.dirty.add(st);
  }

  submitDatasync(fd: IoFd): number {
    this.checkOpen();
    const st = this.state(fd);
    if (this.sqes + 1 > this.depth) {
      throw new StorageIoError('QUEUE_FULL', `io_uring queue full: ${this.sqes} of ${this.depth} operations queued or in flight; flush and poll completions`);
    }
    const token = this.nextToken++;
    this.queue(st, { kind: KIND_SYNC, fd: st, seq: st.nextSeq++, buf: -1, used: 0, offset: 0, tokens: [token], lens: [0], done: false });
    this.pending++;
    return token;
  }

  /**
   * Publishes every queued operation to the kernel; returns how many operations (tokens)
   * it started. Per fd, the writes before a datasync are linked to it; when writes of
   * that fd from an earlier flush are still in flight, the chain drains.
   */
  flush(): number {
    this.checkOpen();
    if (this.queuedOps === 0) return 0;
    // Completions already posted lower the in-flight counts, so fewer chains need to drain.
    if (this.cqHasAny()) this.reapInto(this.staged);
    const d = this.desc;
    let n = 0;
    let started = 0;
    for (const st of this.dirty) {
      const q = st.queued;
      let lastSync = -1;
      for (let i = q.length - 1; i >= 0; i--) if (q[i]!.kind === KIND_SYNC) { lastSync = i; break; }
      const drain = lastSync >= 0 && st.inflightWrites > 0;
      if (drain) this.drainedSyncs++;
      for (let i = 0; i < q.length; i++) {
        const op = q[i]!;
        const ud = this.nextUserData++;
        this.inflight.set(ud, op);
        let flags = 0;
        if (i < lastSync) flags |= FLAG_LINK;
        if (i === 0 && drain) flags |= FLAG_DRAIN;
        const at = n * STRIDE;
        d[at] = op.kind;
        d[at + 1] = st.slot;
        d[at + 2] = op.buf < 0 ? 0 : op.buf;
        d[at + 3] = 0;
        d[at + 4] = op.used;
        d[at + 5] = op.offset;
        d[at + 6] = ud;
        d[at + 7] = flags;
        n++;
        started += op.tokens.length;
        st.inflight++;
        if (op.kind === KIND_WRITE) st.inflightWrites++;
      }
      st.queued = [];
    }
    this.dirty.clear();
    this.queuedOps = 0;
    let published: number;
    try {
      published = this.native.submit(this.h, d, n);
    } catch (e) {
      throw ioErr('io_uring submission', e);
    }
    if (published !== n) {
      // Cannot happen while sqes <= depth <= SQ entries; refuse to continue with a torn chain.
      throw new StorageIoError('IO', `io_uring accepted ${published} of ${n} SQEs`);
    }
    this.sqesSubmitted += n;
    return started;
  }

  private cqHasAny(): boolean {
    return this.native.cqReady(this.h) > 0;
  }

  pollCompletions(out: IoCompletion[]): void {
    this.checkOpen();
    if (this.staged.length > 0) {
      const s = this.staged;
      this.staged = [];
      for (let i = 0; i < s.length; i++) out.push(s[i]!);
      this.pending -= s.length;
    }
    const before = out.length;
    this.reapInto(out);
    this.pending -= out.length - before;
  }

  /** Moves every CQE into `out`, mapping SQEs back to tokens. Does not touch `pending`. */
  private reapInto(out: IoCompletion[]): void {
    const buf = this.cqBuf;
    const max = buf.length >> 1;
    for (;;) {
      const n = this.native.reap(this.h, buf);
      for (let i = 0; i < n; i++) this.complete(buf[2 * i]!, buf[2 * i + 1]!, out);
      if (n < max) return;
    }
  }

  private complete(ud: number, res: number, out: IoCompletion[]): void {
    const op = this.inflight.get(ud);
    if (op === undefined) return;
    this.inflight.delete(ud);
    this.sqes--;
    const st = op.fd;
    st.inflight--;
    if (op.kind === KIND_SYNC) {
      if (this.firstOpenWriteSeq(st) < op.seq) {
        // Posted ahead of an earlier write's completion: hand it out after that one.
        this.syncsHeldBack++;
        st.held.push({ op, result: res });
      } else {
        this.emit(op.tokens[0]!, res, out);
      }
      return;
    }
    st.inflightWrites--;
    this.freeBufs.push(op.buf);
    op.done = true;
    let rest = res;
    for (let i = 0; i < op.tokens.length; i++) {
      const len = op.lens[i]!;
      const r = res < 0 ? res : Math.min(len, Math.max(0, rest));
      rest -= len;
      this.emit(op.tokens[i]!, r, out);
    }
    const w = st.writes;
    while (st.wHead < w.length && w[st.wHead]!.done) st.wHead++;
    if (st.wHead === w.length) { w.length = 0; st.wHead = 0; } else if (st.wHead > 256) { w.splice(0, st.wHead); st.wHead = 0; }
    if (st.held.length > 0) {
      const first = this.firstOpenWriteSeq(st);
      while (st.held.length > 0 && st.held[0]!.op.seq < first) {
        const h = st.held.shift()!;
        this.emit(h.op.tokens[0]!, h.result, out);
      }
    }
  }

  private firstOpenWriteSeq(st: FdState): number {
    return st.wHead < st.writes.length ? st.writes[st.wHead]!.seq : Number.POSITIVE_INFINITY;
  }

  /** One SQE's share of a token's result; a token split over several SQEs completes with the last. */
  private emit(token: number, result: number, out: IoCompletion[]): void {
    const s = this.split.get(token);
    if (s === undefined) {
      out.push({ token, result });
      return;
    }
    if (result < 0) { if (s.err === 0) s.err = result; } else s.bytes += result;
    if (--s.left === 0) {
      this.split.delete(token);
      out.push({ token, result: s.err !== 0 ? s.err : s.bytes });
    }
  }

  pendingCount(): number {
    this.checkOpen();
    return this.pending;
  }

  /**
   * Resolves once `pollCompletions` has something to return, at once if it already has or
   * if nothing is pending (nothing could ever arrive). Starts queued operations first, so
   * a forgotten `flush()` cannot hang it. Fails with `CLOSED` after `close()`; a wait
   * pending when `close()` runs resolves.
   */
  waitForCompletions(): Promise<void> {
    if (this.closed) return Promise.reject(new StorageIoError('CLOSED', 'UringStorageIo is closed'));
    if (this.staged.length > 0 || this.pending === 0 || this.cqHasAny()) return Promise.resolve();
    try {
      if (this.queuedOps > 0) this.flush();
    } catch (e) {
      return Promise.reject(e);
    }
    if (this.cqHasAny()) return Promise.resolve();
    return new Promise<void>((resolve) => {
      this.waiters.push(resolve);
      if (!this.waiting) {
        this.native.setWaiting(this.h, true);
        this.waiting = true;
      }
    });
  }

  /** The eventfd became readable; it may be stale (CQEs already reaped), so look. */
  private onWake(): void {
    if (this.closed || (this.staged.length === 0 && !this.cqHasAny())) return;
    this.settleWaiters();
  }

  private settleWaiters(): void {
    if (this.waiting) {
      this.waiting = false;
      if (!this.closed) this.native.setWaiting(this.h, false);
    }
    const ws = this.waiters;
    this.waiters = [];
    for (const w of ws) w();
  }

  /**
   * Starts what is queued, waits (blocking) for every operation in flight, closes every
   * registered fd and releases the ring. Completions not yet polled are dropped.
   * Idempotent; every other method then fails with `CLOSED`.
   */
  close(): void {
    if (this.closed) return;
    let failure: unknown = null;
    try {
      if (this.queuedOps > 0) this.flush();
      this.drainUntil(() => this.inflight.size === 0);
    } catch (e) {
      failure = e;
    }
    for (const st of this.fds.values()) {
      try { closeSync(st.osFd); } catch (e) { failure ??= e; }
    }
    this.fds.clear();
    this.closed = true;
    this.settleWaiters();
    this.native.close(this.h);
    this.staged = [];
    this.pending = 0;
    if (failure !== null) throw failure instanceof StorageIoError ? failure : ioErr('close', failure);
  }
}
