import { closeSync, fdatasyncSync, fsyncSync, openSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { PerformanceObserver } from 'node:perf_hooks';
import { CoreWalWriter } from '../../src/writer/writer.js';
import { crc32c } from '../../src/crc/crc32c.js';
import type { BenchCase, BenchContext, Metric } from '../harness.js';

const KEY = Buffer.from('key-00000001');
/** Payload bytes corewal writes for a put: 36-byte header, 4-byte key length, key, value. */
const payloadLen = (valueSize: number) => 36 + 4 + KEY.length + valueSize;

/**
 * The baseline a Node user would write by hand: the same framing ([len][crc32c][payload] with
 * a payload of the same size), records coalesced in a 64 KiB buffer, fs.writeSync, and
 * fdatasync every `syncEvery` records (0: never).
 */
function rawLoop(path: string, valueSize: number, syncEvery: number, seconds: number): number {
  const fd = openSync(path, 'w+');
  const start = performance.now();
  const value = Buffer.alloc(valueSize, 0x61);
  const plen = payloadLen(valueSize);
  const rlen = 8 + plen;
  const buf = Buffer.alloc(Math.max(65536, rlen));
  let len = 0, pos = 0, n = 0, sinceSync = 0;
  const deadline = performance.now() + seconds * 1000;
  const flush = () => {
    let done = 0;
    while (done < len) done += writeSync(fd, buf, done, len - done, pos + done);
    pos += len;
    len = 0;
  };
  for (;;) {
    for (let i = 0; i < 256; i++) {
      if (len + rlen > buf.length) flush();
      buf.writeUInt32LE(plen, len);
      buf.fill(1, len + 8, len + 8 + 36);
      buf.writeUInt32LE(KEY.length, len + 44);
      KEY.copy(buf, len + 48);
      value.copy(buf, len + 48 + KEY.length);
      buf.writeUInt32LE(crc32c(buf, len + 8, len + 8 + plen), len + 4);
      len += rlen;
      n++;
      if (syncEvery > 0 && ++sinceSync === syncEvery) {
        flush();
        fdatasyncSync(fd);
        sinceSync = 0;
      }
    }
    if (performance.now() >= deadline) break;
  }
  flush();
  if (syncEvery > 0) fdatasyncSync(fd);
  const rate = n / ((performance.now() - start) / 1000);
  settle(fd, path);
  return rate;
}

/** Untimed: write the file's dirty pages back and delete it, so the next run starts clean. */
function settle(fd: number, path: string): void {
  fsyncSync(fd);
  closeSync(fd);
  unlinkSync(path);
}

function corewal(path: string, valueSize: number, syncEvery: number, seconds: number): number {
  const w = CoreWalWriter.create(0, path);
  const start = performance.now();
  const value = Buffer.alloc(valueSize, 0x61);
  let n = 0, sinceSync = 0;
  const deadline = performance.now() + seconds * 1000;
  for (;;) {
    for (let i = 0; i < 256; i++) {
      w.appendPut(KEY, value);
      n++;
      if (syncEvery > 0 && ++sinceSync === syncEvery) {
        w.sync();
        sinceSync = 0;
      }
    }
    if (performance.now() >= deadline) break;
  }
  if (syncEvery > 0) w.sync(); else w.flush();
  const rate = n / ((performance.now() - start) / 1000);
  w.close();
  settle(openSync(path, 'r+'), path);
  return rate;
}

let runNo = 0;

function pair(valueSize: number, syncEvery: number): (ctx: BenchContext) => Metric[] {
  return (ctx) => {
    // Warm both loops up so neither pays JIT compilation inside the measurement.
    const warm = Math.min(0.2, ctx.seconds / 4);
    corewal(join(ctx.dir, 'warm-c.log'), valueSize, syncEvery, warm);
    rawLoop(join(ctx.dir, 'warm-r.log'), valueSize, syncEvery, warm);
    // Alternate which goes first across repetitions, so neither always runs on a warmer machine.
    const raw = () => rawLoop(join(ctx.dir, 'raw.log'), valueSize, syncEvery, ctx.seconds);
    const cw = () => corewal(join(ctx.dir, 'wal-0.log'), valueSize, syncEvery, ctx.seconds);
    let rawRate: number, cwRate: number;
    if (runNo++ % 2 === 0) { rawRate = raw(); cwRate = cw(); } else { cwRate = cw(); rawRate = raw(); }
    const bytes = 8 + payloadLen(valueSize);
    return [
      { name: 'corewal', value: cwRate, unit: 'records/s' },
      { name: 'corewal', value: (cwRate * bytes) / 2 ** 20, unit: 'MiB/s' },
      { name: 'raw fs.writeSync loop', value: rawRate, unit: 'records/s' },
      { name: 'ratio corewal/raw', value: cwRate / rawRate, unit: 'x' },
    ];
  };
}

function memory(ctx: BenchContext): Metric[] {
  const n = ctx.smoke ? 100_000 : 10_000_000;
  const w = CoreWalWriter.create(0, join(ctx.dir, 'wal-0.log'));
  const value = Buffer.alloc(100, 0x61);
  for (let i = 0; i < 100_000; i++) w.appendPut(KEY, value); // warm-up: JIT, buffers
  w.flush();
  let gcs = 0;
  const obs = new PerformanceObserver((list) => { gcs += list.getEntries().length; });
  obs.observe({ entryTypes: ['gc'] });
  const before = process.memoryUsage();
  for (let i = 0; i < n; i++) w.appendPut(KEY, value);
  w.flush();
  const after = process.memoryUsage();
  obs.disconnect();
  w.close();
  return [
    { name: 'appends', value: n, unit: 'count' },
    { name: 'heap growth', value: (after.heapUsed - before.heapUsed) / 2 ** 20, unit: 'MiB' },
    { name: 'gc events', value: gcs, unit: 'count' },
  ];
}

export const cases: BenchCase[] = [
  { group: 'append (no sync)', name: '100 B values', run: pair(100, 0) },
  { group: 'append (no sync)', name: '4 KiB values', run: pair(4096, 0) },
  { group: 'sync batching', name: '100 B, sync every record', run: pair(100, 1) },
  { group: 'sync batching', name: '100 B, sync every 100', run: pair(100, 100) },
  { group: 'sync batching', name: '100 B, sync every 1000', run: pair(100, 1000) },
  { group: 'sync batching', name: '4 KiB, sync every record', run: pair(4096, 1) },
  { group: 'sync batching', name: '4 KiB, sync every 100', run: pair(4096, 100) },
  { group: 'sync batching', name: '4 KiB, sync every 1000', run: pair(4096, 1000) },
  { group: 'hot path allocation', name: '100 B appends', run: memory, repeat: 1 },
];
