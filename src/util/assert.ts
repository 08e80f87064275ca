import { PerCoreWalError } from '../errors/errors.js';

/**
 * Internal invariant check. A failure here is a corewal bug, never a user error:
 * it stops the operation before a wrong byte reaches the disk.
 */
export function assert(condition: boolean, message: string): asserts condition {
  if (!condition) throw new PerCoreWalError('ASSERTION', `corewal invariant violated: ${message}`);
}
