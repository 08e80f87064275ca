/**
 * The tables of the peers bench. 'lmdb-flush' is an aside: lmdb-js awaiting its flush
 * against awaiting only the put promise, which resolves before the data is on disk.
 */
export type TableId = 'durable' | 'non-durable' | 'read-back' | 'lmdb-flush';
export const MAIN_TABLES: readonly TableId[] = ['durable', 'non-durable', 'read-back'];

/**
 * One workload: records per commit from a single producer, or many concurrent producers
 * each awaiting its own one-record commit; or a read-back of `records` records.
 */
export interface Workload {
  table: TableId;
  /** Stable id, e.g. 'durable/100B/x64'. */
  id: string;
  label: string;
  valueSize: number;
  /** Records per commit (single producer). */
  perCommit: number;
  /** Concurrent producers (1: one producer issuing commits of `perCommit` records). */
  producers: number;
  /** Read-back only: records written beforehand, then read back. */
  records?: number;
}

/** A store opened for one measurement, in a fresh directory. */
export interface Store {
  /**
   * Writes the records in one commit (one transaction, batch or sync); done when the
   * commit is durable if the store was opened durable, handed to the OS otherwise.
   */
  commit(keys: readonly Buffer[], value: Buffer): Promise<void> | void;
  /** One record from one of many concurrent producers; settles when it is durable. */
  put(key: Buffer, value: Buffer): Promise<unknown> | void;
  close(): Promise<void> | void;
}

/** What a read-back found. */
export interface ReadBack {
  records: number;
  bytes: number;
}

export interface PeerSystem {
  /** Row label, e.g. 'lmdb-js'. */
  name: string;
  /** How the system is configured and what its durable commit waits for (for the report). */
  notes: string;
  /** Tables the system runs in (default {@link MAIN_TABLES}). */
  tables?: readonly TableId[];
  open(dir: string, durable: boolean): Promise<Store> | Store;
  /** Opens what `open(dir, true)` wrote (and closed) and reads every record. */
  readBack(dir: string): Promise<ReadBack> | ReadBack;
}

/** One system's figures for one workload. Ratios and latencies are null where they do not apply. */
export interface PeerRow {
  table: TableId;
  workloadId: string;
  workload: string;
  system: string;
  valueSize: number;
  perCommit: number;
  producers: number;
  /** Median over the repetitions. */
  recordsPerSec: number;
  /** Key + value bytes per second, MiB. */
  mibPerSec: number;
  commitsPerSec: number;
  /** Commit latency (a batch's, or one producer's record), ms; null for read-back. */
  p50Ms: number | null;
  p99Ms: number | null;
  /** recordsPerSec over lmdb-js's and over the fs loop's in the same workload. */
  vsLmdb: number | null;
  vsFs: number | null;
  /** records/s of every repetition. */
  runs: number[];
  /** Records counted (the last repetition) and its measured seconds. */
  records: number;
  secs: number;
}

export interface PeersDoc {
  date: string;
  machine: import('./machine.js').Machine;
  command: string;
  seconds: number;
  repeat: number;
  smoke: boolean;
  filter: string | null;
  /** Wall time of the whole run. */
  elapsedSecs: number;
  systems: { name: string; notes: string; tables: TableId[] }[];
  rows: PeerRow[];
}
