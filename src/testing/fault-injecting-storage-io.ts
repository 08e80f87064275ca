import { PerCoreWalError } from '../errors/errors.js';
import { badFd, checkData, checkOffset, closedError, ECANCELED, EIO, ENOSPC } from '../storage-io/common.js';
import type { IoCompletion, IoFd, StorageIo } from '../storage-io/types.js';

/** The kinds of operation a fault can target. */
export type FaultOp = 'write' | 'append' | 'zeros' | 'datasync';
/** An errno by name or number (positive). */
export type FaultErrno = 'EIO' | 'ENOSPC' | number;

/** Which operations a fault, hold or delay applies to. */
export interface FaultMatch {
  /** One kind or several; default every kind. */
  op?: FaultOp | readonly FaultOp[];
  /** Only this fd; default any. */
  fd?: IoFd;
  /** Let this many matching operations through first. Default 0. */
  after?: number;
  /** How many matching operations it applies to (after `after`). Default 1; `Infinity` for all. */
  times?: number;
}

/** A fault: fail with an errno, or (writes only) write only part of the data and report that. */
export type FaultSpec =
  | (FaultMatch & { errno: FaultErrno })
  | (FaultMatch & { shortWrite: number });

/** What the wrapper does with later operations on an fd after it injected a failure there. */
export type AfterFailure = 'cancel' | 'cancelWrites' | 'continue';

/** How a batch of completions is reordered before `pollCompletions` hands it out. */
export type ReorderMode = 'none' | 'reverse' | 'shuffle' | 'acrossFds';

export interface FaultInjectingStorageIoOptions {
  /**
   * After an injected failure or short write on an fd: `'cancel'` (default) completes every
   * later operation on it with `-ECANCELED` without running it, as corewal's backends do;
   * `'cancelWrites'` cancels later writes but lets datasyncs through (a disk that lost a
   * write yet reports its sync as good); `'continue'` lets everything through.
   */
  afterFailure?: AfterFailure;
  /** Reordering of each batch of completions; default `'none'`. */
  reorder?: ReorderMode;
  /** Seed for `'shuffle'` and `'acrossFds'`. Default 1. */
  seed?: number;
}

/** One operation as the wrapper saw it, for assertions. */
export interface FaultLogEntry {
  token: number;
  op: FaultOp;
  fd: IoFd;
  offset: number;
  length: number;
  /** What the wrapper did to it. */
  fault: 'none' | 'errno' | 'short' | 'cancelled';
}

/** A fault, hold or delay once installed: how often it matched and fired. */
export interface FaultHandle {
  /** Matching operations seen. */
  readonly matched: number;
  /** Times it applied. */
  readonly fired: number;
  /** Uninstalls it (a hold releases what it holds). */
  remove(): void;
}

/** A hold: completions of matching operations are kept back until `release()`. */
export interface HoldHandle extends FaultHandle {
  /** Completions kept back right now. */
  readonly held: number;
  /** Hands every held completion out (at the next poll) and uninstalls the hold. */
  release(): void;
}

interface Rule {
  ops: readonly FaultOp[] | null;
  fd: IoFd | undefined;
  after: number;
  times: number;
  matched: number;
  fired: number;
  active: boolean;
}

interface ErrnoRule extends Rule { kind: 'errno'; errno: number }
interface ShortRule extends Rule { kind: 'short'; bytes: number }
interface HoldRule extends Rule { kind: 'hold'; kept: IoCompletion[] }
interface DelayRule extends Rule { kind: 'delay'; ms: number }

interface OpMeta { op: FaultOp; fd: IoFd }

const WRITE_OPS: readonly FaultOp[] = ['write', 'append', 'zeros'];

/**
 * A {@link StorageIo} wrapper for tests — corewal's and your own — that makes a healthy
 * backend misbehave the ways disks and kernels do: operations fail with EIO or ENOSPC,
 * writes come back short, completions are held back (e.g. a datasync until you release
 * it), delayed, or reordered across fds. Everything it does not touch passes through.
 *
 * @example
 * ```ts
 * import { FaultInjectingStorageIo } from 'corewal/testing';
 * const sio = new FaultInjectingStorageIo(new ThreadPoolStorageIo());
 * sio.inject({ op: 'write', after: 2, errno: 'ENOSPC' });   // the third write fails
 * const hold = sio.hold({ op: 'datasync' });                // no datasync completes…
 * // … run the code under test, assert nothing was acknowledged …
 * hold.release();                                           // … until now
 * ```
 */
export class FaultInjectingStorageIo implements StorageIo {
  private readonly inner: StorageIo;
  private afterFailure: AfterFailure;
  private reorderMode: ReorderMode;
  private rng: number;
  private readonly rules: (ErrnoRule | ShortRule)[] = [];
  private readonly holds: HoldRule[] = [];
  private readonly delays: DelayRule[] = [];
  private readonly innerToOuter = new Map<number, number>();
  private readonly meta = new Map<number, OpMeta>();
  private readonly fds = new Set<IoFd>();
  /**
   * Fds with an injected failure. Until the failing operation's own completion has been
   * routed (`root` set), cancellations wait behind it, as a real backend would produce them.
   */
  private readonly failedFds = new Map<IoFd, { root: number; waiting: IoCompletion[] }>();
  private ready: IoCompletion[] = [];
  private scratch: IoCompletion[] = [];
  private nextToken = 1;
  private outstanding = 0;
  private delayed = 0;
  private signal: (() => void) | null = null;
  private signalP: Promise<void> | null = null;
  private closed = false;
  /** Every operation submitted, in order. */
  readonly log: FaultLogEntry[] = [];

  constructor(inner: StorageIo, options: FaultInjectingStorageIoOptions = {}) {
    this.inner = inner;
    this.afterFailure = options.afterFailure ?? 'cancel';
    this.reorderMode = options.reorder ?? 'none';
    this.rng = (options.seed ?? 1) >>> 0 || 1;
  }

  /** The wrapped backend. */
  backend(): StorageIo { return this.inner; }

  // ---- configuring faults ----------------------------------------------------------

  /** Installs a fault: matching operations fail with `errno`, or writes come back short. */
  inject(spec: FaultSpec): FaultHandle {
    const base = this.rule(spec);
    const rule: ErrnoRule | ShortRule = 'errno' in spec
      ? { ...base, kind: 'errno', errno: errnoValue(spec.errno) }
      : { ...base, kind: 'short', bytes: checkShort(spec.shortWrite) };
    this.rules.push(rule);
    return this.handle(rule, () => { rule.active = false; });
  }

  /** Shorthand: the next matching operation (default: any write) fails with `errno` (default EIO). */
  failNext(op: FaultOp | readonly FaultOp[] = WRITE_OPS, errno: FaultErrno = 'EIO', match: Omit<FaultMatch, 'op'> = {}): FaultHandle {
    return this.inject({ ...match, op, errno });
  }

  /** Shorthand: the next matching write writes only `bytes` bytes and reports that. */
  shortWriteNext(bytes: number, match: Omit<FaultMatch, 'op'> & { op?: FaultOp | readonly FaultOp[] } = {}): FaultHandle {
    return this.inject({ op: WRITE_OPS, ...match, shortWrite: bytes });
  }

  /**
   * Keeps back the completions of matching operations (default: every matching one
   * from now on, `times: Infinity`) until `release()`. The operations themselves run.
   */
  hold(match: FaultMatch = {}): HoldHandle {
    const rule: HoldRule = { ...this.rule({ times: Infinity, ...match }), kind: 'hold', kept: [] };
    this.holds.push(rule);
    const release = (): void => {
      rule.active = false;
      const i = this.holds.indexOf(rule);
      if (i >= 0) this.holds.splice(i, 1);
      for (const c of rule.kept) this.ready.push(c);
      rule.kept.length = 0;
      this.wake();
    };
    return {
      get matched() { return rule.matched; },
      get fired() { return rule.fired; },
      get held() { return rule.kept.length; },
      release,
      remove: release,
    };
  }

  /** Delivers the completions of matching operations `ms` later than they arrive. */
  delay(ms: number, match: FaultMatch = {}): FaultHandle {
    const rule: DelayRule = { ...this.rule({ times: Infinity, ...match }), kind: 'delay', ms };
    this.delays.push(rule);
    return this.handle(rule, () => { rule.active = false; });
  }

  /** Changes how batches of completions are reordered from now on. */
  setReorder(mode: ReorderMode, seed?: number): void {
    this.reorderMode = mode;
    if (seed !== undefined) this.rng = seed >>> 0 || 1;
  }

  setAfterFailure(mode: AfterFailure): void { this.afterFailure = mode; }

  /** Releases every hold and forgets every fault, delay and failed fd. */
  heal(): void {
    for (const h of this.holds) {
      h.active = false;
      for (const c of h.kept) this.ready.push(c);
      h.kept.length = 0;
    }
    this.holds.length = 0;
    this.wake();
    this.rules.length = 0;
    for (const d of this.delays) d.active = false;
    this.delays.length = 0;
    const waiting = [...this.failedFds.values()].flatMap((f) => f.waiting);
    this.failedFds.clear();
    for (const c of waiting) this.route(c);
  }

  // ---- StorageIo ---------------------------------------------------------------------

  registerFd(fd: number): IoFd {
    this.checkOpen();
    const io = this.inner.registerFd(fd);
    this.fds.add(io);
    this.failedFds.delete(io);
    return io;
  }

  deregisterFd(fd: IoFd): void {
    this.checkOpen();
    this.inner.deregisterFd(fd);
    this.fds.delete(fd);
  }

  submitWrite(fd: IoFd, data: Uint8Array, offset: number): number {
    checkData(data);
    checkOffset(offset);
    return this.submitData('write', fd, data, offset);
  }

  /** Faults as `submitWrite` ('write'); passes the bytes on uncopied where the inner backend can take them so. */
  submitWriteOwned(fd: IoFd, data: Uint8Array, offset: number): number {
    checkData(data);
    checkOffset(offset);
    return this.submitData('write', fd, data, offset, true);
  }

  submitAppend(fd: IoFd, data: Uint8Array): number {
    checkData(data);
    return this.submitData('append', fd, data, -1);
  }

  submitZeros(fd: IoFd, offset: number, length: number): number {
    checkOffset(offset);
    checkOffset(length, 'length');
    this.admit(fd);
    const fault = this.faultFor('zeros', fd);
    if (fault !== null) return this.injected('zeros', fd, offset, length, fault);
    const inner = this.inner.submitZeros !== undefined
      ? this.inner.submitZeros(fd, offset, length)
      : this.inner.submitWrite(fd, Buffer.alloc(length), offset);
    return this.passed(inner, 'zeros', fd, offset, length, 'none');
  }

  submitDatasync(fd: IoFd): number {
    this.admit(fd);
    const fault = this.faultFor('datasync', fd);
    if (fault !== null) return this.injected('datasync', fd, 0, 0, fault);
    return this.passed(this.inner.submitDatasync(fd), 'datasync', fd, 0, 0, 'none');
  }

  flush(): number {
    this.checkOpen();
    return this.inner.flush();
  }

  pollCompletions(out: IoCompletion[]): void {
    this.checkOpen();
    this.collect();
    const batch = this.ready;
    if (batch.length === 0) return;
    this.ready = [];
    this.reorder(batch);
    for (const c of batch) out.push(c);
    this.outstanding -= batch.length;
  }

  pendingCount(): number { return this.outstanding; }

  async waitForCompletions(): Promise<void> {
    this.checkOpen();
    for (;;) {
      this.collect();
      if (this.ready.length > 0 || this.closed) return;
      const innerBusy = this.inner.pendingCount() > 0;
      if (!innerBusy && this.delayed === 0 && !this.holding()) return; // nothing could arrive
      this.signalP ??= new Promise<void>((resolve) => { this.signal = resolve; });
      if (innerBusy) await Promise.race([this.signalP, this.inner.waitForCompletions()]);
      else await this.signalP;
      this.collect();
      // An inner backend with nothing started returns at once: yield instead of spinning.
      if (this.ready.length === 0) await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.inner.close();
    this.wake();
  }

  // ---- internals ---------------------------------------------------------------------

  private submitData(op: FaultOp, fd: IoFd, data: Uint8Array, offset: number, owned = false): number {
    this.admit(fd);
    const fault = this.faultFor(op, fd);
    if (fault !== null && fault.kind === 'errno') return this.injected(op, fd, offset, data.length, fault);
    if (fault !== null) {
      // A short write: only the first bytes reach the file, and the completion says so.
      const n = Math.min(fault.bytes, data.length);
      const part = data.subarray(0, n);
      const inner = op === 'append' ? this.inner.submitAppend(fd, part) : this.innerWrite(fd, part, offset, owned);
      const token = this.passed(inner, op, fd, offset, data.length, 'short');
      this.markFailed(fd, token);
      return token;
    }
    const inner = op === 'append' ? this.inner.submitAppend(fd, data) : this.innerWrite(fd, data, offset, owned);
    return this.passed(inner, op, fd, offset, data.length, 'none');
  }

  private innerWrite(fd: IoFd, data: Uint8Array, offset: number, owned: boolean): number {
    return owned && this.inner.submitWriteOwned !== undefined ? this.inner.submitWriteOwned(fd, data, offset) : this.inner.submitWrite(fd, data, offset);
  }

  private admit(fd: IoFd): void {
    this.checkOpen();
    if (!this.fds.has(fd)) throw badFd(fd);
  }

  /** The fault that applies to this operation, or a cancellation after an earlier failure, or null. */
  private faultFor(op: FaultOp, fd: IoFd): ErrnoRule | ShortRule | null {
    if (this.failedFds.has(fd)) {
      const mode = this.afterFailure;
      if (mode === 'cancel' || (mode === 'cancelWrites' && op !== 'datasync')) return CANCEL;
    }
    for (const r of this.rules) {
      if (!this.matches(r, op, fd)) continue;
      if (r.kind === 'short' && op === 'datasync') continue;
      r.fired++;
      return r;
    }
    return null;
  }

  private matches(r: Rule, op: FaultOp, fd: IoFd): boolean {
    if (!r.active || (r.ops !== null && !r.ops.includes(op)) || (r.fd !== undefined && r.fd !== fd)) return false;
    r.matched++;
    if (r.matched <= r.after) return false;
    if (r.fired >= r.times) return false;
    return true;
  }

  private injected(op: FaultOp, fd: IoFd, offset: number, length: number, fault: ErrnoRule | ShortRule): number {
    const token = this.nextToken++;
    this.outstanding++;
    const cancelled = fault === CANCEL;
    this.log.push({ token, op, fd, offset, length, fault: cancelled ? 'cancelled' : 'errno' });
    this.meta.set(token, { op, fd });
    const c = { token, result: -(fault as ErrnoRule).errno };
    if (cancelled) {
      const f = this.failedFds.get(fd);
      if (f !== undefined && f.root !== 0) {
        f.waiting.push(c);
        return token;
      }
    } else {
      this.markFailed(fd, 0);
    }
    this.route(c);
    return token;
  }

  private passed(inner: number, op: FaultOp, fd: IoFd, offset: number, length: number, fault: FaultLogEntry['fault']): number {
    const token = this.nextToken++;
    this.outstanding++;
    this.innerToOuter.set(inner, token);
    this.meta.set(token, { op, fd });
    this.log.push({ token, op, fd, offset, length, fault });
    // A waiter that saw the inner backend idle (e.g. only held completions left) must now watch it.
    this.wake();
    return token;
  }

  /** `root`: the token whose completion must be routed before cancellations (0: none pending). */
  private markFailed(fd: IoFd, root: number): void {
    if (this.afterFailure !== 'continue' && !this.failedFds.has(fd)) this.failedFds.set(fd, { root, waiting: [] });
  }

  /** Moves the inner backend's completions through holds and delays. */
  private collect(): void {
    if (this.closed) return;
    const tmp = this.scratch;
    tmp.length = 0;
    this.inner.pollCompletions(tmp);
    for (const c of tmp) {
      const outer = this.innerToOuter.get(c.token);
      if (outer === undefined) continue;
      this.innerToOuter.delete(c.token);
      this.route({ token: outer, result: c.result });
    }
    tmp.length = 0;
  }

  private route(c: IoCompletion): void {
    const m = this.meta.get(c.token)!;
    this.meta.delete(c.token);
    const f = this.failedFds.get(m.fd);
    if (f !== undefined && f.root === c.token) {
      f.root = 0;
      this.deliver(c, m);
      for (const w of f.waiting.splice(0)) this.route(w);
      return;
    }
    this.deliver(c, m);
  }

  private deliver(c: IoCompletion, m: OpMeta): void {
    for (const h of this.holds) {
      if (this.matches(h, m.op, m.fd)) {
        h.fired++;
        h.kept.push(c);
        return;
      }
    }
    for (const d of this.delays) {
      if (this.matches(d, m.op, m.fd)) {
        d.fired++;
        this.delayed++;
        setTimeout(() => {
          this.delayed--;
          this.ready.push(c);
          this.wake();
        }, d.ms);
        return;
      }
    }
    // Remember the fd for 'acrossFds' reordering.
    FD_OF.set(c, m.fd);
    this.ready.push(c);
    // Injected completions are routed at submission: a waiter must see them.
    this.wake();
  }

  private holding(): boolean {
    for (const h of this.holds) if (h.kept.length > 0) return true;
    return false;
  }

  private reorder(batch: IoCompletion[]): void {
    switch (this.reorderMode) {
      case 'none':
        return;
      case 'reverse':
        batch.reverse();
        return;
      case 'shuffle':
        for (let i = batch.length - 1; i > 0; i--) {
          const j = this.random(i + 1);
          const t = batch[i]!; batch[i] = batch[j]!; batch[j] = t;
        }
        return;
      case 'acrossFds': {
        // Each fd's completions keep their order; the fds interleave at random.
        const perFd = new Map<unknown, IoCompletion[]>();
        for (const c of batch) {
          const k = FD_OF.get(c);
          let l = perFd.get(k);
          if (l === undefined) perFd.set(k, (l = []));
          l.push(c);
        }
        const queues = [...perFd.values()];
        batch.length = 0;
        while (queues.length > 0) {
          const q = this.random(queues.length);
          batch.push(queues[q]!.shift()!);
          if (queues[q]!.length === 0) queues.splice(q, 1);
        }
        return;
      }
    }
  }

  /** xorshift32: deterministic per seed. */
  private random(n: number): number {
    let x = this.rng;
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    this.rng = x;
    return x % n;
  }

  private wake(): void {
    const s = this.signal;
    if (s !== null) {
      this.signal = null;
      this.signalP = null;
      s();
    }
  }

  private rule(m: FaultMatch): Rule {
    const ops = m.op === undefined ? null : typeof m.op === 'string' ? [m.op] : [...m.op];
    return { ops, fd: m.fd, after: m.after ?? 0, times: m.times ?? 1, matched: 0, fired: 0, active: true };
  }

  private handle(rule: Rule, remove: () => void): FaultHandle {
    return {
      get matched() { return rule.matched; },
      get fired() { return rule.fired; },
      remove,
    };
  }

  private checkOpen(): void {
    if (this.closed) throw closedError('FaultInjectingStorageIo');
  }
}

/** The fd of a delivered completion (kept beside it, so completions stay plain `{ token, result }`). */
const FD_OF = new WeakMap<IoCompletion, IoFd>();

const CANCEL: ErrnoRule = {
  kind: 'errno', errno: ECANCELED, ops: null, fd: undefined, after: 0, times: Infinity, matched: 0, fired: 0, active: true,
};

function errnoValue(e: FaultErrno): number {
  if (e === 'EIO') return EIO;
  if (e === 'ENOSPC') return ENOSPC;
  if (typeof e === 'number' && Number.isInteger(e) && e > 0) return e;
  throw new PerCoreWalError('INVALID_ARGUMENT', `errno must be 'EIO', 'ENOSPC' or a positive integer, got ${String(e)}`);
}

function checkShort(n: number): number {
  if (!Number.isInteger(n) || n < 0) throw new PerCoreWalError('INVALID_ARGUMENT', `shortWrite must be a non-negative integer, got ${String(n)}`);
  return n;
}
