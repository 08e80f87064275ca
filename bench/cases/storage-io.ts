import * as fs from 'node:fs';
import { join } from 'node:path';
import { createHistogram, monitorEventLoopDelay, PerformanceObserver } from 'node:perf_hooks';
import { CoreWalWriter, GroupCommitLog, registerWriterSegment, SyncStorageIo, ThreadPoolStorageIo } from '../../src/index.js';
import type { IoCompletion, IoFd, StorageIo } from '../../src/index.js';
import { percentile, type BenchCase, type BenchContext, type Metric } from '../harness.js';

/**
 * StorageIo and group commit, each beside a raw baseline run in the same process:
 * - group commit: P concurrent producers each awaiting the durability of its own 100 B
 *   record, on ThreadPoolStorageIo through GroupCommitLog, beside a raw `fs.write` +
 *   `fdatasync` group commit batching the same way (every record of one event-loop turn,
 *   or arriving while a datasync runs, shares the next one). Also the longest event-loop
 *   stall during the corewal run, and one raw fdatasync's latency for scale.
 * - sync every K records, through SyncStorageIo and ThreadPoolStorageIo, beside a raw
 *   loop that buffers K records, writes them once and fdatasyncs.
 */

const KEY = Buffer.from('key-000001');
const PREALLOC = 4 * 1024 * 1024;
/** A record of corewal's framing around a put of KEY and `valueLen` bytes. */
const recordLen = (valueLen: number): number => 8 + 36 + 4 + KEY.length + valueLen;

// ---- raw baselines ----------------------------------------------------------------

/** The least a hand-written durable group commit does: copy, one write, one fdatasync per group. */
class RawGroupCommit {
  private batch = Buffer.allocUnsafe(1 << 20);
  private len = 0;
  private waiters: (() => void)[] = [];
  private syncing = false;
  private scheduled = false;
  private pos = 0;
  private allocated = 0;
  private readonly zeros = Buffer.alloc(PREALLOC);
  constructor(private readonly fd: number) {}

  put(rec: Buffer): Promise<void> {
    if (this.len + rec.length > this.batch.length) {
      const b = Buffer.allocUnsafe(this.batch.length * 2);
      this.batch.copy(b, 0, 0, this.len);
      this.batch = b;
    }
    rec.copy(this.batch, this.len);
    this.len += rec.length;
    const p = new Promise<void>((r) => this.waiters.push(r));
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => { this.scheduled = false; this.commit(); });
    }
    return p;
  }

  private commit(): void {
    if (this.syncing || this.len === 0) return;
    this.syncing = true;
    const data = this.batch.subarray(0, this.len);
    const waiters = this.waiters;
    this.batch = Buffer.allocUnsafe(this.batch.length);
    this.len = 0;
    this.waiters = [];
    const at = this.pos;
    this.pos += data.length;
    const write = (): void => fs.write(this.fd, data, 0, data.length, at, (err) => {
      if (err) throw err;
      fs.fdatasync(this.fd, (err2) => {
        if (err2) throw err2;
        for (const w of waiters) w();
        this.syncing = false;
        this.commit();
      });
    });
    if (this.pos > this.allocated) {
      const from = Math.max(this.allocated, this.pos);
      this.allocated = this.pos + PREALLOC;
      fs.write(this.fd, this.zeros, 0, this.allocated - from, from, (err) => { if (err) throw err; write(); });
    } else {
      write();
    }
  }
}

interface ProducerRun { records: number; secs: number; lat: Float64Array; n: number }

/** P producers, each awaiting `put()` in a loop until the deadline; latencies (ms) go to `lat`. */
async function producers(p: number, seconds: number, lat: Float64Array, put: () => Promise<unknown>): Promise<ProducerRun> {
  let n = 0;
  let records = 0;
  const start = performance.now();
  const deadline = start + seconds * 1000;
  const one = async (): Promise<void> => {
    for (;;) {
      const t = performance.now();
      if (t >= deadline) return;
      await put();
      records++;
      if (n < lat.length) lat[n++] = performance.now() - t;
    }
  };
  const all: Promise<void>[] = [];
  for (let i = 0; i < p; i++) all.push(one());
  await Promise.all(all);
  return { records, secs: (performance.now() - start) / 1000, lat, n };
}

function quantiles(runs: ProducerRun[]): { p50: number; p99: number } {
  let total = 0;
  for (const r of runs) total += r.n;
  const all = new Float64Array(total);
  let o = 0;
  for (const r of runs) { all.set(r.lat.subarray(0, r.n), o); o += r.n; }
  all.sort();
  const s = Array.from(all);
  return { p50: percentile(s, 50) * 1000, p99: percentile(s, 99) * 1000 };
}

/** Latency (median and p99) of one small write + fdatasync on a preallocated file, in us. */
async function rawFdatasyncUs(dir: string, smoke: boolean): Promise<{ p50: number; p99: number }> {
  const fd = fs.openSync(join(dir, 'fdatasync.bin'), 'w+');
  try {
    fs.writeSync(fd, Buffer.alloc(1 << 20));
    fs.fdatasyncSync(fd);
    const rec = Buffer.alloc(recordLen(100), 1);
    // Enough samples for a p99 that is not just the largest one or two.
    const n = smoke ? 5 : 1000;
    const t: number[] = [];
    for (let i = 0; i < n; i++) {
      const s = performance.now();
      await new Promise<void>((res, rej) => fs.write(fd, rec, 0, rec.length, (i * rec.length) % (1 << 20), (e) => e ? rej(e) : res()));
      await new Promise<void>((res, rej) => fs.fdatasync(fd, (e) => e ? rej(e) : res()));
      t.push((performance.now() - s) * 1000);
    }
    t.sort((a, b) => a - b);
    return { p50: percentile(t, 50), p99: percentile(t, 99) };
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * This thread's time on the CPU, time spent runnable but not running (preempted), both in
 * ns, and how many times it was given a CPU, from /proc/thread-self/schedstat (its three
 * fields), into `out`; null where there is no such file. Time that is neither, the thread
 * spent asleep (on a lock, say) — but the kernel brings the CPU time up to date only when
 * the thread leaves the CPU (or at a tick), so that difference means something only across
 * a call the thread left the CPU in.
 */
function schedstatReader(): ((out: Float64Array) => void) | null {
  let fd: number;
  try {
    fd = fs.openSync('/proc/thread-self/schedstat', 'r');
  } catch {
    return null;
  }
  const buf = Buffer.alloc(96);
  return (out) => {
    const n = fs.readSync(fd, buf, 0, buf.length, 0);
    let i = 0;
    for (let field = 0; field < 3; field++) {
      let v = 0;
      for (; i < n && buf[i]! >= 48 && buf[i]! <= 57; i++) v = v * 10 + (buf[i]! - 48);
      out[field] = v;
      i++;
    }
  };
}

// ---- group commit -------------------------------------------------------------------

/**
 * Times every library entry point the event loop runs during group commit (the calls
 * producers make, the log's per-turn work, the completion handling, the thread pool's
 * write callbacks) and keeps the longest: how long the library itself blocked the loop,
 * apart from the machine's own scheduling noise that monitorEventLoopDelay also sees.
 * Where /proc/thread-self/schedstat exists, each call's time spent preempted (runnable,
 * but the CPU given to another thread or process) is measured too: wall time minus that
 * is the call's own time, what the library is answerable for (GC pauses included) —
 * though on a virtual machine it still holds time the host or interrupt handling took
 * (which no thread sees as preemption). A third figure leaves out the calls a V8 GC pause
 * fell into (PerformanceObserver 'gc' entries), so that a long call can be told apart
 * from a collection of what the whole process allocated.
 */
function instrumentLibrary(): {
  longest: () => number; longestOwn: () => number | null; longestAsleep: () => number | null; longestOutsideGc: () => Promise<number>;
  p999: () => number; reset: () => void; restore: () => void;
} {
  let longest = 0;
  let longestOwn = 0;
  let longestAsleep = 0;
  let depth = 0;
  const sched = schedstatReader();
  const s0 = new Float64Array(3);
  const s1 = new Float64Array(3);
  let h = createHistogram();
  const restores: (() => void)[] = [];
  // Calls over SLOW ms, kept to be matched against V8's GC pauses afterwards (the GC
  // observer reports them asynchronously): [start, end, own time].
  const SLOW = 0.5;
  let slow: number[][] = [];
  let fastOwn = 0;
  const gcs: number[][] = [];
  const gcObserver = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) gcs.push([e.startTime, e.startTime + e.duration]);
  });
  gcObserver.observe({ entryTypes: ['gc'] });
  restores.push(() => gcObserver.disconnect());
  const targets: [object, string[]][] = [
    [GroupCommitLog.prototype, ['put', 'tick', 'onCompletions']],
    [ThreadPoolStorageIo.prototype, ['writeDone', 'writeDatasyncDone', 'laneDone', 'flush', 'pollCompletions']],
  ];
  for (const [proto, names] of targets) {
    const o = proto as Record<string, (...a: unknown[]) => unknown>;
    for (const name of names) {
      const orig = o[name]!;
      o[name] = function timed(this: unknown, ...args: unknown[]): unknown {
        // Only the outermost call is timed (put may flush, for instance).
        const outer = depth++ === 0;
        if (outer && sched !== null) sched(s0);
        const t = performance.now();
        try {
          return orig.apply(this, args);
        } finally {
          depth--;
          if (outer) {
            const d = performance.now() - t;
            if (d > longest) longest = d;
            let own = d;
            if (sched !== null) {
              sched(s1);
              own = d - (s1[1]! - s0[1]!) / 1e6;
              // A thread that never left the CPU did not sleep (and its CPU time may be stale).
              const asleep = s1[2] === s0[2] ? 0 : own - (s1[0]! - s0[0]!) / 1e6;
              if (asleep > longestAsleep) longestAsleep = asleep;
            }
            if (own > longestOwn) longestOwn = own;
            if (d > SLOW) slow.push([t, t + d, own]);
            else if (own > fastOwn) fastOwn = own;
            h.record(Math.max(1, Math.round(d * 1e6)));
          }
        }
      };
      restores.push(() => { o[name] = orig; });
    }
  }
  return {
    longest: () => longest,
    longestOwn: () => sched !== null ? longestOwn : null,
    longestAsleep: () => sched !== null ? longestAsleep : null,
    longestOutsideGc: async () => {
      // GC entries arrive after the pause, from a later turn.
      await new Promise((r) => setTimeout(r, 20));
      let m = fastOwn;
      for (const [a, b, own] of slow) {
        if (!gcs.some(([g0, g1]) => g0 < b! && g1 > a!) && own! > m) m = own!;
      }
      return m;
    },
    p999: () => h.percentile(99.9) / 1e6,
    reset: () => { longest = 0; longestOwn = 0; longestAsleep = 0; fastOwn = 0; slow = []; gcs.length = 0; h = createHistogram(); },
    restore: () => { for (const r of restores) r(); },
  };
}

/** The log on its own ThreadPoolStorageIo with `lingerMs` (default: the log's own backend). */
function openLog(path: string, lingerMs: number | undefined): { log: GroupCommitLog; close: () => Promise<void> } {
  const sio = lingerMs === undefined ? undefined : new ThreadPoolStorageIo({ lingerMs });
  const log = GroupCommitLog.open(path, sio === undefined ? {} : { storageIo: sio });
  return { log, close: async () => { await log.close(); sio?.close(); } };
}

async function groupCommitCase(ctx: BenchContext, p: number, lingerMs?: number): Promise<Metric[]> {
  const value = Buffer.alloc(100, 7);
  const rec = Buffer.alloc(recordLen(100), 7);
  const rounds = ctx.smoke ? 1 : 2;
  const slice = ctx.seconds / (2 * rounds);
  const ours: ProducerRun[] = [];
  const raws: ProducerRun[] = [];
  const stalls: number[] = [];
  const rawStalls: number[] = [];
  const stallP99: number[] = [];
  const rawStallP99: number[] = [];
  let groups = 0;
  for (let r = 0; r < rounds; r++) {
    // Latency buffers exist before the event-loop monitor starts: allocating them is no stall of the library's.
    const lat = new Float64Array(ctx.smoke ? 65536 : 4_000_000);
    const { log, close } = openLog(join(ctx.dir, `gc-${r}.log`), lingerMs);
    const h = monitorEventLoopDelay({ resolution: 1 });
    h.enable();
    ours.push(await producers(p, slice, lat, () => log.put(KEY, value)));
    h.disable();
    stalls.push(h.max / 1e6);
    stallP99.push(h.percentile(99) / 1e6);
    groups += log.stats().groups;
    await close();

    const rawLat = new Float64Array(lat.length);
    const fd = fs.openSync(join(ctx.dir, `raw-${r}.log`), 'w+');
    const raw = new RawGroupCommit(fd);
    const hr = monitorEventLoopDelay({ resolution: 1 });
    hr.enable();
    raws.push(await producers(p, slice, rawLat, () => raw.put(rec)));
    hr.disable();
    rawStalls.push(hr.max / 1e6);
    rawStallP99.push(hr.percentile(99) / 1e6);
    fs.closeSync(fd);
  }
  const sum = (rs: ProducerRun[]): number => rs.reduce((a, x) => a + x.records, 0) / rs.reduce((a, x) => a + x.secs, 0);
  const q = quantiles(ours);
  const rq = quantiles(raws);
  const fsync = await rawFdatasyncUs(ctx.dir, ctx.smoke);
  // A shorter run with every library entry point timed (slower, so apart from the figures above).
  const probe = instrumentLibrary();
  let longestCall: number;
  let longestOwn: number | null;
  let longestAsleep: number | null;
  let outsideGc: number;
  let callP999: number;
  try {
    const { log, close } = openLog(join(ctx.dir, 'gc-probe.log'), lingerMs);
    // Steady state only: the timing wrappers are new code, and while V8 compiles them its
    // compiler threads take the event loop's CPU (seen with perf sched as >1 ms preemptions).
    await producers(p, ctx.smoke ? 0.01 : 0.5, new Float64Array(1024), () => log.put(KEY, value));
    probe.reset();
    await producers(p, slice / 2, new Float64Array(1024), () => log.put(KEY, value));
    await close();
    longestCall = probe.longest();
    longestOwn = probe.longestOwn();
    longestAsleep = probe.longestAsleep();
    outsideGc = await probe.longestOutsideGc();
    callP999 = probe.p999();
  } finally {
    probe.restore();
  }
  const oursRate = sum(ours);
  const rawRate = sum(raws);
  const records = ours.reduce((a, x) => a + x.records, 0);
  return [
    { name: 'corewal durable records/s', value: oursRate, unit: 'rec/s' },
    { name: 'raw durable records/s', value: rawRate, unit: 'rec/s' },
    { name: 'corewal / raw', value: oursRate / rawRate, unit: 'x' },
    { name: 'corewal commit p50', value: q.p50, unit: 'us' },
    { name: 'corewal commit p99', value: q.p99, unit: 'us' },
    { name: 'raw commit p50', value: rq.p50, unit: 'us' },
    { name: 'raw commit p99', value: rq.p99, unit: 'us' },
    { name: 'one raw fdatasync', value: fsync.p50, unit: 'us' },
    { name: 'one raw fdatasync p99', value: fsync.p99, unit: 'us' },
    { name: 'corewal p99 / one raw fdatasync', value: q.p99 / fsync.p50, unit: 'x' },
    // Tails against tails: this machine's fdatasync alone has a p99 many times its median.
    { name: 'corewal p99 / raw fdatasync p99', value: q.p99 / fsync.p99, unit: 'x' },
    { name: 'records per datasync', value: records / Math.max(1, groups), unit: 'rec' },
    // Wall clock: on a shared machine it includes time the OS gave the CPU to someone else.
    { name: 'longest library call on the event loop', value: longestCall, unit: 'ms' },
    // The same, less the time the thread was preempted during the call (Linux schedstat).
    ...(longestOwn !== null ? [{ name: 'longest library call, less time preempted', value: longestOwn, unit: 'ms' }] : []),
    // Of which the thread was asleep, neither running nor runnable: waiting on a lock (the
    // trouble libuv's work queue caused before ThreadPoolStorageIo's lanes) or in a syscall.
    ...(longestAsleep !== null ? [{ name: 'longest time asleep inside one library call', value: longestAsleep, unit: 'ms' }] : []),
    // And of the calls no V8 GC pause fell into (a pause stops the whole isolate, whoever
    // allocated last; the figures above count it against the call it landed in).
    { name: 'longest library call outside GC pauses, less time preempted', value: outsideGc, unit: 'ms' },
    { name: 'library call on the event loop p99.9', value: callP999, unit: 'ms' },
    { name: 'longest event-loop stall', value: Math.max(...stalls), unit: 'ms' },
    { name: 'longest event-loop stall, raw', value: Math.max(...rawStalls), unit: 'ms' },
    { name: 'event-loop delay p99', value: Math.max(...stallP99), unit: 'ms' },
    { name: 'event-loop delay p99, raw', value: Math.max(...rawStallP99), unit: 'ms' },
  ];
}

// ---- sync every K records -------------------------------------------------------------

type Backend = 'sync' | 'thread-pool';

/**
 * Appends through the writer's StorageIo path, a datasync every `k` records, waiting for
 * each. `batched`: records are encoded with the direct `appendPut` into the writer's
 * buffer and submitted together by `flushViaStorageIo` instead of one submission each.
 */
async function storageIoLoop(ctx: BenchContext, backend: Backend, valueLen: number, k: number, seconds: number, batched: boolean): Promise<number> {
  const writer = CoreWalWriter.create(0, join(ctx.dir, `${backend}-${valueLen}-${k}.log`));
  const sio: StorageIo = backend === 'sync' ? new SyncStorageIo() : new ThreadPoolStorageIo();
  const fd: IoFd = registerWriterSegment(writer, sio);
  const value = Buffer.alloc(valueLen, 3);
  const done: IoCompletion[] = [];
  let records = 0;
  const start = performance.now();
  const deadline = start + seconds * 1000;
  try {
    do {
      if (batched) {
        for (let i = 0; i < k; i++) writer.appendPut(KEY, value);
        writer.flushViaStorageIo(sio, fd);
      } else {
        for (let i = 0; i < k; i++) writer.appendPutViaStorageIo(KEY, value, sio, fd);
      }
      writer.syncViaStorageIo(sio, fd);
      while (writer.isSyncPending() || writer.writesInFlight() > 0) {
        await sio.waitForCompletions();
        done.length = 0;
        sio.pollCompletions(done);
        writer.checkCompletions(done);
      }
      records += k;
    } while (performance.now() < deadline);
  } finally {
    sio.close();
    writer.close();
  }
  return records / ((performance.now() - start) / 1000);
}

/** Raw: K records copied into one buffer, one write, one fdatasync (sync calls, or the async ones). */
async function rawLoop(ctx: BenchContext, backend: Backend, valueLen: number, k: number, seconds: number): Promise<number> {
  const fd = fs.openSync(join(ctx.dir, `raw-${backend}-${valueLen}-${k}.log`), 'w+');
  const rec = Buffer.alloc(recordLen(valueLen), 3);
  const batch = Buffer.allocUnsafe(rec.length * k);
  const zeros = Buffer.alloc(PREALLOC);
  let pos = 0;
  let allocated = 0;
  let records = 0;
  const write = (b: Buffer, len: number, at: number): Promise<void> => backend === 'sync'
    ? (fs.writeSync(fd, b, 0, len, at), Promise.resolve())
    : new Promise((res, rej) => fs.write(fd, b, 0, len, at, (e) => e ? rej(e) : res()));
  const sync = (): Promise<void> => backend === 'sync'
    ? (fs.fdatasyncSync(fd), Promise.resolve())
    : new Promise((res, rej) => fs.fdatasync(fd, (e) => e ? rej(e) : res()));
  const start = performance.now();
  const deadline = start + seconds * 1000;
  try {
    do {
      for (let i = 0; i < k; i++) rec.copy(batch, i * rec.length);
      const len = rec.length * k;
      if (pos + len > allocated) {
        const from = Math.max(allocated, pos);
        allocated = pos + len + PREALLOC;
        for (let at = from; at < allocated; at += zeros.length) await write(zeros, Math.min(zeros.length, allocated - at), at);
      }
      await write(batch, len, pos);
      pos += len;
      await sync();
      records += k;
    } while (performance.now() < deadline);
  } finally {
    fs.closeSync(fd);
  }
  return records / ((performance.now() - start) / 1000);
}

async function syncEveryCase(ctx: BenchContext, backend: Backend, valueLen: number, k: number, batched: boolean): Promise<Metric[]> {
  const rounds = ctx.smoke ? 1 : 2;
  const slice = ctx.seconds / (2 * rounds);
  let ours = 0;
  let raw = 0;
  for (let r = 0; r < rounds; r++) {
    ours += await storageIoLoop(ctx, backend, valueLen, ctx.smoke ? Math.min(k, 10) : k, slice, batched);
    raw += await rawLoop(ctx, backend, valueLen, ctx.smoke ? Math.min(k, 10) : k, slice);
  }
  ours /= rounds;
  raw /= rounds;
  const rawName = backend === 'sync' ? 'raw writeSync + fdatasyncSync' : 'raw fs.write + fs.fdatasync';
  return [
    { name: 'corewal records/s', value: ours, unit: 'rec/s' },
    { name: `${rawName} records/s`, value: raw, unit: 'rec/s' },
    { name: 'corewal / raw', value: ours / raw, unit: 'x' },
  ];
}

export const cases: BenchCase[] = [
  ...[1, 16, 64, 256].map((p): BenchCase => ({
    group: 'storage-io',
    name: `group commit, ${p} producer${p === 1 ? '' : 's'}, 100 B, ThreadPoolStorageIo`,
    run: (ctx) => groupCommitCase(ctx, p),
  })),
  // The same with lanes off: every round queued to libuv's work queue (for the event-loop figures).
  {
    group: 'storage-io',
    name: 'group commit, 1 producer, 100 B, ThreadPoolStorageIo without lanes (lingerMs 0)',
    run: (ctx) => groupCommitCase(ctx, 1, 0),
  },
  ...(['sync', 'thread-pool'] as const).flatMap((backend) => [100, 4096].flatMap((valueLen) => [1, 100, 1000].map((k): BenchCase => ({
    group: 'storage-io',
    name: `${backend === 'sync' ? 'SyncStorageIo' : 'ThreadPoolStorageIo'}, ${valueLen === 100 ? '100 B' : '4 KiB'}, datasync every ${k}`,
    run: (ctx) => syncEveryCase(ctx, backend, valueLen, k, false),
  })))),
  ...(['sync', 'thread-pool'] as const).flatMap((backend) => [100, 4096].map((valueLen): BenchCase => ({
    group: 'storage-io',
    name: `${backend === 'sync' ? 'SyncStorageIo' : 'ThreadPoolStorageIo'}, ${valueLen === 100 ? '100 B' : '4 KiB'}, datasync every 1000, batched submit`,
    run: (ctx) => syncEveryCase(ctx, backend, valueLen, 1000, true),
  }))),
];
