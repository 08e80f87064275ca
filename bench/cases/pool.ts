import { join } from 'node:path';
import { PerCoreWalConfig } from '../../src/manager/config.js';
import { PerCoreWalManager } from '../../src/manager/manager.js';
import { CoreWalPool } from '../../src/worker/pool.js';
import { coreForKey } from '../../src/worker/route.js';
import type { BenchCase, BenchContext, Metric } from '../harness.js';

const VALUE = Buffer.alloc(100, 0x61);
const IN_FLIGHT = 256;

/** Keys made once, outside the measurement: the producers' own work is not what is measured. */
function keys(n: number): Buffer[] {
  return Array.from({ length: n }, (_, i) => Buffer.from(`key-${String(i).padStart(8, '0')}`));
}

/**
 * `IN_FLIGHT` producers, each awaiting its durable append before the next: the load of a
 * server acknowledging requests only once they are durable.
 */
async function drive(seconds: number, ks: Buffer[], put: (key: Buffer) => Promise<unknown>): Promise<number> {
  let n = 0;
  let stop = false;
  const start = performance.now();
  const deadline = start + seconds * 1000;
  const lane = async (me: number) => {
    for (let i = me; !stop; i += IN_FLIGHT) {
      await put(ks[i % ks.length]!);
      n++;
      if ((n & 255) === 0 && performance.now() >= deadline) stop = true;
    }
  };
  const timer = setTimeout(() => { stop = true; }, seconds * 1000);
  await Promise.all(Array.from({ length: IN_FLIGHT }, (_, i) => lane(i)));
  clearTimeout(timer);
  return n / ((performance.now() - start) / 1000);
}

async function poolRate(ctx: BenchContext, workers: number, ks: Buffer[]): Promise<number> {
  const pool = await CoreWalPool.start({ dir: join(ctx.dir, `pool-${workers}`), workers });
  try {
    await drive(Math.min(0.2, ctx.seconds / 4), ks, (k) => pool.put(k, VALUE)); // warm-up: JIT, preallocation
    return await drive(ctx.seconds, ks, (k) => pool.put(k, VALUE));
  } finally {
    await pool.close();
  }
}

/**
 * The same load on one thread: a `PerCoreWalManager` with as many segments, appends
 * collected from the event loop and group-committed by one `syncAll()` per turn — what a
 * Node user builds without worker threads. Its fdatasyncs block the event loop.
 */
async function managerRate(ctx: BenchContext, cores: number, ks: Buffer[]): Promise<number> {
  const wal = PerCoreWalManager.create(new PerCoreWalConfig(join(ctx.dir, `manager-${cores}`), cores));
  let waiting: (() => void)[] = [];
  let scheduled = false;
  const commit = () => {
    scheduled = false;
    const batch = waiting;
    waiting = [];
    wal.syncAll();
    for (const r of batch) r();
  };
  const put = (key: Buffer) => {
    wal.writer(coreForKey(key, cores)).appendPut(key, VALUE);
    if (!scheduled) { scheduled = true; setImmediate(commit); }
    return new Promise<void>((resolve) => waiting.push(resolve));
  };
  try {
    await drive(Math.min(0.2, ctx.seconds / 4), ks, put);
    return await drive(ctx.seconds, ks, put);
  } finally {
    wal.close();
  }
}

async function scaling(ctx: BenchContext): Promise<Metric[]> {
  const ks = keys(ctx.smoke ? 4096 : 1 << 20);
  const p1 = await poolRate(ctx, 1, ks);
  const p2 = await poolRate(ctx, 2, ks);
  const p4 = await poolRate(ctx, 4, ks);
  const m2 = await managerRate(ctx, 2, ks);
  return [
    { name: 'pool, 1 worker', value: p1, unit: 'durable appends/s' },
    { name: 'pool, 2 workers', value: p2, unit: 'durable appends/s' },
    { name: 'pool, 4 workers', value: p4, unit: 'durable appends/s' },
    { name: 'single-thread PerCoreWalManager, 2 segments', value: m2, unit: 'durable appends/s' },
    { name: 'ratio 2 workers / 1 worker', value: p2 / p1, unit: 'x' },
    { name: 'ratio 4 workers / 1 worker', value: p4 / p1, unit: 'x' },
    { name: 'ratio 2 workers / single-thread manager', value: p2 / m2, unit: 'x' },
  ];
}

export const cases: BenchCase[] = [
  { group: 'thread-per-core pool', name: `100 B values, ${IN_FLIGHT} producers in flight`, run: scaling },
];
