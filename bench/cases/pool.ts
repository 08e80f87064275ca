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
 * `lanes` producers, each awaiting its durable append before the next: the load of a
 * server acknowledging requests only once they are durable. Lane `i` is told its number.
 */
async function drive(
  seconds: number, lanes: number, ks: Buffer[], put: (key: Buffer, lane: number) => Promise<unknown>,
): Promise<{ n: number; secs: number }> {
  let n = 0;
  let stop = false;
  const start = performance.now();
  const deadline = start + seconds * 1000;
  const lane = async (me: number) => {
    for (let i = me; !stop; i += lanes) {
      await put(ks[i % ks.length]!, me);
      n++;
      if ((n & 255) === 0 && performance.now() >= deadline) stop = true;
    }
  };
  const timer = setTimeout(() => { stop = true; }, seconds * 1000);
  await Promise.all(Array.from({ length: lanes }, (_, i) => lane(i)));
  clearTimeout(timer);
  return { n, secs: (performance.now() - start) / 1000 };
}

interface Engine {
  name: string;
  lanes: number;
  put: (key: Buffer, lane: number) => Promise<unknown>;
  close: () => Promise<void> | void;
  appends: number;
  secs: number;
}

/**
 * `perCore`: every core gets its own `IN_FLIGHT` producers, each sticking to its core (a
 * server whose connections are partitioned by core). Otherwise `IN_FLIGHT` producers in
 * all, each append routed by its key's hash.
 */
async function poolEngine(ctx: BenchContext, workers: number, perCore: boolean): Promise<Engine> {
  const pool = await CoreWalPool.start({ dir: join(ctx.dir, `pool-${workers}-${perCore ? 'c' : 's'}`), workers });
  const cores = Array.from({ length: workers }, (_, c) => ({ core: c }));
  return {
    name: `pool, ${workers} worker${workers > 1 ? 's' : ''}`, lanes: perCore ? IN_FLIGHT * workers : IN_FLIGHT,
    put: perCore ? (k, lane) => pool.put(k, VALUE, cores[lane % workers]) : (k) => pool.put(k, VALUE),
    close: () => pool.close(), appends: 0, secs: 0,
  };
}

/**
 * The same load on one thread: a `PerCoreWalManager` with as many segments, appends
 * collected from the event loop and group-committed by one `syncAll()` per turn — what a
 * Node user builds without worker threads. Its fdatasyncs block the event loop.
 */
function managerEngine(ctx: BenchContext, cores: number): Engine {
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
  return {
    name: `single-thread PerCoreWalManager, ${cores} segments`, lanes: IN_FLIGHT,
    put: (key) => {
      wal.writer(coreForKey(key, cores)).appendPut(key, VALUE);
      if (!scheduled) { scheduled = true; setImmediate(commit); }
      return new Promise<void>((resolve) => waiting.push(resolve));
    },
    close: () => wal.close(), appends: 0, secs: 0,
  };
}

/**
 * Runs every engine in short turns, round-robin, so that all of them see the same disk:
 * on a shared machine fdatasync latency drifts by several times within a minute, and
 * engines measured one after the other would compare the disk's moods, not the engines.
 */
async function measure(ctx: BenchContext, engines: Engine[]): Promise<Map<string, number>> {
  const ks = keys(ctx.smoke ? 4096 : 1 << 20);
  const rounds = ctx.smoke ? 1 : 8;
  for (const e of engines) await drive(Math.min(0.2, ctx.seconds / 4), e.lanes, ks, e.put); // warm-up: JIT, preallocation
  try {
    for (let r = 0; r < rounds; r++) {
      for (const e of engines) {
        const d = await drive(ctx.seconds / rounds, e.lanes, ks, e.put);
        e.appends += d.n;
        e.secs += d.secs;
      }
    }
  } finally {
    for (const e of engines) await e.close();
  }
  return new Map(engines.map((e) => [e.name, e.appends / e.secs]));
}

async function shared(ctx: BenchContext): Promise<Metric[]> {
  const engines = [
    await poolEngine(ctx, 1, false), await poolEngine(ctx, 2, false), await poolEngine(ctx, 4, false), managerEngine(ctx, 2),
  ];
  const r = await measure(ctx, engines);
  const [p1, p2, p4, m2] = engines.map((e) => r.get(e.name)!) as [number, number, number, number];
  return [
    ...engines.map((e) => ({ name: e.name, value: r.get(e.name)!, unit: 'durable appends/s' })),
    { name: 'ratio 2 workers / 1 worker', value: p2 / p1, unit: 'x' },
    { name: 'ratio 4 workers / 1 worker', value: p4 / p1, unit: 'x' },
    { name: 'ratio 2 workers / single-thread manager', value: p2 / m2, unit: 'x' },
  ];
}

async function perCore(ctx: BenchContext): Promise<Metric[]> {
  const engines = [await poolEngine(ctx, 1, true), await poolEngine(ctx, 2, true)];
  const r = await measure(ctx, engines);
  const [p1, p2] = engines.map((e) => r.get(e.name)!) as [number, number];
  return [
    ...engines.map((e) => ({ name: e.name, value: r.get(e.name)!, unit: 'durable appends/s' })),
    { name: 'ratio 2 workers / 1 worker', value: p2 / p1, unit: 'x' },
  ];
}

export const cases: BenchCase[] = [
  { group: 'thread-per-core pool', name: `100 B values, ${IN_FLIGHT} producers in flight, routed by key`, run: shared },
  { group: 'thread-per-core pool', name: `100 B values, ${IN_FLIGHT} producers in flight per core`, run: perCore },
];
