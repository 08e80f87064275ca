/**
 * corewal/testing — tools for testing code built on corewal (and corewal itself):
 * a StorageIo wrapper that injects failures, short writes, held, delayed and reordered
 * completions.
 * @packageDocumentation
 */
export { FaultInjectingStorageIo } from './fault-injecting-storage-io.js';
export type {
  AfterFailure, FaultErrno, FaultHandle, FaultInjectingStorageIoOptions, FaultLogEntry, FaultMatch, FaultOp, FaultSpec,
  HoldHandle, ReorderMode,
} from './fault-injecting-storage-io.js';
