import { constants } from 'node:os';
import { errnoOf, PerCoreWalError, StorageIoError } from '../errors/errors.js';
import type { IoCompletion, IoFd } from './types.js';

/** errno values as this platform numbers them. */
export const EIO = constants.errno.EIO;
export const ENOSPC = constants.errno.ENOSPC;
export const ECANCELED = constants.errno.ECANCELED;
export const EBADF = constants.errno.EBADF;

/** Default bound on operations submitted and not yet handed out by `pollCompletions`. */
export const DEFAULT_MAX_QUEUED = 65536;

/** The negative errno a completion reports for a thrown OS error (EIO when it has none). */
export function negErrno(e: unknown): number {
  const n = errnoOf(e);
  return n !== undefined && n > 0 ? -n : -EIO;
}

/**
 * A read-only block of zeros, shared by every writer of preallocated space. Nothing may
 * ever write into it: backends hand slices of it to the kernel concurrently.
 */
const ZERO_BLOCK = Buffer.alloc(1 << 20);
export const ZERO_BLOCK_SIZE = ZERO_BLOCK.length;

/** `n` (<= ZERO_BLOCK_SIZE) zero bytes, without allocating their storage. */
export function zeroSlice(n: number): Buffer {
  return ZERO_BLOCK.subarray(0, n);
}

/** Argument checks shared by backends: bad arguments fail before anything is queued. */
export function checkData(data: unknown): asserts data is Uint8Array {
  if (!(data instanceof Uint8Array)) {
    throw new PerCoreWalError('INVALID_ARGUMENT', `data must be a Uint8Array (or Buffer), got ${data === null ? 'null' : typeof data}`);
  }
}

export function checkOffset(offset: unknown, name = 'offset'): asserts offset is number {
  if (typeof offset !== 'number' || !Number.isSafeInteger(offset) || offset < 0) {
    throw new PerCoreWalError('INVALID_POSITION', `${name} must be a non-negative safe integer, got ${String(offset)}`);
  }
}

export function badFd(fd: IoFd | number, why = 'not registered'): StorageIoError {
  return new StorageIoError('BAD_FD', `fd ${fd} is ${why} with this StorageIo`);
}

export function closedError(backend: string): StorageIoError {
  return new StorageIoError('CLOSED', `${backend} is closed`);
}

export function queueFull(backend: string, limit: number): StorageIoError {
  return new StorageIoError('QUEUE_FULL', `${backend} queue is full (${limit} operations submitted and not yet polled); poll completions first`);
}

export function checkOsFd(fd: unknown): asserts fd is number {
  if (typeof fd !== 'number' || !Number.isInteger(fd) || fd < 0) throw new StorageIoError('BAD_FD', `registerFd takes an open OS file descriptor, got ${String(fd)}`);
}

export function checkLimit(value: unknown, name: string, min: number): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min) {
    throw new PerCoreWalError('INVALID_ARGUMENT', `${name} must be an integer >= ${min}, got ${String(value)}`);
  }
  return value;
}

/**
 * The size of an fd being registered, where its append cursor starts. A failed fstat
 * means it is no open fd: `BAD_FD`.
 */
export function registeredFdSize(fs: { fstatSync(fd: number): { size: number } }, fd: number): number {
  try {
    return fs.fstatSync(fd).size;
  } catch (e) {
    throw new StorageIoError('BAD_FD', `registerFd: fstat of fd ${fd} failed: ${(e as Error).message}`, { cause: e });
  }
}

/**
 * Hands the staged completions (`tok[i]` finished with `res[i]`) to `out` in staging
 * order and empties the stage; returns how many it handed out.
 */
export function drainCompletions(tok: number[], res: number[], out: IoCompletion[]): number {
  const n = tok.length;
  for (let i = 0; i < n; i++) out.push({ token: tok[i]!, result: res[i]! });
  tok.length = 0;
  res.length = 0;
  return n;
}
