import { closeSync, fsyncSync, openSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { LatencyHistogram } from './histogram.js';
import type { ReadBack, Store, Workload } from './types.js';

export const KEY_SIZE = 16;

/** Ascending 16-byte keys: [source id u32 BE][zeros][counter u48 BE] — append order for every store. */
export class KeySource {
  private n = 0;
  constructor(private readonly id: number) {}

  next(): Buffer {
    const k = Buffer.allocUnsafe(KEY_SIZE);
    k.writeUInt32BE(this.id, 0);
    k.fill(0, 4, 10);
    k.writeUIntBE(this.n++, 10, 6);
    return k;
  }
}

export interface Measured {
  records: number;
  commits: number;
  secs: number;
  latency: LatencyHistogram;
}

/** One producer issuing commits of `perCommit` records for about `seconds`. */
export async function commits(store: Store, w: Workload, value: Buffer, seconds: number, keys: KeySource): Promise<Measured> {
  const latency = new LatencyHistogram();
  const start = performance.now();
  const deadline = start + seconds * 1000;
  let records = 0, n = 0;
  do {
    const batch: Buffer[] = new Array<Buffer>(w.perCommit);
    for (let i = 0; i < w.perCommit; i++) batch[i] = keys.next();
    const t = performance.now();
    const r = store.commit(batch, value);
    // Synchronous stores are not charged a microtask per commit.
    if (r) await r;
    latency.record(performance.now() - t);
    records += w.perCommit;
    n++;
  } while (performance.now() < deadline);
  return { records, commits: n, secs: (performance.now() - start) / 1000, latency };
}

/** `w.producers` concurrent producers, each awaiting its own one-record durable write, for about `seconds`. */
export async function producers(store: Store, w: Workload, value: Buffer, seconds: number, firstId: number): Promise<Measured> {
  const latency = new LatencyHistogram();
  const start = performance.now();
  const deadline = start + seconds * 1000;
  let records = 0;
  const producer = async (id: number): Promise<void> => {
    const keys = new KeySource(id);
    while (performance.now() < deadline) {
      const k = keys.next();
      const t = performance.now();
      // Always await, so that producers of a synchronous store take turns as concurrent requests would.
      await store.put(k, value);
      latency.record(performance.now() - t);
      records++;
    }
  };
  const all: Promise<void>[] = [];
  for (let i = 0; i < w.producers; i++) all.push(producer(firstId + i));
  await Promise.all(all);
  return { records, commits: records, secs: (performance.now() - start) / 1000, latency };
}

export function run(store: Store, w: Workload, value: Buffer, seconds: number, firstId: number): Promise<Measured> {
  return w.producers > 1 ? producers(store, w, value, seconds, firstId) : commits(store, w, value, seconds, new KeySource(firstId));
}

/** Writes `w.records` records in durable commits of `w.perCommit` (untimed). */
export async function fill(store: Store, w: Workload, value: Buffer): Promise<void> {
  const keys = new KeySource(1);
  for (let done = 0; done < (w.records ?? 0); done += w.perCommit) {
    const batch: Buffer[] = [];
    for (let i = 0; i < Math.min(w.perCommit, (w.records ?? 0) - done); i++) batch.push(keys.next());
    await store.commit(batch, value);
  }
}

export interface TimedReadBack extends ReadBack {
  secs: number;
}

export async function timeReadBack(read: () => Promise<ReadBack> | ReadBack): Promise<TimedReadBack> {
  const start = performance.now();
  const r = await read();
  return { ...r, secs: (performance.now() - start) / 1000 };
}

/**
 * Untimed, between runs: write every file of a run's directory back, so that one system's
 * dirty pages are not flushed on the next one's time.
 */
export function settle(dir: string): void {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) settle(p);
    else if (e.isFile()) {
      const fd = openSync(p, 'r');
      try {
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
    }
  }
}
