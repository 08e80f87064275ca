import { PerCoreWalError } from '../errors/errors.js';
import {
  DURABLE, FAILURE, FAILURE_CODES, STATE, STATE_CLOSED, STATE_CLOSING, STATE_FAILED, TAIL,
} from './protocol.js';
import { RING_CLOSED, RING_FULL, RingProducer } from './ring.js';

/** Told when a lane starts and stops having appends in flight. */
export interface LaneOwner {
  laneActive(on: boolean): void;
}

// Node 20 has Atomics.waitAsync; the ES2022 lib the project compiles against does not declare it.
interface WaitAsyncResult { async: boolean; value: Promise<'ok' | 'timed-out'> | 'not-equal' | 'timed-out' }
const AtomicsAsync = Atomics as unknown as { waitAsync(ta: Int32Array, index: number, value: number, timeout?: number): WaitAsyncResult };

type Resolve = (ticket: number) => void;
type Reject = (err: unknown) => void;

interface Blocked {
  op: number;
  key: Uint8Array;
  value: Uint8Array | null;
  resolve: Resolve;
  reject: Reject;
}

/**
 * One core as one producer sees it: the ring, the appends waiting to be durable (FIFO by
 * ticket, in parallel arrays so that an append allocates no record object), and the
 * appends waiting for room in the ring.
 */
export class Lane {
  readonly core: number;
  private readonly owner: LaneOwner;
  private active = false;
  readonly ring: RingProducer;
  private readonly ctrl: Int32Array;
  private tickets: number[] = [];
  private resolves: Resolve[] = [];
  private rejects: Reject[] = [];
  private head = 0;
  private durableArmed = false;
  private blocked: Blocked[] = [];
  private blockedHead = 0;
  private spaceArmed = false;
  private drainedWaiters: (() => void)[] = [];
  /** Set by the pool with the worker's own error; remote producers build one from the code. */
  failure: PerCoreWalError | null = null;
  // `new Promise(this.executor)` reads the ticket from here: no closure per append.
  private nextTicket = 0;
  private readonly executor = (resolve: Resolve, reject: Reject): void => {
    this.tickets.push(this.nextTicket);
    this.resolves.push(resolve);
    this.rejects.push(reject);
  };
  private readonly onDurable = (): void => {
    this.durableArmed = false;
    this.armDurable();
  };
  private readonly onSpace = (): void => {
    this.spaceArmed = false;
    this.unblock();
  };

  constructor(owner: LaneOwner, core: number, sab: SharedArrayBuffer) {
    this.owner = owner;
    this.core = core;
    this.ring = new RingProducer(sab);
    this.ctrl = this.ring.ctrl;
  }

  pendingCount(): number { return this.tickets.length - this.head + this.blocked.length - this.blockedHead; }
  blockedCount(): number { return this.blocked.length - this.blockedHead; }

  append(op: number, key: Uint8Array, value: Uint8Array | null, wait: boolean): Promise<number> {
    if (this.blocked.length > this.blockedHead) return this.block(op, key, value, wait);
    const t = this.ring.tryEnqueue(op, key, value);
    if (t > 0) return this.track(t);
    if (t === RING_FULL) return this.block(op, key, value, wait);
    return Promise.reject(this.refusal());
  }

  private track(ticket: number): Promise<number> {
    this.nextTicket = ticket;
    const p = new Promise<number>(this.executor);
    // Active first: armDurable may settle this ticket at once (the worker was quick) and
    // then go idle; marking active after that would hold the thread alive for nothing.
    if (!this.active) this.setActive(true);
    if (!this.durableArmed) this.armDurable();
    return p;
  }

  private armDurable(): void {
    for (;;) {
      // Settle against the very value we then wait on: waiting on a value that already
      // covers a pending ticket would leave it unresolved until the next batch, which may
      // never come.
      const seen = this.settle();
      if (this.head === this.tickets.length) return;
      const r = AtomicsAsync.waitAsync(this.ctrl, DURABLE, seen);
      if (r.async) {
        this.durableArmed = true;
        void (r.value as Promise<string>).then(this.onDurable);
        return;
      }
      // DURABLE moved between the load and the wait: look again.
    }
  }

  /**
   * Resolves every append the worker has made durable; rejects the rest if the core is
   * gone. Returns the DURABLE value it used. The state is read first: a worker publishes
   * its last DURABLE before it closes or fails, so a terminal state read here implies the
   * DURABLE read after it is final, and nothing durable is ever rejected.
   */
  private settle(): number {
    const state = Atomics.load(this.ctrl, STATE);
    const durable = Atomics.load(this.ctrl, DURABLE);
    const tickets = this.tickets;
    let i = this.head;
    // Tickets compare by their low 32 bits, wrap-aware: fewer than 2^31 are ever in flight.
    while (i < tickets.length && ((durable - tickets[i]!) | 0) >= 0) {
      this.resolves[i]!(tickets[i]!);
      i++;
    }
    this.head = i;
    if (state === STATE_FAILED || state === STATE_CLOSED) {
      const err = this.refusal();
      for (; i < tickets.length; i++) this.rejects[i]!(err);
      this.head = i;
    }
    if (this.head === tickets.length) {
      this.head = 0;
      tickets.length = 0; this.resolves.length = 0; this.rejects.length = 0;
      this.maybeIdle();
    } else if (this.head > 4096 && this.head * 2 > tickets.length) {
      tickets.splice(0, this.head); this.resolves.splice(0, this.head); this.rejects.splice(0, this.head);
      this.head = 0;
    }
    return durable;
  }

  /** Under backpressure: the append waits its turn with a copy of its bytes (the caller may reuse its buffers). */
  private block(op: number, key: Uint8Array, value: Uint8Array | null, wait: boolean): Promise<number> {
    const state = Atomics.load(this.ctrl, STATE);
    if (state === STATE_FAILED || state === STATE_CLOSED || state === STATE_CLOSING) return Promise.reject(this.refusal());
    if (!wait) {
      return Promise.reject(new PerCoreWalError('BACKPRESSURE',
        `the ring of core ${this.core} is full (${this.blockedCount()} appends already waiting); retry later or append with { wait: true }`,
        { coreId: this.core }));
    }
    return new Promise<number>((resolve, reject) => {
      this.blocked.push({ op, key: Uint8Array.prototype.slice.call(key), value: value === null ? null : Uint8Array.prototype.slice.call(value), resolve, reject });
      if (!this.active) this.setActive(true);
      if (!this.spaceArmed) this.unblock();
    });
  }

  /** Moves waiting appends into the ring in order, until it is full again. */
  private unblock(): void {
    while (this.blockedHead < this.blocked.length) {
      const b = this.blocked[this.blockedHead]!;
      const tail = this.ring.tail();
      const t = this.ring.tryEnqueue(b.op, b.key, b.value);
      if (t === RING_FULL) {
        const r = AtomicsAsync.waitAsync(this.ctrl, TAIL, tail);
        if (!r.async) continue; // the worker freed room meanwhile
        this.spaceArmed = true;
        void (r.value as Promise<string>).then(this.onSpace);
        return;
      }
      this.blocked[this.blockedHead++] = undefined as unknown as Blocked;
      if (t === RING_CLOSED) { b.reject(this.refusal()); continue; }
      this.track(t).then(b.resolve, b.reject);
    }
    this.clearBlocked();
    this.maybeIdle();
  }

  /** Empties the queue of appends waiting for room (all settled by now) and wakes `whenUnblocked`. */
  private clearBlocked(): void {
    this.blocked.length = 0;
    this.blockedHead = 0;
    const waiters = this.drainedWaiters;
    this.drainedWaiters = [];
    for (const w of waiters) w();
  }

  private maybeIdle(): void {
    if (this.active && this.head === this.tickets.length && this.blockedCount() === 0) this.setActive(false);
  }

  /**
   * Atomics.waitAsync does not keep a thread alive: while this lane has appends in flight,
   * the producer holds a ref'd timer so that a producer thread does not exit under them.
   */
  private setActive(on: boolean): void {
    this.active = on;
    this.owner.laneActive(on);
  }

  /** Resolves once no append of this producer waits for room in the ring. */
  whenUnblocked(): Promise<void> {
    if (this.blockedCount() === 0) return Promise.resolve();
    return new Promise((resolve) => this.drainedWaiters.push(resolve));
  }

  /** Wakes this lane's waits so it notices a state change (the pool calls it after marking a core failed). */
  poke(): void {
    if (this.durableArmed || this.head < this.tickets.length) { this.settle(); }
    if (this.blockedCount() > 0) {
      const err = this.refusal();
      const s = Atomics.load(this.ctrl, STATE);
      if (s === STATE_FAILED || s === STATE_CLOSED || s === STATE_CLOSING) {
        for (let i = this.blockedHead; i < this.blocked.length; i++) this.blocked[i]!.reject(err);
        this.clearBlocked();
      }
    }
    this.maybeIdle();
  }

  /** The error for an append this core will not take (or did not make durable). */
  refusal(): PerCoreWalError {
    const state = Atomics.load(this.ctrl, STATE);
    if (state === STATE_FAILED) {
      if (this.failure !== null) return this.failure;
      const code = FAILURE_CODES[Atomics.load(this.ctrl, FAILURE)] ?? 'WORKER_FAILED';
      return new PerCoreWalError('WORKER_FAILED', `the worker of core ${this.core} failed (${code}); appends to it are refused until the pool is restarted`,
        { coreId: this.core });
    }
    return new PerCoreWalError('CLOSED', `core ${this.core} is closed: the pool was closed`, { coreId: this.core });
  }
}

