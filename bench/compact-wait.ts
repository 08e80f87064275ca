/**
 * How long a worker's appends wait while it compacts its segment after a checkpoint.
 *
 *   node dist/bench/compact-wait.js [--mb 0.5,2,8] [--rounds 3]
 *
 * One worker (every put goes to core 0). Per round: a checkpoint, during which (after it
 * is durable, before the compaction) `mb` MB are put after the barrier — what the
 * compaction copies — and then puts are made one after the other until the checkpoint
 * resolves. Reported per size: the compaction's duration (from the 'durable' step to the
 * 'compacted' step) and the longest latency of a put that overlapped it, next to the
 * longest of as many puts made with no compaction running (what a put costs anyway: an
 * fdatasync). Then, on a writer alone (`--writer`, this version only): how long
 * `compactFrom` blocks its thread, against the longest `step()` slice and the `finish()`
 * of `beginCompaction` on the same amount, with a few appends and syncs between slices.
 * Not a test: the figures depend on the disk and on what else runs.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { CheckpointStore, CoreWalPool, CoreWalWriter } from '../src/index.js';

const { values } = parseArgs({ options: {
  mb: { type: 'string', default: '0.5,2,8' }, rounds: { type: 'string', default: '3' }, writer: { type: 'boolean', default: false },
} });
const sizes = values.mb!.split(',').map(Number);
const rounds = Number(values.rounds);

interface Round { compactMs: number; maxPutMs: number; puts: number }

async function round(pool: CoreWalPool, id: bigint, mb: number): Promise<Round> {
  const value = Buffer.alloc(16 << 10, 0x61);
  const count = Math.ceil((mb * (1 << 20)) / value.length);
  let compactStart = 0, compactEnd = 0;
  let running = true;
  let maxPutMs = 0, puts = 0;
  let loop: Promise<void> | null = null;
  pool.setCheckpointHook(async (step) => {
    if (step === 'durable') {
      await Promise.all(Array.from({ length: count }, (_, i) => pool.put(`big${id}-${i}`, value)));
      loop = (async () => {
        for (let i = 0; running; i++) {
          const t = performance.now();
          await pool.put(`s${id}-${i}`, 'v');
          const end = performance.now();
          // Only puts that overlapped the compaction count.
          if (compactEnd === 0 || t < compactEnd) { maxPutMs = Math.max(maxPutMs, end - t); puts++; }
          if (process.env.CW_DEBUG) console.log(`put ${i}: ${(t - compactStart).toFixed(2)} +${(end - t).toFixed(2)} ms; compacted at ${compactEnd ? (compactEnd - compactStart).toFixed(2) : "-"}`);
        }
      })();
      compactStart = performance.now();
    }
    if (step === 'compacted') compactEnd = performance.now();
  });
  await pool.createCheckpoint(id);
  running = false;
  await loop;
  pool.setCheckpointHook(null);
  return { compactMs: compactEnd - compactStart, maxPutMs, puts };
}

/** The longest of `n` puts made one after the other, no checkpoint running. */
async function baseline(pool: CoreWalPool, n: number): Promise<number> {
  let max = 0;
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await pool.put(`base${i}`, 'v');
    max = Math.max(max, performance.now() - t);
  }
  return max;
}

/** A writer with `mb` MB after a barrier; returns it and the barrier's end. */
function filled(path: string, mb: number): { w: CoreWalWriter; from: number } {
  const w = CoreWalWriter.create(0, path);
  w.appendPut(Buffer.from('before'), Buffer.from('v'));
  w.appendEpochBarrier();
  w.sync();
  const from = w.position();
  const value = Buffer.alloc(16 << 10, 0x61);
  for (let i = 0; i < Math.ceil((mb * (1 << 20)) / value.length); i++) w.appendPut(Buffer.from(`k${i}`), value);
  w.sync();
  return { w, from };
}

async function writerRounds(root: string): Promise<void> {
  const f = (xs: number[]): string => xs.map((x) => x.toFixed(1)).join(' ');
  for (const mb of sizes) {
    const sync: number[] = [], slice: number[] = [], finish: number[] = [];
    for (let r = 0; r < rounds; r++) {
      const a = filled(join(root, `sync-${mb}-${r}.log`), mb);
      let t = performance.now();
      a.w.compactFrom(a.from);
      sync.push(performance.now() - t);
      a.w.close();
      const b = filled(join(root, `bg-${mb}-${r}.log`), mb);
      const c = b.w.beginCompaction(b.from);
      let longest = 0;
      for (let done = false, i = 0; !done; i++) {
        t = performance.now();
        done = c.step(1);
        longest = Math.max(longest, performance.now() - t);
        b.w.appendPut(Buffer.from(`during${i}`), Buffer.from('v'));
        b.w.sync();
      }
      slice.push(longest);
      await c.syncCopy(); // off the thread
      b.w.appendPut(Buffer.from('tail'), Buffer.from('v'));
      t = performance.now();
      c.finish();
      finish.push(performance.now() - t);
      b.w.close();
    }
    console.log(`writer, ${mb} MB: compactFrom blocks ${f(sync)} ms; beginCompaction: longest step ${f(slice)} ms, finish ${f(finish)} ms`);
  }
}

const root = mkdtempSync(join(tmpdir(), 'corewal-compact-wait-'));
try {
  const store = CheckpointStore.open({ checkpointDir: join(root, 'cp') });
  const pool = await CoreWalPool.start({ dir: join(root, 'wal'), workers: 1, checkpointStore: store });
  let id = 1n;
  await round(pool, id++, 0.1); // warm-up
  console.log(`no checkpoint running: longest of 20 puts ${(await baseline(pool, 20)).toFixed(1)} ms`);
  for (const mb of sizes) {
    const rs: Round[] = [];
    for (let r = 0; r < rounds; r++) rs.push(await round(pool, id++, mb));
    const f = (xs: number[]): string => xs.map((x) => x.toFixed(1)).join(' ');
    console.log(`${mb} MB after the barrier: compaction ${f(rs.map((r) => r.compactMs))} ms; ` +
      `longest put during it ${f(rs.map((r) => r.maxPutMs))} ms (${rs.map((r) => r.puts).join(' ')} puts)`);
  }
  await pool.close();
  if (values.writer) await writerRounds(root);
} finally {
  rmSync(root, { recursive: true, force: true });
}
