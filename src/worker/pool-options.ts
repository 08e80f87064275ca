import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { CheckpointStore } from '../checkpoint/store.js';
import type { U64Like } from '../entry/entry.js';
import { PerCoreWalError } from '../errors/errors.js';
import { realFs } from '../io/fs.js';
import { PerCoreWalConfig } from '../manager/config.js';
import type { EpochRef } from '../manager/epoch.js';
import { DEFAULT_MAX_RECORD_SIZE } from '../record/framing.js';
import { toU64 } from '../util/u64.js';
import type { BackpressureMode } from './producer.js';
import { DEFAULT_RING_BYTES } from './protocol.js';

export interface CoreWalPoolOptions {
  /** The WAL directory (created if missing). Segments are `segmentPattern` with `{core_id}` replaced. */
  dir: string;
  /** Worker threads = cores = segments. Default `os.availableParallelism()`; must match an existing WAL. */
  workers?: number;
  /** Segment file name; must contain `{core_id}`. Default `wal-{core_id}.log` (as `PerCoreWalConfig`). */
  segmentPattern?: string;
  /** Bytes of each core's ring: a power of two, default 4 MiB. A record takes at most half of it. */
  ringBytes?: number;
  /** Full ring: `'wait'` (default) for room, or `'reject'` with `BACKPRESSURE`. */
  backpressure?: BackpressureMode;
  /** Writer settings, as `CoreWalWriterOptions`. */
  bufferSize?: number;
  preallocate?: number;
  maxRecordSize?: number;
  /** Lowest epoch to resume at (e.g. a checkpoint's, when segments were reset). */
  minEpoch?: U64Like;
  /** Per core, the lowest next sequence (e.g. a checkpoint's, when segments were reset). */
  minSequences?: readonly U64Like[];
  /**
   * The global epoch to share (e.g. another component's `EpochRef`); it is raised to the
   * highest epoch found on disk. Default: a new one.
   */
  epochRef?: EpochRef;
  /**
   * The checkpoint store of this WAL, for {@link CoreWalPool.createCheckpoint}. Its latest
   * checkpoint's epoch and sequences are where cores resume whose segments it reset.
   */
  checkpointStore?: CheckpointStore;
}

/** @internal */
export interface CheckedOptions {
  dir: string;
  workers: number;
  config: PerCoreWalConfig;
  ringBytes: number;
  backpressure: BackpressureMode;
  bufferSize: number | undefined;
  preallocate: number | undefined;
  maxRecordSize: number;
  minEpoch: bigint;
  minSequences: bigint[] | undefined;
  epochRef: EpochRef | undefined;
  store: CheckpointStore | null;
}

export function checkOptions(options: CoreWalPoolOptions): CheckedOptions {
  if (options === null || typeof options !== 'object') throw new PerCoreWalError('INVALID_ARGUMENT', 'CoreWalPool.start takes an options object');
  const { dir } = options;
  if (typeof dir !== 'string' || dir.length === 0) throw new PerCoreWalError('INVALID_ARGUMENT', 'options.dir must be a non-empty string');
  const workers = options.workers ?? availableParallelism();
  if (!Number.isInteger(workers) || workers < 1 || workers > 65536) {
    throw new PerCoreWalError('INVALID_ARGUMENT', `workers must be an integer in [1, 65536], got ${String(workers)}`);
  }
  const bp = options.backpressure ?? 'wait';
  if (bp !== 'wait' && bp !== 'reject') throw new PerCoreWalError('INVALID_ARGUMENT', `backpressure must be 'wait' or 'reject', got ${String(bp)}`);
  for (const k of ['bufferSize', 'preallocate', 'maxRecordSize'] as const) {
    const v = options[k];
    if (v !== undefined && (!Number.isSafeInteger(v) || v < 0)) throw new PerCoreWalError('INVALID_ARGUMENT', `${k} must be a non-negative integer, got ${String(v)}`);
  }
  const store = options.checkpointStore ?? null;
  if (store !== null && !(store instanceof CheckpointStore)) throw new PerCoreWalError('INVALID_ARGUMENT', 'checkpointStore must be a CheckpointStore');
  let minSequences: bigint[] | undefined;
  if (options.minSequences !== undefined) {
    if (!Array.isArray(options.minSequences) || options.minSequences.length !== workers) {
      throw new PerCoreWalError('INVALID_ARGUMENT', `minSequences must hold one sequence per core (${workers})`);
    }
    minSequences = options.minSequences.map((s, c) => toU64(s, `minSequences[${c}]`));
  }
  let minEpoch = options.minEpoch === undefined ? 0n : toU64(options.minEpoch, 'minEpoch');
  // Segments a checkpoint reset resume at its epoch and sequences.
  const latest = store?.latestCheckpoint() ?? null;
  if (latest !== null) {
    if (latest.epoch > minEpoch) minEpoch = latest.epoch;
    const seqs = minSequences ?? new Array<bigint>(workers).fill(0n);
    for (let c = 0; c < workers && c < latest.nextSequences.length; c++) if (latest.nextSequences[c]! > seqs[c]!) seqs[c] = latest.nextSequences[c]!;
    minSequences = seqs;
  }
  return {
    dir, workers, config: new PerCoreWalConfig(dir, workers, { segmentPattern: options.segmentPattern }), ringBytes: options.ringBytes ?? DEFAULT_RING_BYTES, backpressure: bp,
    bufferSize: options.bufferSize, preallocate: options.preallocate, maxRecordSize: options.maxRecordSize ?? DEFAULT_MAX_RECORD_SIZE,
    minEpoch, minSequences, epochRef: options.epochRef, store,
  };
}

export function mkdirDurable(dir: string): void {
  if (existsSync(dir)) return;
  try {
    mkdirSync(dir, { recursive: true });
    realFs.fsyncDir(dirname(dir));
  } catch (e) {
    throw new PerCoreWalError('IO', `cannot create the WAL directory ${dir}: ${(e as Error).message}`, { path: dir, cause: e });
  }
}

/** A WAL written with more cores than this pool has would lose the extra segments from view. */
export function refuseExtraSegments(config: PerCoreWalConfig): void {
  const { baseDir: dir, numCores: workers } = config;
  const [pre, post] = config.segmentPattern.split('{core_id}') as [string, string];
  for (const f of readdirSync(dir)) {
    if (!f.startsWith(pre) || !f.endsWith(post)) continue;
    const id = f.slice(pre.length, f.length - post.length);
    if (/^\d+$/.test(id) && Number(id) >= workers) {
      throw new PerCoreWalError('INVALID_ARGUMENT',
        `${join(dir, f)} belongs to core ${id}, but the pool was started with ${workers} workers; start it with at least ${Number(id) + 1}`,
        { path: join(dir, f), coreId: Number(id) });
    }
  }
}
