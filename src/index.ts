/**
 * corewal — a per-core write-ahead log for Node.js.
 * @packageDocumentation
 */
export { PerCoreWalError, StorageIoError } from './errors/errors.js';
export type { PerCoreWalErrorCode, StorageIoErrorCode, ErrorDetails } from './errors/errors.js';
export { PerCoreWalEntry } from './entry/entry.js';
export type { WalOperation, WalOperationType, U64Like } from './entry/entry.js';
export { FORMAT_VERSION } from './entry/codec.js';
export { RECORD_HEADER_SIZE, DEFAULT_MAX_RECORD_SIZE, encodeRecord } from './record/framing.js';
export { crc32c, crc32cJs, crc32cBackend } from './crc/crc32c.js';
export { Compaction, CoreWalWriter } from './writer/writer.js';
export type { CoreWalWriterOptions } from './writer/writer.js';
export { PerCoreWalReader } from './reader/reader.js';
export type { WalReadResult, PerCoreWalReaderOptions } from './reader/reader.js';
export { scanSegment } from './reader/scan.js';
export type { SegmentScan, TailState, ScanOptions } from './reader/scan.js';
export type { StorageIo, IoFd, IoCompletion } from './storage-io/types.js';
export { realFs } from './io/fs.js';
export type { WalFs } from './io/fs.js';
export { PerCoreWalConfig, DEFAULT_SEGMENT_PATTERN, CORE_ID_PLACEHOLDER, MAX_CORES } from './manager/config.js';
export type { PerCoreWalConfigOptions, SegmentWriterOptions } from './manager/config.js';
export { EpochRef } from './manager/epoch.js';
export { PerCoreWalManager } from './manager/manager.js';
export type { SegmentOpenReport, PerCoreWalOpenOptions, MergeIterOptions } from './manager/manager.js';
export { WalMergeIterator, mergeSegmentFiles } from './merge/merge.js';
export type { MergeSource, MergeOptions } from './merge/merge.js';
export { SyncStorageIo } from './storage-io/sync.js';
export type { SyncStorageIoOptions } from './storage-io/sync.js';
export { ThreadPoolStorageIo, nodeThreadPoolFs } from './storage-io/thread-pool.js';
export type { ThreadPoolStorageIoOptions, ThreadPoolFs } from './storage-io/thread-pool.js';
export { registerWriterSegment } from './storage-io/register.js';
export { GroupCommitLog } from './group-commit/group-commit-log.js';
export type { GroupCommitOptions, GroupCommitLogOptions, GroupCommitStats } from './group-commit/group-commit-log.js';
export { CheckpointStore } from './checkpoint/store.js';
export type { CheckpointStoreOptions, CreateCheckpointOptions, LoadedCheckpoint } from './checkpoint/store.js';
export type { CheckpointMetadata } from './checkpoint/format.js';
export { CHECKPOINT_VERSION } from './checkpoint/format.js';
export type { StateView } from './checkpoint/state.js';
export { PerCoreCheckpointCoordinator } from './checkpoint/coordinator.js';
export type { PerCoreCheckpointMetadata } from './checkpoint/coordinator.js';
export { PerCoreRecoveryManager, recoverPerCore } from './recovery/recovery.js';
export type {
  PerCoreRecoveredState, PerCoreRecoveryOptions, RecoveryProgress, StateChange, SegmentRecovery, SegmentStats, WalLayout,
} from './recovery/recovery.js';
export { RECOVERY_MODES } from './recovery/cursor.js';
export type { RecoveryMode, SegmentEnd, BadRecord } from './recovery/cursor.js';
export { inspectCheckpointDir, decodeCheckpointFile } from './checkpoint/files.js';
export type { CheckpointFileReport } from './checkpoint/files.js';
export { UringStorageIo } from './storage-io/uring.js';
export type { UringStorageIoOptions, UringStorageIoInfo, UringSupport } from './storage-io/uring.js';
export { CoreWalPool } from './worker/pool.js';
export type { CoreWalPoolOptions, PoolCoreReport } from './worker/pool.js';
export { CoreWalProducer } from './worker/producer.js';
export type { CoreWalProducerHandle, AppendOptions, BackpressureMode } from './worker/producer.js';
