/**
 * The benchmark harness: every file in bench/cases exports `cases: BenchCase[]`.
 * A case measures corewal and its raw baseline in the same process and reports
 * figures; the harness repeats it, takes median and min–max, and writes JSON and a
 * markdown table. Speed is never asserted: the smoke mode (used by `npm test`) only
 * checks that every case runs and reports numbers.
 */
export interface BenchContext {
  /** Seconds each measured run should last (smoke mode: a small fraction). */
  seconds: number;
  /** True in the short smoke mode: use small data sets. */
  smoke: boolean;
  /** A fresh temporary directory for this run of the case; removed afterwards. */
  dir: string;
}

/** One figure: a name (e.g. 'corewal records/s'), a value and its unit. */
export interface Metric {
  name: string;
  value: number;
  unit: string;
}

export interface BenchCase {
  /** Table the case belongs to, e.g. 'append', 'sync', 'storage-io'. */
  group: string;
  /** Row name, e.g. '100 B, no sync'. */
  name: string;
  /** Runs once and returns its figures. Ratios against the baseline are figures too. */
  run(ctx: BenchContext): Promise<Metric[]> | Metric[];
  /** Repetitions (default 3; smoke mode runs once). */
  repeat?: number;
}

export interface CaseResult {
  group: string;
  name: string;
  metrics: { name: string; unit: string; median: number; min: number; max: number; runs: number[] }[];
}

/** Runs `fn` repeatedly for about `seconds`; returns iterations done and the elapsed seconds. */
export function timed(seconds: number, batch: number, fn: (n: number) => void): { ops: number; secs: number } {
  const start = performance.now();
  let ops = 0;
  const deadline = start + seconds * 1000;
  do {
    fn(batch);
    ops += batch;
  } while (performance.now() < deadline);
  return { ops, secs: (performance.now() - start) / 1000 };
}

/** CPU time of this process (user + system), ms: steadier than wall time on a shared machine. */
export function cpuMs(): number {
  const c = process.cpuUsage();
  return (c.user + c.system) / 1000;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}
