/**
 * Exit codes scripts can rely on. Anything that is not a usage error and not success is 1:
 * corruption, a failed verification, a refused repair, or an I/O error while reading.
 */
export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;

export type CliErrorCode =
  | 'USAGE'
  | 'NOT_FOUND'
  | 'NOT_A_DIRECTORY'
  | 'NO_CONFIRMATION'
  | 'UNAVAILABLE';

/** A failure of the command line itself (as opposed to one the library reports). */
export class CliError extends Error {
  readonly code: CliErrorCode;
  readonly exitCode: number;
  readonly path?: string;

  constructor(code: CliErrorCode, message: string, details: { path?: string; cause?: unknown } = {}) {
    super(message, details.cause !== undefined ? { cause: details.cause } : undefined);
    this.name = 'CliError';
    this.code = code;
    this.exitCode = code === 'UNAVAILABLE' ? EXIT_FAILED : EXIT_USAGE;
    if (details.path !== undefined) this.path = details.path;
  }
}

/** Records a command's exit code; the worst one wins when several parts report. */
export function setExitCode(code: number): void {
  process.exitCode = Math.max(typeof process.exitCode === 'number' ? process.exitCode : 0, code);
}
