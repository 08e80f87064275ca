import { constants } from 'node:os';

/** The OS error codes the fault injectors produce. */
export type FsFaultCode = 'EIO' | 'ENOSPC' | 'EDQUOT' | 'EROFS' | 'EBADF' | 'ENOENT' | 'EEXIST' | 'EISDIR' | 'ENOTDIR' | 'ENOTEMPTY' | 'EINVAL';

const MESSAGES: Record<FsFaultCode, string> = {
  EIO: 'i/o error',
  ENOSPC: 'no space left on device',
  EDQUOT: 'quota exceeded',
  EROFS: 'read-only file system',
  EBADF: 'bad file descriptor',
  ENOENT: 'no such file or directory',
  EEXIST: 'file already exists',
  EISDIR: 'illegal operation on a directory',
  ENOTDIR: 'not a directory',
  ENOTEMPTY: 'directory not empty',
  EINVAL: 'invalid argument',
};

/** The shape of Node's `SystemError` for a failed fs call. */
export interface SimSystemError extends Error {
  code: FsFaultCode;
  /** Negative, as Node reports it (e.g. -5 for EIO). */
  errno: number;
  syscall: string;
  path?: string;
}

/**
 * An error shaped like the one Node's synchronous fs functions throw, so code under test
 * sees exactly what a real failure would give it (`code`, negative `errno`, `syscall`).
 *
 * @example
 * ```ts
 * throw systemError('EIO', 'fdatasync');   // EIO: i/o error, fdatasync   (errno -5)
 * ```
 */
export function systemError(code: FsFaultCode, syscall: string, path?: string): SimSystemError {
  const errno = -((constants.errno as Record<string, number>)[code] ?? 5);
  const where = path !== undefined ? ` '${path}'` : '';
  const e = new Error(`${code}: ${MESSAGES[code]}, ${syscall}${where}`) as SimSystemError;
  e.code = code;
  e.errno = errno;
  e.syscall = syscall;
  if (path !== undefined) e.path = path;
  return e;
}
