/**
 * corewal/testing — tools for testing code built on corewal (and corewal itself) against
 * crashes and I/O failures: a simulated disk that can lose power, fault-injecting file
 * layers, a StorageIo wrapper that injects failures, short writes, held, delayed and
 * reordered completions, and a seeded random generator for replayable tests.
 * @packageDocumentation
 */
export { FaultInjectingStorageIo } from './fault-injecting-storage-io.js';
export type {
  AfterFailure, FaultErrno, FaultHandle, FaultInjectingStorageIoOptions, FaultLogEntry, FaultMatch, FaultOp, FaultSpec,
  HoldHandle, ReorderMode,
} from './fault-injecting-storage-io.js';
export { Rng } from './rng.js';
export { SimDisk, SimPowerLoss } from './sim-disk.js';
export type { SimDiskOptions, CrashOptions, CrashReport } from './sim-disk.js';
export { FaultyFs } from './faulty-fs.js';
export { FsFaultInjector } from './faults.js';
export type { FsFaultRule, FsFaultHandle, FsCall, FsOp } from './faults.js';
export { systemError } from './system-error.js';
export type { FsFaultCode, SimSystemError } from './system-error.js';
