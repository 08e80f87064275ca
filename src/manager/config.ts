import { join } from 'node:path';
import type { U64Like } from '../entry/entry.js';
import { PerCoreWalError } from '../errors/errors.js';
import { realFs, type WalFs } from '../io/fs.js';
import type { CoreWalWriterOptions } from '../writer/writer.js';

/** The placeholder a segment pattern must contain; replaced by the decimal core id. */
export const CORE_ID_PLACEHOLDER = '{core_id}';
export const DEFAULT_SEGMENT_PATTERN = 'wal-{core_id}.log';
export const MAX_CORES = 65536;

/**
 * Writer settings every segment of a WAL shares. They live in the config so that
 * everything opening the WAL (manager, recovery, tools) sees the same disk (`fs`) and
 * the same record size limit.
 */
export interface SegmentWriterOptions {
  /** Bytes buffered per core before a write(2). Default 64 KiB. */
  bufferSize?: number;
  /** Zero-fill ahead of the write position, bytes (0 turns it off). Default 4 MiB. */
  preallocate?: number;
  /** Largest payload accepted. Default 256 MiB. */
  maxRecordSize?: number;
  /** File layer, e.g. a simulated disk in tests. Default Node's fs. */
  fs?: WalFs;
  /** Wall clock in ns for every writer, e.g. a clock that steps back in tests. */
  clock?: () => bigint | number;
}

export interface PerCoreWalConfigOptions extends SegmentWriterOptions {
  /** File name of each segment inside `baseDir`; must contain `{core_id}`. Default `wal-{core_id}.log`. */
  segmentPattern?: string;
}

/**
 * Where a WAL lives: its directory, how many cores (segments) it has and how segment
 * files are named, plus the writer settings all its segments share.
 *
 * @example
 * ```ts
 * const config = new PerCoreWalConfig('/data/wal', 4);
 * config.segmentPath(2); // '/data/wal/wal-2.log'
 * const custom = new PerCoreWalConfig('/data/wal', 4, { segmentPattern: 'core-{core_id}.seg', preallocate: 0 });
 * ```
 */
export class PerCoreWalConfig {
  readonly baseDir: string;
  readonly numCores: number;
  readonly segmentPattern: string;
  readonly bufferSize: number | undefined;
  readonly preallocate: number | undefined;
  readonly maxRecordSize: number | undefined;
  /** The file layer every segment of this WAL is accessed through. */
  readonly fs: WalFs;
  readonly clock: (() => bigint | number) | undefined;

  constructor(baseDir: string, numCores: number, options: PerCoreWalConfigOptions = {}) {
    if (typeof baseDir !== 'string' || baseDir.length === 0) {
      throw new PerCoreWalError('INVALID_ARGUMENT', `baseDir must be a non-empty string, got ${describe(baseDir)}`);
    }
    if (typeof numCores !== 'number' || !Number.isInteger(numCores) || numCores < 1 || numCores > MAX_CORES) {
      throw new PerCoreWalError('INVALID_ARGUMENT', `numCores must be an integer in [1, ${MAX_CORES}], got ${describe(numCores)}`);
    }
    if (options === null || typeof options !== 'object') {
      throw new PerCoreWalError('INVALID_ARGUMENT', 'options must be an object');
    }
    const pattern = options.segmentPattern ?? DEFAULT_SEGMENT_PATTERN;
    validatePattern(pattern);
    for (const k of ['bufferSize', 'preallocate', 'maxRecordSize'] as const) {
      const v = options[k];
      if (v !== undefined && (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0)) {
        throw new PerCoreWalError('INVALID_ARGUMENT', `${k} must be a non-negative integer, got ${describe(v)}`);
      }
    }
    if (options.clock !== undefined && typeof options.clock !== 'function') {
      throw new PerCoreWalError('INVALID_ARGUMENT', 'clock must be a function returning nanoseconds');
    }
    this.baseDir = baseDir;
    this.numCores = numCores;
    this.segmentPattern = pattern;
    this.bufferSize = options.bufferSize;
    this.preallocate = options.preallocate;
    this.maxRecordSize = options.maxRecordSize;
    this.fs = options.fs ?? realFs;
    this.clock = options.clock;
    Object.freeze(this);
  }

  /** The segment file of `coreId`. Fails with `INVALID_CORE_ID` outside `[0, numCores)`. */
  segmentPath(coreId: number): string {
    this.checkCoreId(coreId);
    return join(this.baseDir, this.segmentPattern.split(CORE_ID_PLACEHOLDER).join(String(coreId)));
  }

  /** Throws `INVALID_CORE_ID` unless `coreId` is an integer in `[0, numCores)`. */
  checkCoreId(coreId: unknown): asserts coreId is number {
    if (typeof coreId !== 'number' || !Number.isInteger(coreId) || coreId < 0 || coreId >= this.numCores) {
      throw new PerCoreWalError('INVALID_CORE_ID', `core id must be an integer in [0, ${this.numCores}), got ${describe(coreId)}`,
        typeof coreId === 'number' && Number.isInteger(coreId) ? { coreId } : {});
    }
  }

  /** Options for the writer of one segment: the shared settings plus per-core extras. */
  writerOptions(extra: { epoch?: U64Like; minSequence?: U64Like; minTimestampNs?: U64Like } = {}): CoreWalWriterOptions {
    const o: CoreWalWriterOptions = { fs: this.fs };
    if (this.bufferSize !== undefined) o.bufferSize = this.bufferSize;
    if (this.preallocate !== undefined) o.preallocate = this.preallocate;
    if (this.maxRecordSize !== undefined) o.maxRecordSize = this.maxRecordSize;
    if (this.clock !== undefined) o.clock = this.clock;
    if (extra.epoch !== undefined) o.epoch = extra.epoch;
    if (extra.minSequence !== undefined) o.minSequence = extra.minSequence;
    if (extra.minTimestampNs !== undefined) o.minTimestampNs = extra.minTimestampNs;
    return o;
  }
}

function validatePattern(pattern: unknown): asserts pattern is string {
  if (typeof pattern !== 'string' || !pattern.includes(CORE_ID_PLACEHOLDER)) {
    throw new PerCoreWalError('INVALID_ARGUMENT', `segmentPattern must be a string containing ${CORE_ID_PLACEHOLDER}, got ${describe(pattern)}`);
  }
  // Segments sit directly in baseDir: create() makes that one directory and fsyncs it.
  if (pattern.includes('/') || pattern.includes('\\') || pattern.includes('\0')) {
    throw new PerCoreWalError('INVALID_ARGUMENT', `segmentPattern must be a file name without path separators, got ${JSON.stringify(pattern)}`);
  }
}

function describe(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'bigint') return `${v}n`;
  return v === null ? 'null' : typeof v === 'object' || typeof v === 'function' ? typeof v : String(v);
}
