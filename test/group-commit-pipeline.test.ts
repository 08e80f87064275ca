import assert from 'node:assert/strict';
import { constants } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { CoreWalWriter, GroupCommitLog, PerCoreWalError, registerWriterSegment, ThreadPoolStorageIo } from '../src/index.js';
import type { IoCompletion, IoFd, StorageIo } from '../src/index.js';
import { FaultInjectingStorageIo } from '../src/testing/index.js';
import { readCore } from './helpers/read-core.js';
import { b, tempDir } from './helpers/tmp.js';

// Several datasyncs in flight at once (`syncViaStorageIoPipelined`, GroupCommitLog's
// `maxSyncsInFlight`): a datasync's boundary counts only once it, every write below it and
// every datasync submitted before it completed well, whatever order completions arrive in.

const dir = tempDir();
let n = 0;
const seg = (): string => join(dir, `pipe-${n++}.log`);
const codeOf = (e: unknown): string | undefined => (e as { code?: string }).code;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until(cond: () => boolean, what: string): Promise<void> {
  for (const deadline = Date.now() + 10_000; !cond(); ) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(2);
  }
}

/** Polls `sio` into the writer until `cond` holds; returns the first error checkCompletions threw. */
async function pump(w: CoreWalWriter, sio: StorageIo, cond: () => boolean): Promise<unknown> {
  const done: IoCompletion[] = [];
  let err: unknown = null;
  for (const deadline = Date.now() + 10_000; !cond(); ) {
    if (Date.now() > deadline) assert.fail('timed out pumping completions');
    sio.flush();
    // Bounded: once only held completions are left, nothing would wake the wait.
    await Promise.race([sio.waitForCompletions(), sleep(5)]);
    done.length = 0;
    sio.pollCompletions(done);
    if (done.length === 0) { await sleep(1); continue; }
    try { w.checkCompletions(done); } catch (e) { err ??= e; }
  }
  return err;
}

function writerOn(sio: StorageIo): { w: CoreWalWriter; fd: IoFd } {
  const w = CoreWalWriter.create(0, seg(), { preallocate: 0 });
  return { w, fd: registerWriterSegment(w, sio) };
}

test('writer: a later datasync completing first does not move syncedPosition past an earlier one still in flight', async () => {
  const fio = new FaultInjectingStorageIo(new ThreadPoolStorageIo());
  const { w, fd } = writerOn(fio);
  const hold = fio.hold({ op: 'datasync', times: 1 });
  w.appendPutViaStorageIo(b('a'), b('1'), fio, fd);
  w.syncViaStorageIoPipelined(fio, fd);
  const first = w.position();
  // The first datasync ran and its completion is held before the second is submitted.
  await pump(w, fio, () => hold.held === 1);
  w.appendPutViaStorageIo(b('b'), b('2'), fio, fd);
  w.syncViaStorageIoPipelined(fio, fd);
  const second = w.position();
  assert.equal(w.syncsInFlight(), 2);
  // The second datasync (and every write) completes and is polled; the first one's completion is held.
  await pump(w, fio, () => hold.held === 1 && fio.pendingCount() === 1);
  assert.equal(w.writesInFlight(), 0);
  assert.equal(w.syncedPosition(), 0, 'nothing durable while the first datasync is out');
  assert.equal(w.syncsInFlight(), 2);
  assert.ok(w.isSyncPending());
  hold.release();
  await pump(w, fio, () => !w.isSyncPending());
  assert.equal(w.syncedPosition(), second);
  assert.ok(second > first);
  fio.close();
  w.close();
});

test('writer: the public syncViaStorageIo still refuses a second datasync with SYNC_IN_FLIGHT', async () => {
  const sio = new ThreadPoolStorageIo();
  const { w, fd } = writerOn(sio);
  w.appendPutViaStorageIo(b('a'), b('1'), sio, fd);
  w.syncViaStorageIoPipelined(sio, fd);
  assert.throws(() => w.syncViaStorageIo(sio, fd), (e) => codeOf(e) === 'SYNC_IN_FLIGHT');
  w.syncViaStorageIoPipelined(sio, fd);
  assert.equal(w.syncsInFlight(), 2);
  await pump(w, sio, () => !w.isSyncPending());
  assert.equal(w.syncedPosition(), w.position());
  w.syncViaStorageIo(sio, fd);
  await pump(w, sio, () => !w.isSyncPending());
  sio.close();
  w.close();
});

test('writer: the first of two datasyncs failing poisons, though the second succeeded before it', async () => {
  // 'continue': the failed datasync does not cancel the second one, which really runs and succeeds.
  const fio = new FaultInjectingStorageIo(new ThreadPoolStorageIo(), { afterFailure: 'continue' });
  const { w, fd } = writerOn(fio);
  w.appendPutViaStorageIo(b('a'), b('1'), fio, fd);
  await pump(w, fio, () => w.writesInFlight() === 0);
  const hold = fio.hold({ op: 'datasync', times: 1 });
  fio.failNext('datasync', 'EIO');
  w.syncViaStorageIoPipelined(fio, fd);
  w.appendPutViaStorageIo(b('b'), b('2'), fio, fd);
  w.syncViaStorageIoPipelined(fio, fd);
  await pump(w, fio, () => hold.held === 1 && fio.pendingCount() === 1);
  assert.equal(w.writesInFlight(), 0);
  assert.equal(w.syncsInFlight(), 2, 'the second datasync completed, yet is not retired');
  assert.equal(w.syncedPosition(), 0, 'the second datasync alone proves nothing');
  hold.release();
  const err = await pump(w, fio, () => !w.isSyncPending());
  assert.ok(err instanceof PerCoreWalError && err.code === 'IO' && err.errno === constants.errno.EIO);
  assert.equal(w.syncedPosition(), 0);
  assert.ok(w.isPoisoned());
  assert.throws(() => w.appendPutViaStorageIo(b('c'), b('3'), fio, fd), (e) => codeOf(e) === 'POISONED');
  fio.close();
  w.close();
});

test('writer: the second of two datasyncs failing keeps the first one\'s boundary durable', async () => {
  const fio = new FaultInjectingStorageIo(new ThreadPoolStorageIo());
  const { w, fd } = writerOn(fio);
  w.appendPutViaStorageIo(b('a'), b('1'), fio, fd);
  w.syncViaStorageIoPipelined(fio, fd);
  const first = w.position();
  // The failure, delivered by the wrapper at submission (completions are collected only
  // when polled, so the hold takes exactly it), is held back until the first datasync's
  // success has been seen: a fixed delay raced the real fdatasync on a loaded machine.
  const held = fio.hold({ op: 'datasync', times: 1 });
  fio.failNext('datasync', 'EIO');
  w.appendPutViaStorageIo(b('b'), b('2'), fio, fd);
  w.syncViaStorageIoPipelined(fio, fd);
  assert.equal(held.held, 1);
  assert.equal(await pump(w, fio, () => w.syncedPosition() === first), null);
  held.release();
  const err = await pump(w, fio, () => !w.isSyncPending());
  assert.ok(err instanceof PerCoreWalError && err.code === 'IO');
  assert.equal(w.syncedPosition(), first);
  assert.ok(w.isPoisoned());
  fio.close();
  w.close();
});

// ---- GroupCommitLog ------------------------------------------------------------------

test('group commit: with two datasyncs in flight, a group whose datasync completes first waits for the one before', async () => {
  const fio = new FaultInjectingStorageIo(new ThreadPoolStorageIo());
  const log = GroupCommitLog.open(seg(), { storageIo: fio, maxSyncsInFlight: 2 });
  await log.put(b('warm'), b('0'));
  const hold = fio.hold({ op: 'datasync', times: 1 });
  let aDone = false, bDone = false;
  const a = log.put(b('a'), b('1')).then((p) => { aDone = true; return p; });
  await until(() => hold.held === 1, 'the first datasync to be held');
  const bp = log.put(b('b'), b('2')).then((p) => { bDone = true; return p; });
  await until(() => log.stats().groups === 3, 'the second group\'s datasync');
  // Let the second datasync run and complete underneath.
  await sleep(30);
  assert.equal(aDone || bDone, false, 'neither group resolved while the first datasync is held');
  hold.release();
  const [pa, pb] = await Promise.all([a, bp]);
  assert.ok(pb > pa);
  assert.equal(log.syncedPosition(), log.position());
  await log.close();
});

test('group commit: the first of two datasyncs in flight failing rejects both groups, the second\'s success notwithstanding', async () => {
  const fio = new FaultInjectingStorageIo(new ThreadPoolStorageIo(), { afterFailure: 'continue' });
  const p = seg();
  const log = GroupCommitLog.open(p, { storageIo: fio, maxSyncsInFlight: 2 });
  const durable = await log.put(b('ok'), b('0'));
  const hold = fio.hold({ op: 'datasync', times: 1 });
  fio.failNext('datasync', 'EIO');
  const a = log.put(b('a'), b('1'));
  await until(() => hold.held === 1, 'the failed datasync to be held');
  const bp = log.put(b('b'), b('2'));
  await until(() => log.stats().groups === 3, 'the second group\'s datasync');
  await sleep(30);
  hold.release();
  const [ra, rb] = await Promise.allSettled([a, bp]);
  for (const r of [ra, rb]) {
    assert.equal(r.status, 'rejected');
    const e = (r as PromiseRejectedResult).reason;
    assert.ok(e instanceof PerCoreWalError && e.code === 'IO' && e.errno === constants.errno.EIO);
  }
  assert.equal(durable, 0);
  assert.ok(log.syncedPosition() > 0 && log.syncedPosition() < log.position());
  await assert.rejects(log.put(b('c'), b('3')), (e) => codeOf(e) === 'POISONED');
  await log.close();
});

test('group commit: the second datasync failing rejects the earlier group still in flight too', async () => {
  // The kernel reports a writeback error to one fdatasync of the file: the later one may
  // have taken the error of the earlier one's pages, so the earlier one's success is no proof.
  const fio = new FaultInjectingStorageIo(new ThreadPoolStorageIo());
  const log = GroupCommitLog.open(seg(), { storageIo: fio, maxSyncsInFlight: 2 });
  await log.put(b('warm'), b('0'));
  const synced = log.syncedPosition();
  const hold = fio.hold({ op: 'datasync', times: 1 });
  const a = log.put(b('a'), b('1'));
  await until(() => hold.held === 1, 'the first datasync to be held');
  fio.failNext('datasync', 'EIO');
  const bp = log.put(b('b'), b('2'));
  const [ra, rb] = await Promise.allSettled([a, bp]);
  assert.equal(ra.status, 'rejected');
  assert.equal(rb.status, 'rejected');
  assert.equal(codeOf((ra as PromiseRejectedResult).reason), 'IO');
  hold.release();
  await log.close();
  assert.equal(log.syncedPosition(), synced);
});

/**
 * A pass-through backend that checks, whenever the log resolves a record, that a datasync
 * covering it has completed well, with every write before it and every datasync before it.
 */
class CoverageCheck implements StorageIo {
  readonly inner: StorageIo;
  private writes = new Map<number, { end: number; done: boolean }>();
  private syncs: { token: number; boundary: number; writesBefore: number[]; done: boolean; ok: boolean }[] = [];
  private maxEnd = 0;
  constructor(inner: StorageIo) { this.inner = inner; }
  registerFd(fd: number): IoFd { return this.inner.registerFd(fd); }
  deregisterFd(fd: IoFd): void { this.inner.deregisterFd(fd); }
  submitWrite(fd: IoFd, data: Uint8Array, offset: number): number {
    const t = this.inner.submitWrite(fd, data, offset);
    this.writes.set(t, { end: offset + data.length, done: false });
    if (offset + data.length > this.maxEnd) this.maxEnd = offset + data.length;
    return t;
  }
  submitAppend(): number { throw new Error('not used'); }
  submitZeros(fd: IoFd, offset: number, length: number): number { return this.inner.submitZeros!(fd, offset, length); }
  submitDatasync(fd: IoFd): number {
    const t = this.inner.submitDatasync(fd);
    this.syncs.push({ token: t, boundary: this.maxEnd, writesBefore: [...this.writes.keys()], done: false, ok: false });
    return t;
  }
  flush(): number { return this.inner.flush(); }
  pollCompletions(out: IoCompletion[]): void {
    const from = out.length;
    this.inner.pollCompletions(out);
    for (let i = from; i < out.length; i++) {
      const c = out[i]!;
      const wr = this.writes.get(c.token);
      if (wr !== undefined) wr.done = c.result >= 0;
      const s = this.syncs.find((x) => x.token === c.token);
      if (s !== undefined) { s.done = true; s.ok = c.result === 0; }
    }
  }
  pendingCount(): number { return this.inner.pendingCount(); }
  waitForCompletions(): Promise<void> { return this.inner.waitForCompletions(); }
  close(): void { this.inner.close(); }
  /** The end of the durable prefix as completions polled so far prove it. */
  provenDurable(): number {
    let proven = 0;
    for (const s of this.syncs) {
      if (!s.done || !s.ok) break;
      if (s.writesBefore.every((t) => this.writes.get(t)!.done)) proven = Math.max(proven, s.boundary);
    }
    return proven;
  }
}

test('group commit: under reordered and delayed completions no caller resolves before a covering datasync completed', async () => {
  for (const reorder of ['reverse', 'shuffle'] as const) {
    const fio = new FaultInjectingStorageIo(new ThreadPoolStorageIo(), { reorder, seed: 7 });
    fio.delay(3, { op: 'datasync', after: 1, times: Infinity });
    fio.delay(1, { op: 'write', after: 2, times: Infinity });
    const check = new CoverageCheck(fio);
    const p = seg();
    const log = GroupCommitLog.open(p, { storageIo: check, maxSyncsInFlight: 3 });
    const ends: number[] = [];
    let violations = 0;
    let resolved = 0;
    let maxInFlight = 0;
    const producer = async (id: number): Promise<void> => {
      for (let i = 0; i < 40; i++) {
        const pr = log.put(b(`p${id}-${i}`), Buffer.alloc(50 + ((id * 7 + i) % 90)));
        const end = log.position();
        ends.push(end);
        maxInFlight = Math.max(maxInFlight, log.writer().syncsInFlight());
        await pr;
        // Callers that come back at different times: records keep arriving while datasyncs run.
        const pause = (id + i) % 4;
        if (pause === 1) await new Promise((r) => setImmediate(r));
        else if (pause === 2) await sleep(1);
        resolved++;
        if (check.provenDurable() < end) violations++;
      }
    };
    await Promise.all(Array.from({ length: 32 }, (_, i) => producer(i)));
    assert.equal(violations, 0, `${reorder}: resolved before proven durable`);
    assert.equal(resolved, 32 * 40);
    assert.ok(log.stats().groups > 1);
    assert.ok(maxInFlight > 1, 'datasyncs overlapped');
    await log.close();
    assert.equal(readCore(p, 0).length, 32 * 40);
  }
});

test('group commit: maxSyncsInFlight is validated', () => {
  assert.throws(() => GroupCommitLog.open(seg(), { maxSyncsInFlight: 0 }), (e) => codeOf(e) === 'INVALID_ARGUMENT');
  assert.throws(() => GroupCommitLog.open(seg(), { maxSyncsInFlight: 1.5 }), (e) => codeOf(e) === 'INVALID_ARGUMENT');
});

test('writer: zero-fills ahead while datasyncs are small, lets the file grow while they are large', async () => {
  const fio = new FaultInjectingStorageIo(new ThreadPoolStorageIo());
  const w = CoreWalWriter.create(0, seg(), { preallocate: 1 << 20 });
  const fd = registerWriterSegment(w, fio);
  const zeros = (): number => fio.log.filter((e) => e.op === 'zeros').length;
  const round = async (records: number, valueLen: number): Promise<void> => {
    for (let i = 0; i < records; i++) w.appendPut(b('k'), Buffer.alloc(valueLen, 1));
    w.flushViaStorageIo(fio, fd);
    w.syncViaStorageIo(fio, fd);
    await pump(w, fio, () => !w.isSyncPending() && w.writesInFlight() === 0);
  };
  // Small datasyncs: a zero-filled piece (no more than 128 KiB) stays ahead of them.
  for (let r = 0; r < 20; r++) await round(1, 100);
  assert.equal(zeros(), 1);
  assert.ok(fio.log.find((e) => e.op === 'zeros')!.length <= 128 * 1024 + 200);
  for (let r = 0; r < 1000; r++) await round(1, 100);
  assert.ok(zeros() > 1 && zeros() < 8, `one zero-fill per 64 KiB or so: ${zeros()}`);
  // Datasyncs of 256 KiB each (a quarter of the step): past the first one, no more zeros.
  await round(64, 4096);
  const afterLarge = zeros();
  for (let r = 0; r < 12; r++) await round(64, 4096);
  assert.equal(zeros(), afterLarge, 'no zero-fill while datasyncs are large');
  // Small again: zero-filling resumes once the running mean has come down.
  for (let r = 0; r < 20; r++) await round(1, 100);
  assert.ok(zeros() > afterLarge);
  assert.equal(w.syncedPosition(), w.position());
  fio.close();
  w.close();
  assert.equal(readCore(w.path(), 0).length, 20 + 1000 + 13 * 64 + 20);
});
