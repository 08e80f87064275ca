import { closeSync, fdatasyncSync, fsyncSync, openSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import * as corewal from '../../src/index.js';
import { crc32c } from '../../src/crc/crc32c.js';
import { UringStorageIo } from '../../src/storage-io/uring.js';
import type { IoCompletion, StorageIo } from '../../src/storage-io/types.js';
import { CoreWalWriter } from '../../src/writer/writer.js';
import type { BenchCase, BenchContext, Metric } from '../harness.js';

const KEY = Buffer.from('key-00000001');
/** Payload bytes corewal writes for a put: 36-byte header, 4-byte key length, key, value. */
const payloadLen = (valueSize: number): number => 36 + 4 + KEY.length + valueSize;

/** The writer's default: zero-fill this far ahead, so that an fdatasync rarely has to log a size change. */
const PREALLOCATE = 4 * 1024 * 1024;
const ZEROS = Buffer.alloc(1 << 20);

/**
 * The synchronous baseline: what the StorageIo path does, by hand — one framed record per
 * fs.writeSync at its offset, fs.fdatasyncSync every `syncEvery` records, the file
 * zero-filled ahead the way the writer does it.
 */
/** Records/s, and CPU time per record over every thread of the process (io_uring's io-wq workers and libuv's pool included). */
interface Rate { rate: number; cpuNs: number }

function cpuNow(): number {
  const c = process.cpuUsage();
  return c.user + c.system;
}

function rawLoop(path: string, valueSize: number, syncEvery: number, seconds: number): Rate {
  const fd = openSync(path, 'w+');
  const value = Buffer.alloc(valueSize, 0x61);
  const plen = payloadLen(valueSize);
  const rec = Buffer.alloc(8 + plen);
  let pos = 0, n = 0, since = 0, allocated = 0;
  const cpu0 = cpuNow();
  const start = performance.now();
  const deadline = start + seconds * 1000;
  do {
    for (let i = 0; i < 64; i++) {
      if (pos + rec.length > allocated) {
        const to = pos + rec.length + PREALLOCATE;
        for (let at = Math.max(allocated, pos); at < to; ) at += writeSync(fd, ZEROS, 0, Math.min(ZEROS.length, to - at), at);
        allocated = to;
      }
      rec.writeUInt32LE(plen, 0);
      rec.fill(1, 8, 44);
      rec.writeUInt32LE(KEY.length, 44);
      KEY.copy(rec, 48);
      value.copy(rec, 48 + KEY.length);
      rec.writeUInt32LE(crc32c(rec, 8, 8 + plen), 4);
      let done = 0;
      while (done < rec.length) done += writeSync(fd, rec, done, rec.length - done, pos + done);
      pos += rec.length;
      n++;
      if (++since === syncEvery) {
        fdatasyncSync(fd);
        since = 0;
      }
    }
  } while (performance.now() < deadline);
  if (since > 0) fdatasyncSync(fd);
  const rate = n / ((performance.now() - start) / 1000);
  const cpuNs = ((cpuNow() - cpu0) * 1000) / n;
  settle(fd, path);
  return { rate, cpuNs };
}

/** Untimed: write the file's pages back and delete it, so the next loop starts clean. */
function settle(fd: number, path: string): void {
  fsyncSync(fd);
  closeSync(fd);
  unlinkSync(path);
}

function refused(e: unknown): boolean {
  const c = (e as { cause?: { code?: string } }).cause?.code;
  return c === 'QUEUE_FULL' || c === 'BUFFER_EXHAUSTED';
}

/**
 * Records/s through the writer's StorageIo path, driven as a group commit: appends are
 * submitted as they come (flushed and polled every 64 records), and every `syncEvery`
 * records a datasync is submitted once the previous one has completed (the writer keeps
 * one in flight) — appending goes on while it runs, which is what a non-blocking backend
 * is for. Every record is durable (`syncedPosition() === position()`) before the clock
 * stops.
 */
async function storageIoLoop(sio: StorageIo, path: string, valueSize: number, syncEvery: number, seconds: number): Promise<Rate> {
  // The writer's defaults: it zero-fills ahead through the backend (submitZeros).
  const w = CoreWalWriter.create(0, path);
  const fd = sio.registerFd(openSync(path, 'r+'));
  const value = Buffer.alloc(valueSize, 0x61);
  const out: IoCompletion[] = [];
  const take = (): void => {
    out.length = 0;
    sio.pollCompletions(out);
    if (out.length > 0) w.checkCompletions(out);
  };
  const pump = async (): Promise<void> => {
    await sio.waitForCompletions();
    take();
  };
  let n = 0, since = 0;
  const cpu0 = cpuNow();
  const start = performance.now();
  const deadline = start + seconds * 1000;
  do {
    for (let i = 0; i < 64; i++) {
      for (;;) {
        try {
          w.appendPutViaStorageIo(KEY, value, sio, fd);
          break;
        } catch (e) {
          if (!refused(e)) throw e;
          sio.flush();
          await pump();
        }
      }
      n++;
      if (++since === syncEvery) {
        while (w.isSyncPending()) await pump();
        for (;;) {
          try {
            w.syncViaStorageIo(sio, fd);
            break;
          } catch (e) {
            if (!refused(e)) throw e;
            await pump();
          }
        }
        since = 0;
      }
    }
    sio.flush();
    take();
  } while (performance.now() < deadline);
  while (w.isSyncPending()) await pump();
  if (since > 0) w.syncViaStorageIo(sio, fd);
  while (w.isSyncPending() || w.writesInFlight() > 0) await pump();
  const rate = n / ((performance.now() - start) / 1000);
  const cpuNs = ((cpuNow() - cpu0) * 1000) / n;
  if (w.syncedPosition() !== w.position()) throw new Error(`bench: ${w.syncedPosition()} of ${w.position()} bytes synced`);
  sio.deregisterFd(fd);
  w.close();
  settle(openSync(path, 'r+'), path);
  return { rate, cpuNs };
}

type Backend = { name: string; make: () => StorageIo };

function backends(): Backend[] {
  const list: Backend[] = [];
  list.push({ name: 'UringStorageIo', make: () => UringStorageIo.create() });
  // Compared with once it exists on this branch; looked up by name so this file builds either way.
  const tp = (corewal as Record<string, unknown>)['ThreadPoolStorageIo'] as
    | { create?: () => StorageIo; new (): StorageIo } | undefined;
  if (typeof tp === 'function') list.push({ name: 'ThreadPoolStorageIo', make: () => (typeof tp.create === 'function' ? tp.create() : new tp()) });
  return list;
}

let runNo = 0;

function row(valueSize: number, syncEvery: number): (ctx: BenchContext) => Promise<Metric[]> {
  return async (ctx) => {
    const bs = backends();
    const run = async (b: Backend, file: string, secs: number): Promise<Rate> => {
      const sio = b.make();
      try {
        return await storageIoLoop(sio, join(ctx.dir, file), valueSize, syncEvery, secs);
      } finally {
        sio.close();
      }
    };
    const warm = Math.min(0.2, ctx.seconds / 4);
    rawLoop(join(ctx.dir, 'warm-raw.log'), valueSize, syncEvery, warm);
    for (const b of bs) await run(b, `warm-${b.name}.log`, warm);
    // Rotate the order across repetitions so no loop always runs first (on a cooler disk).
    const loops: { name: string; go: () => Promise<Rate> }[] = [
      { name: 'raw', go: async () => rawLoop(join(ctx.dir, 'raw.log'), valueSize, syncEvery, ctx.seconds) },
      ...bs.map((b) => ({ name: b.name, go: () => run(b, `${b.name}.log`, ctx.seconds) })),
    ];
    const shift = runNo++ % loops.length;
    const rates = new Map<string, Rate>();
    for (let i = 0; i < loops.length; i++) {
      const l = loops[(i + shift) % loops.length]!;
      rates.set(l.name, await l.go());
    }
    const raw = rates.get('raw')!;
    const uring = rates.get('UringStorageIo')!;
    const tp = rates.get('ThreadPoolStorageIo');
    const metrics: Metric[] = [{ name: 'UringStorageIo', value: uring.rate, unit: 'records/s' }];
    if (tp !== undefined) metrics.push({ name: 'ThreadPoolStorageIo', value: tp.rate, unit: 'records/s' });
    metrics.push({ name: 'raw writeSync + fdatasyncSync', value: raw.rate, unit: 'records/s' });
    if (tp !== undefined) metrics.push({ name: 'ratio uring/threadpool', value: uring.rate / tp.rate, unit: 'x' });
    metrics.push({ name: 'ratio uring/raw', value: uring.rate / raw.rate, unit: 'x' });
    metrics.push({ name: 'UringStorageIo CPU per record', value: uring.cpuNs, unit: 'ns' });
    if (tp !== undefined) metrics.push({ name: 'ThreadPoolStorageIo CPU per record', value: tp.cpuNs, unit: 'ns' });
    metrics.push({ name: 'raw CPU per record', value: raw.cpuNs, unit: 'ns' });
    return metrics;
  };
}

const support = UringStorageIo.isSupported();
if (!support.supported) process.stderr.write(`bench: io_uring cases skipped — ${support.reason}\n`);

/** Named so that `npm run bench -- --filter uring` selects these rows. */
const GROUP = 'storage-io (writer StorageIo path, io_uring)';

export const cases: BenchCase[] = support.supported
  ? [
    { group: GROUP, name: '100 B, sync every record', run: row(100, 1) },
    { group: GROUP, name: '100 B, sync every 100', run: row(100, 100) },
    { group: GROUP, name: '100 B, sync every 1000', run: row(100, 1000) },
    { group: GROUP, name: '4 KiB, sync every record', run: row(4096, 1) },
    { group: GROUP, name: '4 KiB, sync every 100', run: row(4096, 100) },
    { group: GROUP, name: '4 KiB, sync every 1000', run: row(4096, 1000) },
  ]
  : [];
