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
export { CoreWalWriter } from './writer/writer.js';
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
export { CoreWalPool } from './worker/pool.js';
export type { CoreWalPoolOptions, PoolCoreReport } from './worker/pool.js';
export { CoreWalProducer } from './worker/producer.js';
export type { CoreWalProducerHandle, AppendOptions, BackpressureMode } from './worker/producer.js';
