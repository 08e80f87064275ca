import { PerCoreWalError } from '../errors/errors.js';
import { assert } from '../util/assert.js';
import {
  align8, CTRL_BYTES, CTRL_WORDS, HEAD, LOCK, MAX_RING_BYTES, maxMessageBytes, MIN_RING_BYTES, MSG_HEADER, OP_PAD,
  SLEEPING, STATE, STATE_RUNNING, STATE_STARTING, TAIL, TICKET_HI, TICKET_LO, WAKE,
} from './protocol.js';

const TWO_32 = 4294967296;

/** `tryEnqueue` results that are not tickets. */
export const RING_FULL = -1;
/** The core is closed or failed: nothing more is accepted. */
export const RING_CLOSED = -2;

/** A new ring of `capacity` data bytes (a power of two) with its control block. */
export function createRing(capacity: number): SharedArrayBuffer {
  if (!Number.isInteger(capacity) || capacity < MIN_RING_BYTES || capacity > MAX_RING_BYTES || (capacity & (capacity - 1)) !== 0) {
    throw new PerCoreWalError('INVALID_ARGUMENT',
      `ringBytes must be a power of two in [${MIN_RING_BYTES}, ${MAX_RING_BYTES}], got ${String(capacity)}`);
  }
  return new SharedArrayBuffer(CTRL_BYTES + capacity);
}

export function ringCapacity(sab: SharedArrayBuffer): number {
  return sab.byteLength - CTRL_BYTES;
}

/**
 * The producer side of one core's ring: any number of threads may hold one on the same
 * memory. Enqueueing copies the record into the ring under a spin lock (held only for
 * that copy, so the spin is short) and publishes the new head; the worker is woken only
 * when it is asleep, so a busy ring costs no syscall per record.
 *
 * A message never wraps around the end: when it does not fit before the end, a pad
 * message fills the rest and the message starts at offset 0. Messages are at most half
 * the ring, so a drained ring always has room for the pad and the message.
 */
export class RingProducer {
  readonly ctrl: Int32Array;
  private readonly data: Uint8Array;
  private readonly dv: DataView;
  private readonly cap: number;
  private readonly mask: number;
  readonly maxMessage: number;

  constructor(sab: SharedArrayBuffer) {
    this.ctrl = new Int32Array(sab, 0, CTRL_WORDS);
    this.cap = ringCapacity(sab);
    this.mask = this.cap - 1;
    this.data = new Uint8Array(sab, CTRL_BYTES, this.cap);
    this.dv = new DataView(sab, CTRL_BYTES, this.cap);
    this.maxMessage = maxMessageBytes(this.cap);
  }

  /** Bytes the message for a key and value of these lengths takes. */
  static messageBytes(keyLen: number, valueLen: number): number {
    return align8(MSG_HEADER + keyLen + valueLen);
  }

  /**
   * Copies one message into the ring. Returns its ticket (1, 2, … per core: the order the
   * worker appends in), {@link RING_FULL} when there is no room now, or
   * {@link RING_CLOSED} when the core accepts nothing more. `value` may be null.
   */
  tryEnqueue(op: number, key: Uint8Array, value: Uint8Array | null): number {
    const klen = key.length;
    const vlen = value === null ? 0 : value.length;
    const need = align8(MSG_HEADER + klen + vlen);
    assert(need <= this.maxMessage, 'message size checked by the caller');
    const ctrl = this.ctrl;
    this.lock();
    try {
      const state = Atomics.load(ctrl, STATE);
      if (state !== STATE_RUNNING && state !== STATE_STARTING) return RING_CLOSED;
      let head = Atomics.load(ctrl, HEAD);
      const used = (head - Atomics.load(ctrl, TAIL)) >>> 0;
      const free = this.cap - used;
      let at = head & this.mask;
      const toEnd = this.cap - at;
      if (need > toEnd) {
        if (free < toEnd + need) return RING_FULL;
        this.dv.setUint32(at, toEnd, true);
        this.dv.setUint8(at + 4, OP_PAD);
        head = (head + toEnd) | 0;
        at = 0;
      } else if (free < need) {
        return RING_FULL;
      }
      const dv = this.dv;
      dv.setUint32(at, need, true);
      dv.setUint32(at + 4, op, true);
      dv.setUint32(at + 8, klen, true);
      dv.setUint32(at + 12, vlen, true);
      this.data.set(key, at + MSG_HEADER);
      if (value !== null) this.data.set(value, at + MSG_HEADER + klen);
      let lo = Atomics.load(ctrl, TICKET_LO) + 1;
      let hi = Atomics.load(ctrl, TICKET_HI);
      if (lo === 0) Atomics.store(ctrl, TICKET_HI, ++hi);
      Atomics.store(ctrl, TICKET_LO, lo);
      // Publishing the head is what makes the bytes above visible to the worker.
      Atomics.store(ctrl, HEAD, (head + need) | 0);
      lo >>>= 0;
      return hi * TWO_32 + lo;
    } finally {
      Atomics.store(ctrl, LOCK, 0);
      // Seq-cst against the worker's "set SLEEPING, read WAKE, re-check HEAD, wait on WAKE":
      // either it sees the new head, or we see it asleep and change the word it waits on.
      if (Atomics.load(ctrl, SLEEPING) !== 0) {
        Atomics.add(ctrl, WAKE, 1);
        Atomics.notify(ctrl, WAKE);
      }
    }
  }

  /** Takes the lock words' ownership. The holder only copies bytes, so spinning is short. */
  private lock(): void {
    const ctrl = this.ctrl;
    while (Atomics.compareExchange(ctrl, LOCK, 0, 1) !== 0) {
      // Spin; a producer thread cannot be descheduled for long inside a memcpy.
    }
  }

  /** Runs `fn` holding the lock: the worker uses it to change STATE so no enqueue races the change. */
  withLock<T>(fn: () => T): T {
    this.lock();
    try {
      return fn();
    } finally {
      Atomics.store(this.ctrl, LOCK, 0);
    }
  }

  state(): number { return Atomics.load(this.ctrl, STATE); }
  tail(): number { return Atomics.load(this.ctrl, TAIL); }
}

/**
 * The worker's side of the ring: one consumer. It reads messages between its tail and
 * the published head in place (views into the shared memory, valid until `release`),
 * and frees their bytes with `release`.
 */
export class RingConsumer {
  readonly ctrl: Int32Array;
  readonly data: Uint8Array;
  readonly dv: DataView;
  private readonly cap: number;
  private readonly mask: number;
  /** Bytes consumed (local copy of TAIL, published by `release`). */
  private tailPos: number;
  /** Read cursor: the next message starts here (between tail and head). */
  private cursor: number;
  /** Messages read since the ring was created (the ticket of the last one read), lo/hi. */
  private readLo = 0;
  private readHi = 0;
  // Fields of the message `next` returned.
  op = 0;
  keyStart = 0;
  keyLen = 0;
  valueLen = 0;

  constructor(sab: SharedArrayBuffer) {
    this.ctrl = new Int32Array(sab, 0, CTRL_WORDS);
    this.cap = ringCapacity(sab);
    this.mask = this.cap - 1;
    this.data = new Uint8Array(sab, CTRL_BYTES, this.cap);
    this.dv = new DataView(sab, CTRL_BYTES, this.cap);
    this.tailPos = Atomics.load(this.ctrl, TAIL);
    this.cursor = this.tailPos;
  }

  /** The published head (load once per batch: everything below it is readable). */
  head(): number { return Atomics.load(this.ctrl, HEAD); }

  /**
   * Reads the message at the cursor if it lies below `head`; fills `op`, `keyStart`,
   * `keyLen`, `valueLen` and returns true, or returns false at `head`. Pads are skipped.
   */
  next(head: number): boolean {
    for (;;) {
      if (this.cursor === head) return false;
      const at = this.cursor & this.mask;
      const len = this.dv.getUint32(at, true);
      const op = this.dv.getUint8(at + 4);
      assert(len >= 8 && (len & 7) === 0 && len <= this.cap - at, `ring message length ${len} at ${at} is well formed`);
      this.cursor = (this.cursor + len) | 0;
      if (op === OP_PAD) continue;
      this.op = op;
      this.keyLen = this.dv.getUint32(at + 8, true);
      this.valueLen = this.dv.getUint32(at + 12, true);
      this.keyStart = at + MSG_HEADER;
      if (++this.readLo === TWO_32) { this.readLo = 0; this.readHi++; }
      return true;
    }
  }

  /** Frees everything read so far for producers, and wakes the ones waiting for room. */
  release(): void {
    if (this.tailPos === this.cursor) return;
    this.tailPos = this.cursor;
    Atomics.store(this.ctrl, TAIL, this.tailPos);
    Atomics.notify(this.ctrl, TAIL);
  }

  /** Low 32 bits of the ticket of the last message read (what DURABLE gets once it is synced). */
  lastTicketLo(): number { return this.readLo | 0; }
  lastTicket(): number { return this.readHi * TWO_32 + this.readLo; }
}
