import { PerCoreWalConfig } from '../../src/manager/config.js';
import { PerCoreWalManager } from '../../src/manager/manager.js';
import { PerCoreWalReader } from '../../src/reader/reader.js';
import { cpuMs, type BenchCase, type BenchContext, type Metric } from '../harness.js';
import { verifyBackend } from '../../src/record/verify.js';
import { rawReadBatchCrc, rawReadCrc } from '../raw-read.js';

/**
 * Merge throughput: a WAL of k segments totalling 1 GiB (COREWAL_BENCH_MERGE_MB to
 * change it; smoke mode: 4 MiB) merged by the streaming k-way merge, against reading
 * and CRC-checking the same files raw, record by record, in the same run.
 *
 * Two raw baselines. The target (issue 4: merge / raw read+CRC >= 0.7x in CPU time) is
 * set against `raw read+CRC` (bench/raw-read.ts rawReadCrc): 256 KiB reads and the
 * JavaScript table CRC per record, the loop a Node user writes by hand. The reader now
 * checks CRCs a run at a time in native code (verifyFrames), which that loop does not,
 * so the merge can beat it; `raw read + native batch CRC (informational)` is the same
 * loop with the same batch check, the floor for a reader that uses it, so that both
 * comparisons are in view. It is not the target's baseline. Peak RSS
 * during the merge shows that memory does not grow with the WAL. Reading the segments
 * one after the other with PerCoreWalReader (decode included, no heap) is reported too:
 * it separates the merge's own cost from the reader's.
 *
 * Entries build their key and value on first use (see PerCoreWalEntry), and the merge
 * figure touches neither. A second merge reads every entry's key and value, for what a
 * consumer that looks at everything pays.
 */
const KEY = 16;
/**
 * The baseline's read size: its fastest here (256 KiB and 1 MiB alike; 64 KiB, the merge's
 * block, costs it ~8% more CPU in reads), so the baseline is never slowed to the merge's.
 */
const RAW_BLOCK = 256 << 10;
const VALUE = 100;
/** The informational baseline's name: says so when the addon is not built and the batch is TypeScript. */
const BATCH = verifyBackend.native ? 'native batch CRC' : 'TypeScript batch CRC (no native addon)';

function totalBytes(ctx: BenchContext): number {
  const mb = Number(process.env['COREWAL_BENCH_MERGE_MB'] ?? (ctx.smoke ? 4 : 1024));
  if (!Number.isFinite(mb) || mb <= 0) throw new Error(`COREWAL_BENCH_MERGE_MB must be a positive number, got ${process.env['COREWAL_BENCH_MERGE_MB']}`);
  return Math.floor(mb * 1024 * 1024);
}

/** Round-robin appends over the cores, the epoch advancing every 64k entries. */
function fill(m: PerCoreWalManager, bytes: number): number {
  const k = m.numCores();
  const key = Buffer.alloc(KEY, 0x6b);
  const value = Buffer.alloc(VALUE, 0x76);
  let n = 0;
  while (m.totalSize() < bytes) {
    for (let c = 0; c < k; c++) {
      key.writeUInt32LE(n, 0);
      m.writer(c).appendPut(key, value);
      n++;
    }
    if ((n & 0xffff) < k) m.advanceEpoch();
  }
  for (let c = 0; c < k; c++) m.writer(c).flush();
  return n;
}

/** Every segment read and decoded one after the other: the merge's floor, without the heap. */
function readerOnly(paths: string[]): number {
  let n = 0;
  for (let c = 0; c < paths.length; c++) {
    const r = PerCoreWalReader.open(c, paths[c]!);
    try {
      while (r.readNext().kind === 'entry') n++;
    } finally {
      r.close();
    }
  }
  return n;
}

function mergeCase(k: number): BenchCase {
  return {
    group: 'merge',
    name: `${k} segments`,
    repeat: 1,
    run(ctx: BenchContext): Metric[] {
      const size = totalBytes(ctx);
      const m = PerCoreWalManager.create(new PerCoreWalConfig(ctx.dir, k, { preallocate: 0, bufferSize: 1 << 20 }));
      try {
        const written = fill(m, size);
        const paths = Array.from({ length: k }, (_, c) => m.segmentPath(c));

        let t = performance.now();
        let u = cpuMs();
        const raw = rawReadCrc(paths, RAW_BLOCK);
        const rawSecs = (performance.now() - t) / 1000;
        const rawCpu = cpuMs() - u;
        if (raw.records !== written) throw new Error(`raw read found ${raw.records} records, ${written} written`);

        t = performance.now();
        u = cpuMs();
        const rawBatch = rawReadBatchCrc(paths, RAW_BLOCK);
        const rawBatchSecs = (performance.now() - t) / 1000;
        const rawBatchCpu = cpuMs() - u;
        if (rawBatch.records !== written || rawBatch.bytes !== raw.bytes) throw new Error(`raw read with batch CRC found ${rawBatch.records} records, ${written} written`);

        t = performance.now();
        if (readerOnly(paths) !== written) throw new Error('reader found a different number of entries');
        const readerSecs = (performance.now() - t) / 1000;

        const rssBefore = process.memoryUsage.rss();
        let peak = rssBefore;
        let merged = 0;
        t = performance.now();
        u = cpuMs();
        for (const _ of m.mergeIter()) {
          if ((++merged & 0xffff) === 0) { const r = process.memoryUsage.rss(); if (r > peak) peak = r; }
        }
        const mergeSecs = (performance.now() - t) / 1000;
        const mergeCpu = cpuMs() - u;
        peak = Math.max(peak, process.memoryUsage.rss());
        if (merged !== written) throw new Error(`merge yielded ${merged} entries, ${written} written`);

        let touched = 0, bytes = 0;
        t = performance.now();
        for (const e of m.mergeIter()) {
          bytes += e.key()!.length + e.value()!.length;
          touched++;
        }
        const touchSecs = (performance.now() - t) / 1000;
        if (touched !== written || bytes !== written * (KEY + VALUE)) throw new Error('merge with keys and values read found different entries');

        const MB = 1e6, MiB = 1024 * 1024;
        return [
          { name: 'WAL size', value: raw.bytes / MiB, unit: 'MiB' },
          { name: 'entries', value: merged, unit: 'entries' },
          { name: 'raw read+CRC', value: raw.bytes / MB / rawSecs, unit: 'MB/s' },
          { name: `raw read + ${BATCH} (informational)`, value: raw.bytes / MB / rawBatchSecs, unit: 'MB/s' },
          { name: 'reader+decode, no merge', value: raw.bytes / MB / readerSecs, unit: 'MB/s' },
          { name: 'merge', value: raw.bytes / MB / mergeSecs, unit: 'MB/s' },
          { name: 'merge entries/s', value: merged / mergeSecs, unit: 'entries/s' },
          { name: 'merge / raw read+CRC', value: rawSecs / mergeSecs, unit: 'x' },
          { name: 'merge / raw read+CRC, CPU time', value: rawCpu / mergeCpu, unit: 'x' },
          { name: `merge / raw read + ${BATCH}, CPU time (informational)`, value: rawBatchCpu / mergeCpu, unit: 'x' },
          { name: 'merge / reader+decode', value: readerSecs / mergeSecs, unit: 'x' },
          { name: 'merge, every key and value read', value: raw.bytes / MB / touchSecs, unit: 'MB/s' },
          { name: 'merge, every key and value read / raw read+CRC', value: rawSecs / touchSecs, unit: 'x' },
          { name: 'peak RSS during merge', value: peak / MiB, unit: 'MiB' },
          { name: 'RSS growth during merge', value: (peak - rssBefore) / MiB, unit: 'MiB' },
        ];
      } finally {
        m.close();
      }
    },
  };
}

export const cases: BenchCase[] = [2, 4, 8].map(mergeCase);
