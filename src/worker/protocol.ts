import type { MessagePort } from 'node:worker_threads';
import { PerCoreWalError, type PerCoreWalErrorCode } from '../errors/errors.js';

/**
 * The shared-memory layout and the messages between a {@link CoreWalPool}, its core
 * workers and the producers on any thread. Internal: the layout can change between
 * versions; only threads of the same corewal build talk to each other.
 *
 * One `SharedArrayBuffer` per core: a control block of Int32 words, then the ring's data.
 * Words written by different threads sit 64 bytes apart so that producers publishing
 * `HEAD` and the worker publishing `TAIL`/`DURABLE` do not share a cache line.
 */
export const CTRL_BYTES = 256;
export const CTRL_WORDS = CTRL_BYTES / 4;

// Producer side (written under LOCK).
/** Spin lock between producers of several threads: 0 free, 1 held. */
export const LOCK = 0;
/** Bytes ever enqueued, as a wrapping u32 (the data offset is HEAD & mask). */
export const HEAD = 1;
/** Messages ever enqueued (the ticket of the newest), low and high 32 bits. */
export const TICKET_LO = 2;
export const TICKET_HI = 3;

// Worker side.
/** Bytes ever consumed (wrapping u32). Producers blocked on a full ring wait on it. */
export const TAIL = 16;
/** 1 while the worker is (about to be) asleep on WAKE: producers then ring it. */
export const SLEEPING = 17;
/**
 * The worker's doorbell: it sleeps on this word, and producers (when it sleeps) and the
 * pool (with a command) bump it before notifying. Sleeping on HEAD alone would lose a
 * command posted between the worker's last check and its wait.
 */
export const WAKE = 18;
/** Low 32 bits of the highest ticket made durable. Producers wait on it. */
export const DURABLE = 32;
/** Core state, see `STATE_*`. Changes are followed by a notify on DURABLE and TAIL. */
export const STATE = 33;
/** Error code of a failed core (index into `FAILURE_CODES`). */
export const FAILURE = 34;
/** Synced position of the segment (lo, hi) and a seqlock counter around them. */
export const SYNCED_LO = 35;
export const SYNCED_HI = 36;
export const SYNCED_SEQ = 37;

// Pool side.
/** Bumped by the pool when it posted a command on the worker's port. */
export const CMD = 48;

export const STATE_STARTING = 0;
export const STATE_RUNNING = 1;
// 2 was STATE_PAUSED: workers no longer stop consuming at a checkpoint barrier.
export const STATE_CLOSED = 3;
export const STATE_FAILED = 4;
/** Closing: nothing more is accepted; what is in the ring is still drained and synced. */
export const STATE_CLOSING = 5;

// Ring messages: [u32 length][u8 op][u8 0][u16 0][u32 keyLen][u32 valueLen] then key, value.
// Lengths are rounded up to 8 so every header is aligned.
export const MSG_HEADER = 16;
export const OP_PAD = 0;
export const OP_PUT = 1;
export const OP_DELETE = 2;
/** A commit: the "key" holds the encoded offsets and watermark (see `encodeCommitBody`). */
export const OP_COMMIT = 3;

export const DEFAULT_RING_BYTES = 4 * 1024 * 1024;
export const MIN_RING_BYTES = 4096;
export const MAX_RING_BYTES = 1 << 30;

/** Largest message a ring of `capacity` bytes takes: half of it, so a wrap always fits once drained. */
export function maxMessageBytes(capacity: number): number {
  return capacity >>> 1;
}

export function align8(n: number): number {
  return (n + 7) & ~7;
}

// Failure codes travel as a small integer in shared memory; the message arrives separately.
export const FAILURE_CODES: readonly PerCoreWalErrorCode[] = [
  'WORKER_FAILED', 'IO', 'POISONED', 'CORRUPTED', 'INVALID_TAIL', 'ASSERTION', 'CLOSED',
];

/** Commit bodies: u16 count, per source (u16 nameLen, name, i64 offset), u8 hasWatermark, i64 watermark. */
export function encodeCommitBody(offsets: ReadonlyMap<string, bigint>, watermark: bigint | null): Uint8Array {
  let n = 2 + 1 + 8;
  const names: Buffer[] = [];
  for (const name of offsets.keys()) {
    const b = Buffer.from(name, 'utf8');
    names.push(b);
    n += 2 + b.length + 8;
  }
  const out = Buffer.alloc(n);
  let at = out.writeUInt16LE(names.length, 0);
  let i = 0;
  for (const off of offsets.values()) {
    const b = names[i++]!;
    at = out.writeUInt16LE(b.length, at);
    at += b.copy(out, at);
    at = out.writeBigInt64LE(off, at);
  }
  at = out.writeUInt8(watermark === null ? 0 : 1, at);
  out.writeBigInt64LE(watermark ?? 0n, at);
  return out;
}

export function decodeCommitBody(body: Uint8Array): { offsets: Map<string, bigint>; watermark: bigint | null } {
  const b = Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  const count = b.readUInt16LE(0);
  let at = 2;
  const offsets = new Map<string, bigint>();
  for (let i = 0; i < count; i++) {
    const len = b.readUInt16LE(at);
    at += 2;
    const name = b.toString('utf8', at, at + len);
    at += len;
    offsets.set(name, b.readBigInt64LE(at));
    at += 8;
  }
  const has = b.readUInt8(at) === 1;
  return { offsets, watermark: has ? b.readBigInt64LE(at + 1) : null };
}

/** An error as it crosses a thread boundary (structured clone drops the class). */
export interface WireError {
  code: string;
  message: string;
  path?: string;
  position?: number;
  coreId?: number;
  errno?: number;
}

export function toWire(e: unknown): WireError {
  if (e instanceof PerCoreWalError) {
    return { code: e.code, message: e.message, path: e.path, position: e.position, coreId: e.coreId, errno: e.errno };
  }
  const err = e as { message?: string; stack?: string };
  return { code: 'WORKER_FAILED', message: err?.stack ?? err?.message ?? String(e) };
}

export function fromWire(w: WireError): PerCoreWalError {
  const code = (w.code as PerCoreWalErrorCode) ?? 'WORKER_FAILED';
  return new PerCoreWalError(code, w.message, { path: w.path, position: w.position, coreId: w.coreId, errno: w.errno });
}

/** What the pool passes to each core worker (`workerData`). */
export interface CoreWorkerData {
  coreId: number;
  path: string;
  /** The core's ring and control block. */
  ring: SharedArrayBuffer;
  /** The global epoch: an `EpochRef`'s memory (`ref.shared`). */
  epoch: SharedArrayBuffer;
  /** Commands from the pool (polled with `receiveMessageOnPort` while the worker blocks). */
  port: MessagePort;
  bufferSize?: number;
  preallocate?: number;
  maxRecordSize?: number;
}

/** Pool → worker, on `port`. */
export type PoolCommand =
  | { type: 'open'; epoch: bigint; minTimestampNs: bigint | null; minSequence: bigint | null }
  /** Append an epoch barrier at `epoch` (or above the writer's epoch), sync, report, and go on consuming. */
  | { type: 'barrier'; epoch: bigint }
  /** Drop the segment up to `position` (a barrier's end a durable checkpoint holds) with `CoreWalWriter.beginCompaction`. */
  | { type: 'compact'; position: number }
  | { type: 'stop' }
  /** Test hook: make the worker die the way a bug or an OS kill would. */
  | { type: 'fault'; how: 'exit' | 'throw' | 'hang' };

/** Worker → pool, on `port`. */
export type WorkerReport =
  | { type: 'scanned'; validEnd: number; fileLen: number; entries: number; tail: string; lastEpoch: bigint | null; lastTimestampNs: bigint | null; nextSequence: bigint | null }
  | { type: 'ready'; position: number; sequence: bigint; epoch: bigint }
  | { type: 'barrierDone'; position: number; syncedPosition: number; sequence: bigint; epoch: bigint }
  | { type: 'compactDone'; position: number }
  | { type: 'closed'; position: number; sequence: bigint }
  | { type: 'failed'; error: WireError };
