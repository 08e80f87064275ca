import { closeSync, existsSync, fstatSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism, constants } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PerCoreWalError, StorageIoError } from '../errors/errors.js';
import { requireBytes } from '../util/u64.js';
import { registeredFdSize } from './common.js';
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
  coopTaskrun: boolean;
  features: number;
}
interface NativeBinding {
  probe(): NativeProbe;
  create(sqEntries: number, bufCount: number, bufSize: number, fileSlots: number, trySqpoll: boolean, sqIdleMs: number, zeroSize: number): NativeRing;
  submit(h: object, ops: Float64Array, count: number, large: Buffer[]): number;
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
  /**
   * Operations submitted and not yet handed out by `pollCompletions`; past it `submit*`
   * throws `QUEUE_FULL`. Default 65536.
   */
  maxQueued?: number;
  /**
   * Registered buffers in the pool. Default 8. 0 registers none: every write then goes
   * from a private copy (what creation falls back to when RLIMIT_MEMLOCK leaves no room).
   */
  bufferCount?: number;
  /**
   * Bytes per registered buffer: contiguous appends share one, so this is also the most
   * one SQE writes. A longer write is copied to a buffer of its own and written with
   * `IORING_OP_WRITE` instead. Default 256 KiB.
   */
  bufferSize?: number;
  /**
   * Bytes of private copies in flight at once: writes longer than a buffer, and writes
   * queued while every registered buffer is taken (those share `bufferSize` copies the way
   * they share registered buffers). Past it `BUFFER_EXHAUSTED`; a single write longer than
   * this still goes when no other copy is in flight. 0 keeps small writes to the registered
   * pool alone. Default 64 MiB.
   */
  maxCopyBytes?: number;
  /** Registered file slots: the most fds registered at once. Default 64. */
  maxFiles?: number;
  /**
   * Try `IORING_SETUP_SQPOLL`: a kernel thread picks submissions up, so `flush()` makes no
   * syscall while it is awake. Refused (EPERM: kernel before 5.11 without privilege, or
   * a policy) → plain `io_uring_enter`. The thread spins on a CPU of its own while busy,
   * which pays only when one is spare: `'auto'` (the default) tries it when the machine
   * has at least 4 CPUs. On 2 shared CPUs it measured 2–3x slower than `false`.
   */
  sqpoll?: boolean | 'auto';
  /** Milliseconds the SQPOLL thread spins without work before sleeping. Default 50. */
  sqThreadIdleMs?: number;
  /**
   * Merge a write into the previous not-yet-flushed write on the same fd when it starts
   * where that one ends and fits its buffer: one SQE, one syscall's worth of kernel work,
   * still one completion per token. Default true.
   */
  coalesce?: boolean;
  /**
   * How a chain of writes that ends in a datasync goes to the kernel when its writes total
   * at most `fuseMaxBytes` (a datasync every record or so). Linked, every SQE posts a CQE
   * and each wakes the event loop, the writes' while the datasync still runs. Fused, the
   * chain posts one CQE on success:
   * - `'skip'`: the writes carry `IOSQE_CQE_SKIP_SUCCESS` before the linked datasync
   *   (Linux >= 5.17; linked elsewhere);
   * - `'dsync'`: when the chain is a single write SQE and every earlier write of the fd
   *   has been covered by a datasync, that write alone with `RWF_DSYNC` (the kernel runs
   *   write and sync as one request); otherwise as `'skip'`;
   * - `'linked'`: never fused.
   * `'auto'` (the default) is `'dsync'`. At a datasync every record on a 2-vCPU VM it took
   * records/s from 0.93-0.96x to 1.08x ThreadPoolStorageIo's (medians), with 9-25% less
   * CPU per record than `'linked'` (docs/URING.md).
   */
  datasyncPath?: 'auto' | 'linked' | 'skip' | 'dsync';
  /**
   * The most bytes of writes a chain may carry and still be fused (see `datasyncPath`).
   * Larger chains stay linked, so that the fd's next writes can start beside their
   * datasync as soon as their writes complete. Default 8 KiB.
   */
  fuseMaxBytes?: number;
}

/** What a ring turned out to be, and counters for tests and benchmarks. */
export interface UringStorageIoInfo {
  /** Whether the ring runs with a kernel SQ polling thread. */
  sqpoll: boolean;
  /** errno of the refused SQPOLL setup (e.g. 1 = EPERM), 0 when SQPOLL was not tried or not refused. */
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
  /** Linked chains handed to the kernel since creation (per fd, one running writes at a time, and at most one more whose datasync still runs). */
  chainsSubmitted: number;
  /**
   * Times a flush left operations of an fd queued because earlier writes of the fd were
   * still running (or, for a datasync, an earlier datasync).
   */
  chainsDeferred: number;
  /** Chains started while the datasync that ended the fd's previous chain was still running. */
  chainsBesideDatasync: number;
  /**
   * The ring was set up with `IORING_SETUP_COOP_TASKRUN` (Linux >= 5.19, not with SQPOLL):
   * completions of work the kernel ran in its io-wq threads are posted when this thread
   * next enters the kernel, instead of by an interrupt of its user-space work.
   */
  coopTaskrun: boolean;
  /** Short writes resubmitted for their remainder. */
  shortWriteRetries: number;
  /**
   * CQEs that arrived before the CQE of an earlier SQE of their chain. Linked SQEs run one
   * after another, so the kernel keeps this at 0; tests assert it to show the ordering
   * comes from the kernel, not from this class handing results out in chain order.
   */
  cqesOutOfChainOrder: number;
  /**
   * Chains of writes ending in a datasync that went to the kernel fused, posting one CQE
   * on success (see `datasyncPath`).
   */
  chainsFused: number;
  /** Of those, chains sent as one `RWF_DSYNC` write. */
  dsyncWrites: number;
  /** CQEs taken from the completion ring since creation. */
  cqes: number;
}

const KIND_WRITE = 0;
const KIND_SYNC = 1;
/** A write from a private copy (`IORING_OP_WRITE`): longer than a buffer, or the pool was empty. */
const KIND_COPY = 2;
const FLAG_LINK = 1;
/** `IOSQE_CQE_SKIP_SUCCESS`: no CQE unless the SQE fails. */
const FLAG_SKIP = 2;
/** `RWF_DSYNC` on a write: durable for its own range when it completes. */
const FLAG_DSYNC = 4;
/** `IORING_FEAT_CQE_SKIP` (Linux >= 5.17). */
const FEAT_CQE_SKIP = 1 << 11;
/**
 * Default `fuseMaxBytes`: a record or two. A fused chain costs the fd the write CQEs that
 * let the next writes start beside its datasync; at a datasync every 100 records of 100 B
 * (16 KB chains) fusing measured no better than linked (1.19-1.21x against 1.27x).
 */
const FUSE_MAX_BYTES = 8 * 1024;
/** A chain whose every SQE posts a CQE. */
const MODE_LINKED = 0;
/** Writes linked before a datasync, with `IOSQE_CQE_SKIP_SUCCESS`: one CQE, the datasync's, unless one fails. */
const MODE_SKIP = 1;
/** One write with `RWF_DSYNC` standing for [write, datasync]: one SQE, one CQE. */
const MODE_DSYNC = 2;
const STRIDE = 8;
const MAX_BUFFER_SIZE = 1 << 30;
const MAX_BUFFERS = 16384;
const MIN_BUFFERS_ON_ENOMEM = 4;
const SQPOLL_AUTO_MIN_CPUS = 4;
/** The registered all-zeros buffer that `submitZeros` writes from. */
const ZERO_BUFFER_SIZE = 256 * 1024;
/** Zeros for a ring without registered buffers; never written to. */
let zerosCopy: Buffer | null = null;
const EIO = constants.errno.EIO;
const ECANCELED = constants.errno.ECANCELED;

/**
 * One SQE's worth of work: a (possibly coalesced) write from one registered buffer, or a
 * datasync. `done` bytes of a write have been written; a short write resubmits the rest.
 */
interface Op {
  kind: number;
  /** Registered buffer index; `zeroBuf` for zeros, -1 for a datasync or a private copy. */
  buf: number;
  /** The private copy of a KIND_COPY write, kept alive until its completion. */
  data: Buffer | null;
  used: number;
  done: number;
  offset: number;
  tokens: number[];
  lens: number[];
  /** The kernel's result for the SQE now in flight. */
  res: number;
}

interface FdState {
  id: number;
  slot: number;
  osFd: number;
  cursor: number;
  /** Not yet in the kernel, in submission order. */
  queued: Op[];
  /** The newest linked chain in the kernel while any of its writes runs, or null; the fd's next chain waits for it. */
  chain: Op[] | null;
  chainLeft: number;
  /** Index in `chain` of the SQE whose CQE should come next. */
  chainNext: number;
  /**
   * An earlier chain whose writes have all completed in full while the datasync that ends
   * it still runs: the fd's next writes may start meanwhile, another datasync may not.
   * Its results are handed out, together, when that datasync completes.
   */
  syncChain: Op[] | null;
  /** The first failure on this fd (a negative errno), or 0: every later operation is cancelled. */
  failed: number;
  /**
   * A flush (or a short write's retry) asked for `queued` to start while the previous
   * chain ran: it starts as soon as that chain's completions are taken. Operations
   * submitted and never flushed wait for `flush()`.
   */
  startWanted: boolean;
  /**
   * `turns` when a chain of writes alone (no datasync) was taken while the caller was
   * busy — polling or flushing, not waiting, the event loop not turning — or -1. Until the
   * next turn, writes alone wait on this fd as they do beside a running datasync.
   */
  parkedAt: number;
  /** How `chain` went to the kernel: MODE_LINKED, MODE_SKIP or MODE_DSYNC. */
  chainMode: number;
  /** userData of `chain`'s first SQE; its others follow in order. */
  chainUd: number;
  /**
   * Writes that no datasync has covered may exist: a chain of writes alone was started
   * since the last chain that ended in a datasync (or the fd came with unknown dirty
   * pages). A `RWF_DSYNC` write syncs its own range only, so it may stand for a datasync
   * only while this is false.
   */
  loose: boolean;
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

function checkOffset(v: unknown, name: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
    throw new PerCoreWalError('INVALID_POSITION', `${name} must be a non-negative safe integer, got ${String(v)}`);
  }
  return v;
}

/**
 * A {@link StorageIo} backend on Linux io_uring: one ring per instance — create one per
 * core (worker thread) — with registered files, a registered buffer pool and, where
 * the kernel allows one and a CPU is spare for it, a kernel SQ polling thread.
 *
 * - `submitWrite`/`submitAppend` copy the bytes into a free registered buffer
 *   (`IORING_OP_WRITE_FIXED`), returned to the pool on completion. A write longer than a
 *   buffer, or one made while every buffer is taken, goes from a private copy
 *   (`IORING_OP_WRITE`) within `maxCopyBytes`; past that, `BUFFER_EXHAUSTED`. Appends are writes at an explicit offset: each fd's append
 *   cursor starts at its size when registered. Contiguous writes not yet flushed share a
 *   buffer and an SQE, each keeping its own token and completion. `submitZeros` writes
 *   from a registered all-zeros buffer, copying nothing.
 * - Per fd, what one `flush()` starts is a chain of SQEs joined by `IOSQE_IO_LINK`,
 *   ending at its first datasync (`IORING_OP_FSYNC`, `IORING_FSYNC_DATASYNC`), which the
 *   link runs only after every write before it has completed — in the kernel (SPEC
 *   invariant 2). A chain starts only once every earlier write of the fd has completed
 *   (its completion taken), so writes run in submission order; it need not wait for a
 *   datasync that ends the previous chain — writes made while a datasync runs start
 *   beside it, as on `ThreadPoolStorageIo`, once they fill a registered buffer, a
 *   datasync is queued behind them or the caller waits for a completion — but at most
 *   one datasync per fd runs at a time.
 *   A short chain — a write or two and its datasync, a datasync every record or so —
 *   goes fused so that it completes with one CQE, one event-loop wake-up: as one
 *   `RWF_DSYNC` write where that covers everything a datasync would, otherwise with
 *   `IOSQE_CQE_SKIP_SUCCESS` on its writes (see `datasyncPath`).
 *   Operations that must wait start as the completions they wait for are taken. Like
 *   `ThreadPoolStorageIo`, which starts an fd's next write from the previous one's
 *   callback, a caller appending without yielding gets its flushes batched: after a chain
 *   of writes alone is taken by its polling, further writes alone wait for the next
 *   event-loop turn or wait (or a datasync behind them, or a full buffer).
 * - After an operation on an fd fails, every later one on it that has not started
 *   completes with `-ECANCELED` without running (the kernel cancels the rest of the
 *   chain; queued ones never start), so the file never holds a record after a hole, and
 *   a failed datasync is never followed by one reporting success. (Writes already
 *   running beside a datasync when it fails complete as they do.) A short write is
 *   resubmitted for its remainder; a write's completion reports its full length or a
 *   negative errno.
 * - `flush()` publishes the SQEs (one `io_uring_enter`, or none while the SQPOLL thread
 *   is awake); `pollCompletions` reads the CQ ring in user space; `waitForCompletions`
 *   sleeps on an eventfd the ring signals, watched by libuv, so nothing spins. The watch
 *   is active only while a wait is pending, so an idle instance never keeps the process
 *   alive.
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
 * import { CoreWalWriter, UringStorageIo, type IoCompletion } from 'corewal';
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
  /** Index of the registered all-zeros buffer (just past the pool). */
  private readonly zeroBuf: number;
  private readonly depth: number;
  private readonly maxQueued: number;
  private readonly maxCopy: number;
  private copyBytes = 0;
  private readonly coalesce: boolean;
  /** Which kernel path a chain of writes ending in a datasync takes (see `datasyncPath`). */
  private readonly syncPath: number;
  /** The kernel has `IORING_FEAT_CQE_SKIP`. */
  private readonly skipOk: boolean;
  private readonly fuseMax: number;
  private readonly ring: NativeRing;
  private readonly freeBufs: number[] = [];
  private readonly freeSlots: number[] = [];
  private readonly fds = new Map<number, FdState>();
  private readonly inflight = new Map<number, { op: Op; fd: FdState; idx: number }>();
  private readonly split = new Map<number, SplitToken>();
  /** Fds with queued operations not yet started, in the order they got them. */
  private readonly dirty = new Set<FdState>();
  private readonly desc: Float64Array;
  private readonly cqBuf: Float64Array;
  /** Completions ready to hand out before anything still in the CQ. */
  private staged: IoCompletion[] = [];
  private waiters: (() => void)[] = [];
  private waiting = false;
  private closed = false;
  /**
   * Event-loop turns (eventfd wake-ups) and waits: a chain of writes taken in between
   * parks its fd (`parkedAt`) until the next one.
   */
  private turns = 0;
  private nextToken = 1;
  private nextUserData = 1;
  private nextFdId = 1;
  /** Ops (SQEs) queued or in the kernel: bounded by `depth`, which also keeps the CQ from overflowing. */
  private sqes = 0;
  private pending = 0;
  private sqesSubmitted = 0;
  private chainsSubmitted = 0;
  private chainsDeferred = 0;
  private chainsBesideDatasync = 0;
  private shortWriteRetries = 0;
  private cqesOutOfChainOrder = 0;
  private chainsFused = 0;
  private dsyncWrites = 0;
  private cqesTaken = 0;

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
   * many buffers, down to 4, and then with none (every write from a private copy);
   * {@link info} reports what it got.
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
    this.maxQueued = intOption(options.maxQueued, 65536, 1, Number.MAX_SAFE_INTEGER, 'maxQueued');
    this.maxCopy = intOption(options.maxCopyBytes, 64 * 1024 * 1024, 0, Number.MAX_SAFE_INTEGER, 'maxCopyBytes');
    let count = intOption(options.bufferCount, 8, 0, MAX_BUFFERS, 'bufferCount');
    const size = intOption(options.bufferSize, 256 * 1024, 1, MAX_BUFFER_SIZE, 'bufferSize');
    const slots = intOption(options.maxFiles, 64, 1, 32768, 'maxFiles');
    const idle = intOption(options.sqThreadIdleMs, 50, 1, 60_000, 'sqThreadIdleMs');
    const sq = options.sqpoll ?? 'auto';
    if (sq !== true && sq !== false && sq !== 'auto') throw new PerCoreWalError('INVALID_ARGUMENT', `sqpoll must be true, false or 'auto', got ${String(sq)}`);
    const trySqpoll = sq === 'auto' ? availableParallelism() >= SQPOLL_AUTO_MIN_CPUS : sq;
    this.native = native;
    let ring: NativeRing | null = null;
    for (;;) {
      try {
        ring = native.create(depth, count, size, slots, trySqpoll, idle, ZERO_BUFFER_SIZE);
        break;
      } catch (e) {
        const errno = (e as { errno?: number }).errno;
        if (errno === constants.errno.ENOMEM && count > 0 && /REGISTER_BUFFERS/.test((e as Error).message)) {
          // Pinned memory counts against RLIMIT_MEMLOCK, shared by every ring of the user.
          count = count > MIN_BUFFERS_ON_ENOMEM ? Math.max(MIN_BUFFERS_ON_ENOMEM, count >> 1) : 0;
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
    this.zeroBuf = count;
    this.depth = Math.min(depth, ring.sqEntries);
    this.coalesce = options.coalesce ?? true;
    const path = options.datasyncPath ?? 'auto';
    if (path !== 'auto' && path !== 'linked' && path !== 'skip' && path !== 'dsync') {
      throw new PerCoreWalError('INVALID_ARGUMENT', `datasyncPath must be 'auto', 'linked', 'skip' or 'dsync', got ${String(path)}`);
    }
    this.skipOk = (ring.features & FEAT_CQE_SKIP) !== 0;
    this.syncPath = path === 'linked' ? MODE_LINKED : path === 'skip' ? MODE_SKIP : MODE_DSYNC;
    this.fuseMax = intOption(options.fuseMaxBytes, FUSE_MAX_BYTES, 0, MAX_BUFFER_SIZE, 'fuseMaxBytes');
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
      chainsSubmitted: this.chainsSubmitted,
      chainsDeferred: this.chainsDeferred,
      chainsBesideDatasync: this.chainsBesideDatasync,
      coopTaskrun: this.ring.coopTaskrun,
      shortWriteRetries: this.shortWriteRetries,
      cqesOutOfChainOrder: this.cqesOutOfChainOrder,
      chainsFused: this.chainsFused,
      dsyncWrites: this.dsyncWrites,
      cqes: this.cqesTaken,
    };
  }

  private checkOpen(): void {
    if (this.closed) throw new StorageIoError('CLOSED', 'UringStorageIo is closed');
  }

  private state(fd: IoFd): FdState {
    this.checkOpen();
    const st = typeof fd === 'number' ? this.fds.get(fd) : undefined;
    if (st === undefined) throw new StorageIoError('BAD_FD', `IoFd ${String(fd)} is not registered with this UringStorageIo`);
    return st;
  }

  // ---- fds ----------------------------------------------------------------------

  /**
   * Installs `fd` in a registered-file slot (`IORING_REGISTER_FILES_UPDATE`) and takes
   * ownership of it. Its append cursor starts at its current size. On failure the caller
   * still owns `fd`. `BAD_FD` for something that is not an open fd, `QUEUE_FULL` when
   * every slot (`maxFiles`) is taken.
   */
  registerFd(fd: number): IoFd {
    this.checkOpen();
    if (typeof fd !== 'number' || !Number.isInteger(fd) || fd < 0 || fd > 0x7fffffff) {
      throw new StorageIoError('BAD_FD', `registerFd takes an open OS file descriptor, got ${String(fd)}`);
    }
    const size = registeredFdSize({ fstatSync }, fd);
    const slot = this.freeSlots.pop();
    if (slot === undefined) throw new StorageIoError('QUEUE_FULL', `all ${this.fds.size} registered-file slots are in use (maxFiles)`);
    try {
      this.native.updateFile(this.h, slot, fd);
    } catch (e) {
      this.freeSlots.push(slot);
      if ((e as { errno?: number }).errno === constants.errno.EBADF) {
        throw new StorageIoError('BAD_FD', `fd ${fd} cannot be registered: ${(e as Error).message}`, { cause: e });
      }
      throw ioErr(`registering fd ${fd}`, e);
    }
    const id = this.nextFdId++;
    this.fds.set(id, { id, slot, osFd: fd, cursor: size, queued: [], chain: null, chainLeft: 0, chainNext: 0, syncChain: null, failed: 0, startWanted: false, parkedAt: -1, chainMode: MODE_LINKED, chainUd: 0, loose: true });
    return id as IoFd;
  }

  /**
   * Starts what is queued on `fd`, waits (blocking) until all of it has completed — the
   * completions stay available to `pollCompletions` — then clears its slot and closes it.
   */
  deregisterFd(fd: IoFd): void {
    const st = this.state(fd);
    this.startAll();
    this.runUntil(() => st.chain === null && st.syncChain === null && st.queued.length === 0);
    this.fds.delete(st.id);
    this.dirty.delete(st);
    let failure: unknown = null;
    try {
      this.native.updateFile(this.h, st.slot, -1);
      this.freeSlots.push(st.slot);
    } catch (e) {
      failure = e; // the slot stays taken: the kernel may still hold the file
    }
    try {
      closeSync(st.osFd);
    } catch (e) {
      failure ??= e;
    }
    if (failure !== null) throw ioErr(`deregistering fd ${st.osFd}`, failure);
  }

  /** As `flush()`, parked writes included: for deregisterFd and close, which then block until done. */
  private startAll(): void {
    this.checkOpen();
    this.turns++;
    if (this.native.cqReady(this.h) > 0) this.reapInto(this.staged, true);
    this.startChains(true);
  }

  /** Blocks in io_uring_enter until `done()`, staging completions (and starting chains) as they come. */
  private runUntil(done: () => boolean): void {
    while (!done()) {
      if (this.inflight.size === 0) break;
      try {
        this.native.wait(this.h, 1);
      } catch (e) {
        throw ioErr('waiting for completions', e);
      }
      this.reapInto(this.staged, true);
    }
  }

  // ---- submission -----------------------------------------------------------------

  submitWrite(fd: IoFd, data: Uint8Array, offset: number): number {
    if (!(data instanceof Uint8Array)) requireBytes(data, 'data');
    const off = checkOffset(offset, 'offset');
    return this.enqueueWrite(this.admit(fd), data, off, data.length);
  }

  submitAppend(fd: IoFd, data: Uint8Array): number {
    if (!(data instanceof Uint8Array)) requireBytes(data, 'data');
    const st = this.admit(fd);
    const token = this.enqueueWrite(st, data, st.cursor, data.length);
    st.cursor += data.length;
    return token;
  }

  /** Writes `length` zero bytes at `offset` from the registered zero buffer (no copy). */
  submitZeros(fd: IoFd, offset: number, length: number): number {
    const off = checkOffset(offset, 'offset');
    const len = checkOffset(length, 'length');
    return this.enqueueWrite(this.admit(fd), null, off, len);
  }

  submitDatasync(fd: IoFd): number {
    const st = this.admit(fd);
    if (st.failed !== 0) return this.cancelled();
    if (this.sqes + 1 > this.depth) throw this.sqFull();
    const token = this.nextToken++;
    this.queue(st, { kind: KIND_SYNC, buf: -1, data: null, used: 0, done: 0, offset: 0, tokens: [token], lens: [0], res: 0 });
    this.pending++;
    return token;
  }

  /** The fd's state, once the instance is open, the fd registered and the queue not full. */
  private admit(fd: IoFd): FdState {
    const st = this.state(fd);
    if (this.pending >= this.maxQueued) {
      throw new StorageIoError('QUEUE_FULL', `UringStorageIo queue is full (${this.pending} operations submitted and not yet polled, maxQueued ${this.maxQueued}); poll completions first`);
    }
    return st;
  }

  private sqFull(): StorageIoError {
    return new StorageIoError('QUEUE_FULL', `io_uring queue full: ${this.sqes} of ${this.depth} SQEs queued or in flight (queueDepth); flush and poll completions`);
  }

  /** An operation on a failed fd: cancelled without running. */
  private cancelled(): number {
    const token = this.nextToken++;
    this.staged.push({ token, result: -ECANCELED });
    this.pending++;
    return token;
  }

  /**
   * `data` null: zeros, from the registered zero buffer. Data goes into a registered
   * buffer — appended to the last queued write of the fd when it continues it and fits —
   * or, when the write is longer than a buffer or no buffer is free, into a private copy
   * (within `maxCopyBytes`).
   */
  private enqueueWrite(st: FdState, data: Uint8Array | null, offset: number, len: number): number {
    if (st.failed !== 0) return this.cancelled();
    if (len === 0) {
      const token = this.nextToken++;
      this.staged.push({ token, result: 0 });
      this.pending++;
      return token;
    }
    if (data === null) return this.enqueueZeros(st, offset, len);
    const bs = this.bufSize;
    if (len > bs) return this.enqueueCopy(st, data, offset, len);
    const q = st.queued;
    if (this.coalesce && q.length > 0) {
      const last = q[q.length - 1]!;
      if (last.offset + last.used === offset) {
        if (last.kind === KIND_WRITE && last.buf !== this.zeroBuf && bs - last.used >= len) {
          this.pool.set(data, last.buf * bs + last.used);
          return this.joined(last, len);
        }
        if (last.kind === KIND_COPY && last.data !== zerosCopy && last.data!.length - last.used >= len) {
          last.data!.set(data, last.used);
          return this.joined(last, len);
        }
      }
    }
    if (this.sqes + 1 > this.depth) throw this.sqFull();
    const buf = this.freeBufs.pop();
    if (buf === undefined) return this.enqueueCopy(st, data, offset, bs);
    this.pool.set(data, buf * bs);
    const token = this.nextToken++;
    this.queue(st, { kind: KIND_WRITE, buf, data: null, used: len, done: 0, offset, tokens: [token], lens: [len], res: 0 });
    this.pending++;
    return token;
  }

  /** A write joined to the queued op `last` (its bytes already copied in after `last.used`). */
  private joined(last: Op, len: number): number {
    const token = this.nextToken++;
    last.used += len;
    last.tokens.push(token);
    last.lens.push(len);
    this.pending++;
    return token;
  }

  /**
   * A private copy of `capacity` bytes (room for later contiguous writes when the pool is
   * merely exhausted). One longer than every buffer still goes when no other copy is in
   * flight, so that no write is too large ever to be accepted.
   */
  private enqueueCopy(st: FdState, data: Uint8Array, offset: number, capacity: number): number {
    if (this.sqes + 1 > this.depth) throw this.sqFull();
    const alone = capacity > this.bufSize && this.copyBytes === 0;
    if (!alone && this.copyBytes + capacity > this.maxCopy) {
      throw new StorageIoError('BUFFER_EXHAUSTED',
        `no free registered buffer (${this.bufCount} of ${this.bufSize} bytes) and ${this.copyBytes} bytes of private copies in flight; ` +
        `${capacity} more would exceed maxCopyBytes ${this.maxCopy}; poll completions to return buffers`);
    }
    const copy = Buffer.allocUnsafeSlow(capacity);
    copy.set(data);
    this.copyBytes += capacity;
    const token = this.nextToken++;
    this.queue(st, { kind: KIND_COPY, buf: -1, data: copy, used: data.length, done: 0, offset, tokens: [token], lens: [data.length], res: 0 });
    this.pending++;
    return token;
  }

  /**
   * Zeros from the registered zero buffer (or, without registered buffers, a shared block
   * of zeros): one SQE per buffer's worth, one token.
   */
  private enqueueZeros(st: FdState, offset: number, len: number): number {
    const zs = ZERO_BUFFER_SIZE;
    const parts = Math.ceil(len / zs);
    if (this.sqes + parts > this.depth) throw this.sqFull();
    const token = this.nextToken++;
    if (parts > 1) this.split.set(token, { left: parts, bytes: 0, err: 0 });
    const shared = this.bufCount === 0 ? (zerosCopy ??= Buffer.alloc(zs)) : null;
    for (let p = 0; p < parts; p++) {
      const n = Math.min(zs, len - p * zs);
      this.queue(st, {
        kind: shared === null ? KIND_WRITE : KIND_COPY, buf: shared === null ? this.zeroBuf : -1, data: shared,
        used: n, done: 0, offset: offset + p * zs, tokens: [token], lens: [n], res: 0,
      });
    }
    this.pending++;
    return token;
  }

  private queue(st: FdState, op: Op): void {
    st.queued.push(op);
    this.sqes++;
    this.dirty.add(st);
  }

  /**
   * Starts what is queued: per fd, a chain of linked SQEs up to its first datasync.
   * Operations of an fd whose earlier writes (or, for a datasync, earlier datasync) are
   * still in the kernel stay queued; they start once the completions they wait for are
   * taken (by `pollCompletions`, `waitForCompletions`, the eventfd wake-up or a later
   * flush). Writes with no datasync behind them, less than a buffer's worth, also stay
   * queued beside a running datasync, and after a chain of writes alone was taken while the
   * caller was busy (polling, not waiting): until the caller waits or the event loop turns.
   * Returns how many operations (tokens) it started now.
   */
  flush(): number {
    this.checkOpen();
    // Chains that have finished free their fds for the next one.
    if (this.native.cqReady(this.h) > 0) this.reapInto(this.staged);
    return this.startChains(true);
  }

  /**
   * How many of `st`'s queued operations may start now, as one chain: none while writes
   * of the fd run; otherwise every write up to and including the first datasync — up to
   * it only while an earlier datasync still runs (at most one per fd in the kernel).
   * Beside a running datasync, writes with no datasync queued behind them start only once
   * they fill a registered buffer (`bufferSize` bytes): a chain costs an io-wq wake-up
   * and a completion to take, more than writing a few KiB just before the next datasync
   * (measured: less CPU per record and higher records/s at 100 B records). They start
   * anyway as soon as that datasync completes, or when the caller waits (`idle`). The
   * same holds for an fd parked (`parkedAt`) until the next event-loop turn.
   */
  private startable(st: FdState, idle: boolean): number {
    const q = st.queued;
    if (q.length === 0 || (st.chain !== null && !this.detachSync(st))) return 0;
    let i = 0;
    let bytes = 0;
    while (i < q.length && q[i]!.kind !== KIND_SYNC) bytes += q[i++]!.used;
    if (i < q.length) return st.syncChain === null ? i + 1 : i;
    return (st.syncChain !== null || st.parkedAt === this.turns) && bytes < this.bufSize && !idle ? 0 : i;
  }

  /**
   * `all`: everything queued (a flush); otherwise only fds whose start was asked for.
   * `idle`: the caller waits for a completion, so the CPU a chain costs the event loop is
   * not taken from its work: writes flushed and held back beside a running datasync start
   * now. Held until the datasync completes instead, they ran only then, between it and the
   * next one, which waited for them (at 100 B with a sync every 1000, the group's 160 KB
   * write — 60–120 us — was on the critical path of every cycle).
   */
  private startChains(all: boolean, idle = false): number {
    if (this.dirty.size === 0) return 0;
    const d = this.desc;
    const large: Buffer[] = [];
    let n = 0;
    let started = 0;
    for (const st of this.dirty) {
      if (!all && !st.startWanted) continue;
      const q = st.queued;
      const k = this.startable(st, idle);
      if (k < q.length) {
        if (all && !st.startWanted) {
          this.chainsDeferred++;
          st.startWanted = true;
        }
        if (k === 0) continue;
      } else {
        this.dirty.delete(st);
        st.startWanted = false;
        if (k === 0) continue;
      }
      let chain: Op[];
      if (k === q.length) {
        chain = q;
        st.queued = [];
      } else {
        chain = q.splice(0, k);
      }
      if (st.syncChain !== null) this.chainsBesideDatasync++;
      const mode = this.chainMode(st, chain);
      // RWF_DSYNC syncs its own range only: anything else uncovered would lose SPEC invariant 2.
      if (mode === MODE_DSYNC && (st.loose || chain.length !== 2 || st.syncChain !== null)) {
        throw new StorageIoError('IO', 'UringStorageIo invariant: RWF_DSYNC chosen while another write is uncovered or a datasync runs');
      }
      // What this chain's datasync covers: every write of the fd before it (the link and
      // the chain-start rule). Writes alone leave bytes no datasync has covered yet.
      st.loose = chain[chain.length - 1]!.kind !== KIND_SYNC;
      st.chain = chain;
      st.chainMode = mode;
      st.chainUd = this.nextUserData;
      const sqes = mode === MODE_DSYNC ? chain.length - 1 : chain.length;
      st.chainLeft = sqes;
      st.chainNext = 0;
      this.chainsSubmitted++;
      if (mode !== MODE_LINKED) this.chainsFused++;
      if (mode === MODE_DSYNC) this.dsyncWrites++;
      for (let i = 0; i < sqes; i++) {
        const op = chain[i]!;
        const ud = this.nextUserData++;
        this.inflight.set(ud, { op, fd: st, idx: i });
        const at = n * STRIDE;
        d[at] = op.kind;
        d[at + 1] = st.slot;
        if (op.kind === KIND_COPY) {
          large.push(op.data!);
          d[at + 2] = large.length - 1;
        } else {
          d[at + 2] = op.buf < 0 ? 0 : op.buf;
        }
        d[at + 3] = op.done;
        d[at + 4] = op.used - op.done;
        d[at + 5] = op.offset + op.done;
        d[at + 6] = ud;
        d[at + 7] = mode === MODE_DSYNC ? FLAG_DSYNC : i < sqes - 1 ? (mode === MODE_SKIP ? FLAG_LINK | FLAG_SKIP : FLAG_LINK) : 0;
        n++;
        started += op.tokens.length;
      }
      if (mode === MODE_DSYNC) started++;
    }
    if (n === 0) return 0;
    let published: number;
    try {
      published = this.native.submit(this.h, d, n, large);
    } catch (e) {
      throw ioErr('io_uring submission', e);
    }
    // Cannot fall short while sqes <= depth <= SQ entries; a torn chain must not go unnoticed.
    if (published !== n) throw new StorageIoError('IO', `io_uring accepted ${published} of ${n} SQEs`);
    this.sqesSubmitted += n;
    return started;
  }

  /**
   * How a chain goes to the kernel. A chain of writes ending in a datasync posts a CQE per
   * write, each of which wakes the event loop (the eventfd) while the datasync still runs,
   * unless the chain is fused:
   * - MODE_SKIP: the writes carry `IOSQE_CQE_SKIP_SUCCESS`. The link still runs the
   *   datasync only once every write before it has completed in full (a short write fails
   *   the link), so its success CQE stands for theirs; a failing write posts its own CQE
   *   and the kernel cancels the rest without CQEs. The datasync is a full
   *   `IORING_FSYNC_DATASYNC`, covering what any datasync covers.
   * - MODE_DSYNC: a single write (`RWF_DSYNC`) stands for [write, datasync]. The kernel
   *   syncs only that write's range (`generic_write_sync` → a ranged `vfs_fsync_range`,
   *   plus the metadata a datasync commits), not the fd's other dirty pages. That is a
   *   datasync of everything before it only if no earlier write is left uncovered: every
   *   earlier write of the fd completed before this chain started (the chain-start rule),
   *   and was covered by an earlier datasync that started after it completed and
   *   succeeded (one datasync per fd at a time; a failure fails the fd) — `loose` false.
   *   A writeback error it meets is reported by that write (-errno), which fails the fd,
   *   as a failed datasync does: no later datasync on the fd can report success over it.
   * Fusing costs the fd the write CQEs that let the next writes start beside a running
   * datasync (`detachSync`), so it is used only for chains of at most `fuseMaxBytes`.
   */
  private chainMode(st: FdState, chain: Op[]): number {
    const path = this.syncPath;
    const last = chain.length - 1;
    if (path === MODE_LINKED || last === 0 || chain[last]!.kind !== KIND_SYNC) return MODE_LINKED;
    let bytes = 0;
    for (let i = 0; i < last; i++) bytes += chain[i]!.used - chain[i]!.done;
    if (bytes > this.fuseMax) return MODE_LINKED;
    if (path === MODE_DSYNC && last === 1 && !st.loose) return MODE_DSYNC;
    return this.skipOk ? MODE_SKIP : MODE_LINKED;
  }

  /**
   * A CQE of a fused chain (`st.chainMode`): fills in the results of the SQEs that post
   * none and returns whether the chain is complete.
   */
  private fusedCqe(st: FdState, op: Op, idx: number): boolean {
    const c = st.chain!;
    const last = c.length - 1;
    if (st.chainMode === MODE_DSYNC) {
      // One SQE: a full write was also synced; a short or failed one cancels the datasync
      // (a short one's remainder is retried with it, still before it).
      c[last]!.res = op.res === op.used - op.done ? 0 : -ECANCELED;
      return true;
    }
    if (idx !== last && op.res === op.used - op.done) return false; // a CQE the kernel did not skip
    for (let i = 0; i < idx; i++) {
      const w = c[i]!;
      w.res = w.used - w.done;
      this.inflight.delete(st.chainUd + i);
    }
    for (let i = idx + 1; i <= last; i++) {
      c[i]!.res = -ECANCELED;
      this.inflight.delete(st.chainUd + i);
    }
    return true;
  }

  // ---- completion -----------------------------------------------------------------

  pollCompletions(out: IoCompletion[]): void {
    this.checkOpen();
    if (this.staged.length > 0) {
      const s = this.staged;
      this.staged = [];
      for (let i = 0; i < s.length; i++) out.push(s[i]!);
      this.pending -= s.length;
    }
    const before = out.length;
    try {
      this.reapInto(out);
    } finally {
      // Completions already moved to `out` are handed out even if starting the next chains failed.
      this.pending -= out.length - before;
    }
  }

  /**
   * Takes every CQE, finishing chains into `out`, then starts the chains that were waiting.
   * Leaves `pending` alone. `turn`: called from the event loop's wake-up, a wait or a
   * blocking close, not from the caller's own polling or flushing.
   */
  private reapInto(out: IoCompletion[], turn = false): void {
    const idle = this.waiters.length > 0;
    const busy = !turn && !idle;
    const buf = this.cqBuf;
    const max = buf.length >> 1;
    let n: number;
    do {
      n = this.native.reap(this.h, buf);
      this.cqesTaken += n;
      for (let i = 0; i < n; i++) {
        const e = this.inflight.get(buf[2 * i]!);
        if (e === undefined) continue;
        this.inflight.delete(buf[2 * i]!);
        e.op.res = buf[2 * i + 1]!;
        const st = e.fd;
        const sc = st.syncChain;
        if (sc !== null && e.op === sc[sc.length - 1]) {
          st.syncChain = null;
          this.finishChain(st, sc, out);
          continue;
        }
        if (st.chainMode !== MODE_LINKED) {
          if (!this.fusedCqe(st, e.op, e.idx)) continue;
          const c = st.chain!;
          st.chain = null;
          this.finishChain(st, c, out);
          continue;
        }
        if (e.idx !== st.chainNext) this.cqesOutOfChainOrder++;
        st.chainNext = e.idx + 1;
        if (--st.chainLeft === 0) {
          const c = st.chain!;
          st.chain = null;
          // ThreadPoolStorageIo starts an fd's next write from the previous one's callback,
          // on an event-loop turn: a caller appending without yielding gets its flushes
          // batched into one write. Polling sees completions at once, so without this each
          // 64-record flush was a chain of its own (about 10 us of CPU each, an io-wq wake-up
          // and a completion, on this VM).
          if (busy && c[c.length - 1]!.kind !== KIND_SYNC) st.parkedAt = this.turns;
          this.finishChain(st, c, out);
        } else if (st.queued.length > 0) {
          this.detachSync(st);
        }
      }
    } while (n === max);
    if (this.dirty.size > 0) this.startChains(false, idle);
  }

  /**
   * A chain's every SQE has completed: hand its results out in submission order. A short
   * write resubmits its remainder, and the rest of the chain — which the kernel cancelled
   * because the link broke — goes back in front of the queue. A failure poisons the fd.
   */
  private finishChain(st: FdState, chain: Op[], out: IoCompletion[]): void {
    let retry = -1;
    let failed = 0;
    for (let i = 0; i < chain.length; i++) {
      const op = chain[i]!;
      if (failed !== 0) { this.finishOp(op, -ECANCELED, out); continue; }
      const res = op.res;
      if (op.kind === KIND_SYNC) {
        if (res < 0) failed = res;
        this.finishOp(op, res < 0 ? res : 0, out);
        continue;
      }
      const want = op.used - op.done;
      if (res === want) {
        op.done = op.used;
        this.finishOp(op, 0, out);
      } else if (res > 0 && res < want) {
        op.done += res;
        if (st.failed === 0) {
          this.shortWriteRetries++;
          retry = i;
          break;
        }
        // The fd failed meanwhile (the datasync this chain ran beside): the rest is not resubmitted.
        failed = -ECANCELED;
        this.finishOp(op, failed, out);
      } else {
        // 0 bytes for a non-empty write would retry forever; report it as EIO.
        failed = res < 0 ? res : -EIO;
        this.finishOp(op, failed, out);
      }
    }
    if (retry >= 0) {
      // The datasync this chain ended in never ran: whatever it was to cover still is
      // uncovered, so the resubmitted chain must end in a full datasync, not RWF_DSYNC.
      st.loose = true;
      const again = chain.slice(retry);
      st.queued = st.queued.length > 0 ? again.concat(st.queued) : again;
      this.dirty.add(st);
      st.startWanted = true;
    }
    if (failed !== 0) this.failFd(st, failed, out);
  }

  /**
   * When every write of the chain in flight has completed in full and only its trailing
   * datasync runs, sets the chain aside (`syncChain`) so that the fd's next writes can
   * start beside that datasync. Returns whether it did.
   */
  private detachSync(st: FdState): boolean {
    const chain = st.chain!;
    const last = chain.length - 1;
    if (st.chainMode !== MODE_LINKED) return false;
    if (st.chainLeft !== 1 || st.chainNext !== last || chain[last]!.kind !== KIND_SYNC) return false;
    for (let i = 0; i < last; i++) if (chain[i]!.res !== chain[i]!.used - chain[i]!.done) return false;
    st.syncChain = chain;
    st.chain = null;
    return true;
  }

  /** The fd failed with `err`: every operation not yet started on it is cancelled. */
  private failFd(st: FdState, err: number, out: IoCompletion[]): void {
    if (st.failed === 0) st.failed = err;
    if (st.queued.length > 0) {
      for (const op of st.queued) this.finishOp(op, -ECANCELED, out);
      st.queued = [];
    }
    this.dirty.delete(st);
    st.startWanted = false;
  }

  /**
   * Hands out an op's tokens and returns its buffer. `err` 0: every token got its full
   * length (0 for a datasync); negative: a write's tokens wholly written before the
   * failure still report their length, the others `err`.
   */
  private finishOp(op: Op, err: number, out: IoCompletion[]): void {
    this.sqes--;
    if (op.kind === KIND_SYNC) {
      this.emit(op.tokens[0]!, err, out);
      return;
    }
    if (op.kind === KIND_COPY) {
      if (op.data !== zerosCopy) this.copyBytes -= op.data!.length;
      op.data = null;
    } else if (op.buf !== this.zeroBuf) {
      this.freeBufs.push(op.buf);
    }
    let at = 0;
    for (let i = 0; i < op.tokens.length; i++) {
      const len = op.lens[i]!;
      at += len;
      this.emit(op.tokens[i]!, err === 0 || at <= op.done ? len : err, out);
    }
  }

  /** One SQE's share of a token's result; a token split over several SQEs completes with the last. */
  private emit(token: number, result: number, out: IoCompletion[]): void {
    // Split tokens (long zero-fills) are rare: skip the lookup for every record's token.
    const s = this.split.size === 0 ? undefined : this.split.get(token);
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
   * if nothing is pending (nothing could ever arrive). When nothing is in the kernel it
   * starts the queued operations first (`flush()`), so a forgotten flush cannot hang it;
   * while something is, operations not flushed stay queued for the caller's next flush —
   * typically a datasync's, which then links them before it in one chain instead of
   * starting them as a chain of their own. Writes flushed and held back beside a running
   * datasync (less than a buffer's worth) start now, and while the wait lasts: the caller
   * has nothing else to do, and the next datasync will not have to wait for them. Throws
   * `CLOSED` after `close()`; a wait pending when `close()` runs resolves.
   */
  waitForCompletions(): Promise<void> {
    this.checkOpen();
    if (this.staged.length > 0 || this.pending === 0) return Promise.resolve();
    this.turns++;
    if (this.native.cqReady(this.h) > 0) this.reapInto(this.staged, true);
    if (this.staged.length > 0) return Promise.resolve();
    if (this.inflight.size === 0) this.startChains(true);
    else if (this.dirty.size > 0) this.startChains(false, true);
    if (this.staged.length > 0) return Promise.resolve();
    return new Promise<void>((resolve) => {
      this.waiters.push(resolve);
      if (!this.waiting) {
        this.native.setWaiting(this.h, true);
        this.waiting = true;
      }
    });
  }

  /**
   * The eventfd became readable (possibly stale: CQEs already taken). Taking the CQEs here
   * also starts chains that were waiting for the ones that finished, so I/O keeps moving
   * while the caller sleeps; the caller wakes only for a completion it can poll (a CQE in
   * the middle of a chain is not one yet).
   */
  private onWake(): void {
    if (this.closed) return;
    this.turns++;
    if (this.native.cqReady(this.h) > 0 || this.dirty.size > 0) {
      try {
        // With no CQE (the caller's polling took them), this starts writes parked meanwhile.
        this.reapInto(this.staged, true);
      } catch {
        // A submission failure surfaces at the caller's next flush or poll; wake it now.
        this.settleWaiters();
        return;
      }
    }
    if (this.staged.length > 0) this.settleWaiters();
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
   * Starts what is queued, waits (blocking) for every operation to finish, closes every
   * registered fd and releases the ring. Completions not yet polled are dropped; a pending
   * `waitForCompletions` resolves. Idempotent; every other method then fails with `CLOSED`.
   */
  close(): void {
    if (this.closed) return;
    let failure: unknown = null;
    try {
      this.startAll();
      this.runUntil(() => this.sqes === 0);
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
