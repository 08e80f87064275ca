/**
 * Every failure corewal reports is a {@link PerCoreWalError} (or, from a StorageIo
 * backend, a {@link StorageIoError}) with a stable string `code` that programs can
 * switch on; messages are for people and may change.
 *
 * @example
 * ```ts
 * try { writer.appendPut(key, value); }
 * catch (e) { if (e instanceof PerCoreWalError && e.code === 'POISONED') reopenThroughRecovery(); }
 * ```
 */
export type PerCoreWalErrorCode =
  | 'INVALID_ARGUMENT'
  | 'RECORD_TOO_LARGE'
  | 'INVALID_CORE_ID'
  | 'INVALID_POSITION'
  | 'EPOCH_MISMATCH'
  | 'IO'
  | 'POISONED'
  | 'CLOSED'
  | 'SYNC_IN_FLIGHT'
  | 'COMPACTION_IN_PROGRESS'
  | 'TORN_WRITE'
  | 'CHECKSUM_MISMATCH'
  | 'CORRUPTED'
  | 'INVALID_TAIL'
  | 'SEGMENT_NOT_FOUND'
  | 'CHECKPOINT_NOT_FOUND'
  | 'CHECKPOINT_INVALID'
  | 'DECODE'
  | 'WORKER_FAILED'
  | 'BACKPRESSURE'
  | 'ASSERTION';

export interface ErrorDetails {
  /** File the error concerns, where there is one. */
  path?: string;
  /** Byte position in that file, where there is one. */
  position?: number;
  /** Core the error concerns, where there is one. */
  coreId?: number;
  /** Positive OS error number (e.g. 5 for EIO), where the OS reported one. */
  errno?: number;
  /** The underlying error, e.g. the Node `SystemError`. */
  cause?: unknown;
}

/** The one error type of the log itself. `code` is stable; see {@link PerCoreWalErrorCode}. */
export class PerCoreWalError extends Error {
  readonly code: PerCoreWalErrorCode;
  readonly path?: string;
  readonly position?: number;
  readonly coreId?: number;
  readonly errno?: number;

  constructor(code: PerCoreWalErrorCode, message: string, details: ErrorDetails = {}) {
    super(message, details.cause !== undefined ? { cause: details.cause } : undefined);
    this.name = 'PerCoreWalError';
    this.code = code;
    if (details.path !== undefined) this.path = details.path;
    if (details.position !== undefined) this.position = details.position;
    if (details.coreId !== undefined) this.coreId = details.coreId;
    const errno = details.errno ?? errnoOf(details.cause);
    if (errno !== undefined) this.errno = errno;
  }
}

export type StorageIoErrorCode = 'QUEUE_FULL' | 'IO' | 'BAD_FD' | 'CLOSED' | 'BUFFER_EXHAUSTED' | 'UNSUPPORTED';

/** Errors raised synchronously by a StorageIo backend (submission side). */
export class StorageIoError extends Error {
  readonly code: StorageIoErrorCode;
  readonly errno?: number;
  constructor(code: StorageIoErrorCode, message: string, details: { errno?: number; cause?: unknown } = {}) {
    super(message, details.cause !== undefined ? { cause: details.cause } : undefined);
    this.name = 'StorageIoError';
    this.code = code;
    const errno = details.errno ?? errnoOf(details.cause);
    if (errno !== undefined) this.errno = errno;
  }
}

/** Node reports `errno` as a negative number on SystemError; corewal reports it positive. */
export function errnoOf(e: unknown): number | undefined {
  if (e !== null && typeof e === 'object' && 'errno' in e) {
    const n = (e as { errno: unknown }).errno;
    if (typeof n === 'number') return Math.abs(n);
  }
  return undefined;
}

/** Wraps an OS error from a file operation, naming the file and position. */
export function ioError(op: string, cause: unknown, path?: string, position?: number, coreId?: number): PerCoreWalError {
  const c = cause as { code?: string; message?: string };
  const where = path !== undefined ? ` on ${path}` : '';
  const at = position !== undefined ? ` at byte ${position}` : '';
  return new PerCoreWalError('IO', `${op} failed${where}${at}: ${c?.code ?? c?.message ?? String(cause)}`, {
    path, position, coreId, cause,
  });
}
