import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { constants } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import {
  CoreWalWriter, PerCoreWalEntry, PerCoreWalError, registerWriterSegment, scanSegment, StorageIoError,
} from '../../src/index.js';
import type { IoCompletion, IoFd, StorageIo } from '../../src/index.js';
import { FaultInjectingStorageIo } from '../../src/testing/index.js';
import { readCore } from './read-core.js';
import { b, tempDir } from './tmp.js';

/** Flushes, then waits until nothing is pending; returns the completions in hand-out order. */
export async function drainAll(sio: StorageIo): Promise<IoCompletion[]> {
  const out: IoCompletion[] = [];
  sio.flush();
  while (sio.pendingCount() > 0) {
    await sio.waitForCompletions();
    sio.pollCompletions(out);
  }
  return out;
}

export interface StorageIoFactoryOptions {
  /** Operations submitted and not yet polled before QUEUE_FULL. */
  maxQueued?: number;
}
export type StorageIoFactory = (options?: StorageIoFactoryOptions) => StorageIo;

const ECANCELED = constants.errno.ECANCELED;
const EBADF = constants.errno.EBADF;
const EIO = constants.errno.EIO;

/** Polls until every token in `tokens` has completed; returns all completions polled, in order. */
export async function waitForTokens(sio: StorageIo, tokens: Iterable<number>, timeoutMs = 10_000): Promise<IoCompletion[]> {
  const want = new Set(tokens);
  const got: IoCompletion[] = [];
  const deadline = Date.now() + timeoutMs;
  sio.flush();
  while (want.size > 0) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for tokens ${[...want].join(',')}`);
    await sio.waitForCompletions();
    const before = got.length;
    sio.pollCompletions(got);
    for (let i = before; i < got.length; i++) want.delete(got[i]!.token);
    if (got.length === before) await new Promise((r) => setImmediate(r));
  }
  return got;
}

/** Feeds completions to `writer` until it has nothing in flight; returns the first error thrown. */
export async function settle(writer: CoreWalWriter, sio: StorageIo, timeoutMs = 10_000): Promise<unknown> {
  const deadline = Date.now() + timeoutMs;
  const out: IoCompletion[] = [];
  let error: unknown = null;
  sio.flush();
  while (writer.isSyncPending() || writer.writesInFlight() > 0) {
    if (Date.now() > deadline) throw new Error('timed out waiting for the writer to settle');
    await sio.waitForCompletions();
    out.length = 0;
    sio.pollCompletions(out);
    try {
      writer.checkCompletions(out);
    } catch (e) {
      error ??= e;
    }
    if (out.length === 0) await new Promise((r) => setImmediate(r));
  }
  return error;
}

function codeOf(e: unknown): string | undefined {
  return (e as { code?: string }).code;
}

/**
 * The behaviour every StorageIo backend must show, run against `factory`: the
 * submission/completion contract, ordering (SPEC invariant 2), failure handling, and the
 * writer's StorageIo path on top of it (SPEC invariants 1 and 3).
 */
export function storageIoSuite(name: string, factory: StorageIoFactory): void {
  describe(`${name} — StorageIo contract`, () => {
    const dir = tempDir();
    let n = 0;
    const file = (content = ''): string => {
      const p = join(dir, `f-${n++}.bin`);
      fs.writeFileSync(p, content);
      return p;
    };
    const open = (sio: StorageIo, p: string, flags = 'r+'): IoFd => sio.registerFd(fs.openSync(p, flags));

    test('writes land at their offsets and complete with their full length', async () => {
      const sio = factory();
      const p = file();
      const fd = open(sio, p);
      const t1 = sio.submitWrite(fd, b('hello'), 0);
      const t2 = sio.submitWrite(fd, b('world'), 10);
      const t3 = sio.submitWrite(fd, b('-'), 5);
      const t4 = sio.submitWrite(fd, new Uint8Array(0), 3);
      const got = await waitForTokens(sio, [t1, t2, t3, t4]);
      const res = new Map(got.map((c) => [c.token, c.result]));
      assert.deepEqual([res.get(t1), res.get(t2), res.get(t3), res.get(t4)], [5, 5, 1, 0]);
      sio.close();
      const data = fs.readFileSync(p);
      assert.equal(data.subarray(0, 6).toString(), 'hello-');
      assert.equal(data.subarray(10).toString(), 'world');
    });

    test('tokens are positive and increase in submission order', async () => {
      const sio = factory();
      const fd = open(sio, file());
      const toks = [sio.submitAppend(fd, b('a')), sio.submitDatasync(fd), sio.submitWrite(fd, b('b'), 7), sio.submitAppend(fd, b('c'))];
      for (let i = 0; i < toks.length; i++) {
        assert.ok(Number.isSafeInteger(toks[i]) && toks[i]! > 0);
        if (i > 0) assert.ok(toks[i]! > toks[i - 1]!);
      }
      await waitForTokens(sio, toks);
      sio.close();
    });

    test('submitAppend starts at the size at registration and advances', async () => {
      const sio = factory();
      const p = file('abc');
      const fd = open(sio, p);
      const toks = [sio.submitAppend(fd, b('def')), sio.submitAppend(fd, b('gh'))];
      const got = await waitForTokens(sio, toks);
      assert.deepEqual(got.map((c) => c.result).sort(), [2, 3]);
      sio.close();
      assert.equal(fs.readFileSync(p, 'utf8'), 'abcdefgh');
    });

    test('the caller may reuse its buffer as soon as submit returns', async () => {
      const sio = factory();
      const p = file();
      const fd = open(sio, p);
      const buf = Buffer.from('original');
      const t = sio.submitWrite(fd, buf, 0);
      buf.fill(0x58); // 'X'
      const t2 = sio.submitAppend(fd, buf.subarray(0, 0));
      await waitForTokens(sio, [t, t2]);
      sio.close();
      assert.equal(fs.readFileSync(p, 'utf8'), 'original');
    });

    test('a datasync is never completed before an earlier write on its fd (invariant 2)', async () => {
      const sio = factory();
      const p = file();
      const fd = open(sio, p);
      const writes: number[] = [];
      const big = Buffer.alloc(3 << 20, 1); // larger than any slab: its own path through the backend
      writes.push(sio.submitWrite(fd, big, 0));
      for (let i = 0; i < 200; i++) writes.push(sio.submitWrite(fd, Buffer.alloc(100, i), big.length + i * 100));
      const s1 = sio.submitDatasync(fd);
      writes.push(sio.submitWrite(fd, b('tail'), big.length + 200 * 100));
      const s2 = sio.submitDatasync(fd);
      const got = await waitForTokens(sio, [...writes, s1, s2]);
      const at = new Map(got.map((c, i) => [c.token, i]));
      for (const w of writes.slice(0, -1)) assert.ok(at.get(w)! < at.get(s1)!, `write ${w} completed before datasync ${s1}`);
      assert.ok(at.get(writes[writes.length - 1]!)! < at.get(s2)!);
      assert.equal(got.find((c) => c.token === s1)!.result, 0);
      for (const c of got) assert.ok(c.result >= 0, `token ${c.token} failed with ${c.result}`);
      sio.close();
      const data = fs.readFileSync(p);
      assert.equal(data.length, big.length + 200 * 100 + 4);
      for (let i = 0; i < 200; i++) assert.equal(data[big.length + i * 100 + 50], i);
    });

    test('pollCompletions appends, and pendingCount counts what is not yet polled', async () => {
      const sio = factory();
      const fd = open(sio, file());
      const t1 = sio.submitAppend(fd, b('x'));
      const t2 = sio.submitDatasync(fd);
      assert.equal(sio.pendingCount(), 2);
      const out: IoCompletion[] = [{ token: -1, result: 0 }];
      sio.flush();
      while (out.length < 3) {
        await sio.waitForCompletions();
        sio.pollCompletions(out);
      }
      assert.equal(out[0]!.token, -1);
      assert.deepEqual(out.slice(1).map((c) => c.token).sort((a, b2) => a - b2), [t1, t2]);
      assert.equal(sio.pendingCount(), 0);
      sio.close();
    });

    test('waitForCompletions resolves at once when there is something to poll', async () => {
      const sio = factory();
      const fd = open(sio, file());
      const t = sio.submitAppend(fd, b('x'));
      await waitForTokens(sio, []); // flushes
      const got: IoCompletion[] = [];
      while (got.length === 0) {
        await sio.waitForCompletions();
        // Now staged: a second wait must not block.
        await sio.waitForCompletions();
        sio.pollCompletions(got);
      }
      assert.equal(got[0]!.token, t);
      sio.close();
    });

    test('unknown, deregistered and invalid fds fail with BAD_FD', async () => {
      const sio = factory();
      const p = file();
      const fd = open(sio, p);
      assert.throws(() => sio.submitWrite(12345 as IoFd, b('x'), 0), (e) => e instanceof StorageIoError && e.code === 'BAD_FD');
      assert.throws(() => sio.registerFd(-1), (e) => codeOf(e) === 'BAD_FD');
      const t = sio.submitAppend(fd, b('before deregister'));
      sio.deregisterFd(fd);
      assert.throws(() => sio.submitAppend(fd, b('x')), (e) => codeOf(e) === 'BAD_FD');
      assert.throws(() => sio.submitDatasync(fd), (e) => codeOf(e) === 'BAD_FD');
      // What was submitted before deregistration still completes.
      const got = await waitForTokens(sio, [t]);
      assert.equal(got.find((c) => c.token === t)!.result, 17);
      sio.close();
      assert.equal(fs.readFileSync(p, 'utf8'), 'before deregister');
    });

    test('deregisterFd closes the OS descriptor once its operations completed', async () => {
      const sio = factory();
      const os = fs.openSync(file(), 'r+');
      const fd = sio.registerFd(os);
      const t = sio.submitAppend(fd, b('x'));
      sio.deregisterFd(fd);
      await waitForTokens(sio, [t]);
      const deadline = Date.now() + 5000;
      for (;;) {
        try {
          fs.fstatSync(os);
        } catch (e) {
          assert.equal(codeOf(e), 'EBADF');
          break;
        }
        assert.ok(Date.now() < deadline, 'descriptor still open');
        await new Promise((r) => setTimeout(r, 2));
      }
      sio.close();
    });

    test('after close every call fails with CLOSED; close is idempotent', () => {
      const sio = factory();
      const fd = open(sio, file());
      sio.close();
      sio.close();
      const closed = (e: unknown): boolean => codeOf(e) === 'CLOSED';
      assert.throws(() => sio.submitWrite(fd, b('x'), 0), closed);
      assert.throws(() => sio.submitAppend(fd, b('x')), closed);
      assert.throws(() => sio.submitDatasync(fd), closed);
      assert.throws(() => sio.registerFd(0), closed);
      assert.throws(() => sio.flush(), closed);
      assert.throws(() => sio.pollCompletions([]), closed);
    });

    test('past maxQueued, submit fails with QUEUE_FULL and queues nothing; polling frees room', async () => {
      const sio = factory({ maxQueued: 4 });
      const p = file();
      const fd = open(sio, p);
      const toks = [0, 1, 2, 3].map((i) => sio.submitWrite(fd, b(String(i)), i));
      assert.throws(() => sio.submitWrite(fd, b('4'), 4), (e) => e instanceof StorageIoError && e.code === 'QUEUE_FULL');
      assert.throws(() => sio.submitDatasync(fd), (e) => codeOf(e) === 'QUEUE_FULL');
      assert.equal(sio.pendingCount(), 4);
      await waitForTokens(sio, toks);
      const t = sio.submitWrite(fd, b('4'), 4);
      await waitForTokens(sio, [t]);
      sio.close();
      assert.equal(fs.readFileSync(p, 'utf8'), '01234');
    });

    test('bad arguments fail before anything is queued', () => {
      const sio = factory();
      const fd = open(sio, file());
      assert.throws(() => sio.submitWrite(fd, 'text' as unknown as Uint8Array, 0), (e) => e instanceof PerCoreWalError && e.code === 'INVALID_ARGUMENT');
      assert.throws(() => sio.submitWrite(fd, b('x'), -1), (e) => e instanceof PerCoreWalError && e.code === 'INVALID_POSITION');
      assert.throws(() => sio.submitWrite(fd, b('x'), 1.5), (e) => codeOf(e) === 'INVALID_POSITION');
      assert.equal(sio.pendingCount(), 0);
      sio.close();
    });

    test('a failed write reports -errno; later operations on that fd complete with -ECANCELED without running', async () => {
      const sio = factory();
      const p = file('0123456789');
      const fd = sio.registerFd(fs.openSync(p, 'r')); // read-only: every write(2) fails with EBADF
      const other = open(sio, file());
      const w1 = sio.submitWrite(fd, b('AB'), 0);
      const w2 = sio.submitWrite(fd, b('CD'), 4);
      const s = sio.submitDatasync(fd);
      const o = sio.submitAppend(other, b('ok'));
      const got = await waitForTokens(sio, [w1, w2, s, o]);
      const res = new Map(got.map((c) => [c.token, c.result]));
      assert.equal(res.get(w1), -EBADF);
      // Had they run, they would have failed with EBADF (the write) or succeeded (the datasync).
      assert.equal(res.get(w2), -ECANCELED);
      assert.equal(res.get(s), -ECANCELED);
      assert.equal(res.get(o), 2, 'other fds are not affected');
      const late = sio.submitWrite(fd, b('EF'), 8);
      const lateRes = await waitForTokens(sio, [late]);
      assert.equal(lateRes.find((c) => c.token === late)!.result, -ECANCELED);
      sio.close();
      assert.equal(fs.readFileSync(p, 'utf8'), '0123456789');
    });

    test('ENOSPC from the device reaches the completion', async () => {
      if (!fs.existsSync('/dev/full')) return;
      const sio = factory();
      const fd = sio.registerFd(fs.openSync('/dev/full', 'w'));
      const t = sio.submitWrite(fd, b('x'), 0);
      const got = await waitForTokens(sio, [t]);
      assert.equal(got.find((c) => c.token === t)!.result, -constants.errno.ENOSPC);
      sio.close();
    });

    test('submitWriteOwned, when offered, writes the caller\'s bytes in order with copied writes and datasyncs', async () => {
      const sio = factory();
      if (sio.submitWriteOwned === undefined) { sio.close(); return; }
      const p = file();
      const fd = open(sio, p);
      const big = Buffer.alloc(200_000, 0x41);
      const toks = [sio.submitWrite(fd, b('head'), 0), sio.submitWriteOwned(fd, big, 4), sio.submitDatasync(fd),
        sio.submitWriteOwned(fd, b('tail'), 200_004), sio.submitWriteOwned(fd, new Uint8Array(0), 9)];
      const got = new Map((await waitForTokens(sio, toks)).map((c) => [c.token, c.result]));
      assert.deepEqual(toks.map((t) => got.get(t)), [4, 200_000, 0, 4, 0]);
      sio.close();
      const data = fs.readFileSync(p);
      assert.equal(data.length, 200_008);
      assert.equal(data.subarray(0, 4).toString(), 'head');
      assert.ok(data.subarray(4, 200_004).every((x) => x === 0x41));
      assert.equal(data.subarray(200_004).toString(), 'tail');
    });

    test('submitZeros, when offered, writes zeros without a buffer', async () => {
      const sio = factory();
      if (sio.submitZeros === undefined) { sio.close(); return; }
      const p = file('x'.repeat(10));
      const fd = open(sio, p);
      const t = sio.submitZeros(fd, 2, 5);
      const t2 = sio.submitZeros(fd, 3 << 20, 4096);
      const got = await waitForTokens(sio, [t, t2]);
      assert.deepEqual(got.map((c) => c.result).sort((a, c) => a - c), [5, 4096]);
      sio.close();
      const data = fs.readFileSync(p);
      assert.equal(data.subarray(0, 10).toString('latin1'), 'xx\0\0\0\0\0xxx');
      assert.equal(data.length, (3 << 20) + 4096);
    });
  });

  describe(`${name} — the writer's StorageIo path`, () => {
    const dir = tempDir();
    let n = 0;
    const seg = (): string => join(dir, `wal-${n++}.log`);
    const setup = (opts: { sio?: StorageIo; preallocate?: number } = {}): { w: CoreWalWriter; sio: StorageIo; fd: IoFd; p: string } => {
      const p = seg();
      const w = CoreWalWriter.create(0, p, { preallocate: opts.preallocate ?? 0 });
      const sio = opts.sio ?? factory();
      return { w, sio, fd: registerWriterSegment(w, sio), p };
    };
    const entries = (p: string): PerCoreWalEntry[] => readCore(p, 0);

    test('boundary: append A, sync, append B, complete → syncedPosition is the end of A', async () => {
      const { w, sio, fd, p } = setup();
      const a = w.appendPutViaStorageIo(b('a'), b('1'), sio, fd);
      const endA = w.position();
      w.syncViaStorageIo(sio, fd);
      const bPos = w.appendPutViaStorageIo(b('b'), b('2'), sio, fd);
      assert.equal(bPos, endA);
      assert.equal(w.syncedPosition(), 0, 'nothing is durable before completions are checked');
      assert.equal(await settle(w, sio), null);
      assert.equal(a, 0);
      assert.equal(w.syncedPosition(), endA);
      assert.ok(w.position() > endA);
      w.syncViaStorageIo(sio, fd);
      assert.equal(await settle(w, sio), null);
      assert.equal(w.syncedPosition(), w.position());
      sio.close();
      w.close();
      assert.deepEqual(entries(p).map((e) => Buffer.from(e.key()!).toString()), ['a', 'b']);
    });

    test('a second syncViaStorageIo while one is pending fails with SYNC_IN_FLIGHT, without poisoning', async () => {
      const { w, sio, fd } = setup();
      w.appendPutViaStorageIo(b('k'), b('v'), sio, fd);
      w.syncViaStorageIo(sio, fd);
      assert.ok(w.isSyncPending());
      assert.throws(() => w.syncViaStorageIo(sio, fd), (e) => e instanceof PerCoreWalError && e.code === 'SYNC_IN_FLIGHT');
      assert.throws(() => w.sync(), (e) => codeOf(e) === 'SYNC_IN_FLIGHT');
      assert.equal(await settle(w, sio), null);
      assert.equal(w.isPoisoned(), false);
      assert.equal(w.isSyncPending(), false);
      assert.equal(w.syncedPosition(), w.position());
      sio.close();
      w.close();
    });

    test('errno of a failed write reaches checkCompletions: IO with errno, then POISONED', async () => {
      const fio = new FaultInjectingStorageIo(factory());
      const { w, fd } = setup({ sio: fio });
      fio.failNext('write', 'EIO');
      w.appendPutViaStorageIo(b('k'), b('v'), fio, fd);
      w.syncViaStorageIo(fio, fd);
      const err = await settle(w, fio);
      assert.ok(err instanceof PerCoreWalError);
      assert.equal(err.code, 'IO');
      assert.equal(err.errno, EIO);
      assert.match(err.message, /wal-\d+\.log.*byte 0/);
      assert.equal(w.syncedPosition(), 0);
      assert.throws(() => w.appendPutViaStorageIo(b('k'), b('v'), fio, fd), (e) => codeOf(e) === 'POISONED');
      assert.throws(() => w.syncViaStorageIo(fio, fd), (e) => codeOf(e) === 'POISONED');
      assert.throws(() => w.appendPut(b('k'), b('v')), (e) => codeOf(e) === 'POISONED');
      fio.close();
      w.close();
    });

    test('a write that fails before a datasync that succeeds: syncedPosition never passes it, the writer is poisoned, no record after the hole', async () => {
      // The disk loses B yet reports the datasync as good: the worst case for invariant 1.
      const fio = new FaultInjectingStorageIo(factory(), { afterFailure: 'cancelWrites' });
      const { w, fd, p } = setup({ sio: fio, preallocate: 64 * 1024 });
      w.appendPutViaStorageIo(b('a'), b('1'), fio, fd);
      w.syncViaStorageIo(fio, fd);
      assert.equal(await settle(w, fio), null);
      const endA = w.syncedPosition();
      assert.equal(endA, w.position());
      fio.failNext('write', 'EIO');
      const bPos = w.appendPutViaStorageIo(b('b'), b('2'), fio, fd);
      w.appendPutViaStorageIo(b('c'), b('3'), fio, fd);
      const syncTok = w.syncViaStorageIo(fio, fd);
      const err = await settle(w, fio);
      assert.equal(codeOf(err), 'IO');
      assert.ok(fio.log.some((l) => l.token === syncTok && l.fault === 'none'), 'the datasync really ran');
      assert.ok(w.syncedPosition() <= bPos, `syncedPosition ${w.syncedPosition()} passed the failed write at ${bPos}`);
      assert.equal(w.isPoisoned(), true);
      fio.close();
      w.close();
      const scan = scanSegment(0, p);
      assert.equal(scan.tail, 'clean');
      assert.equal(scan.entries, 1);
      assert.equal(scan.validEnd, endA);
      const data = fs.readFileSync(p);
      assert.ok(data.subarray(bPos).every((x) => x === 0), 'bytes after the hole are zeros only');
    });

    test('a short write poisons the writer; the rest of the fd is cancelled', async () => {
      const fio = new FaultInjectingStorageIo(factory());
      const { w, fd, p } = setup({ sio: fio });
      fio.shortWriteNext(10);
      const at = w.appendPutViaStorageIo(b('a'), b('1'), fio, fd);
      w.appendPutViaStorageIo(b('b'), b('2'), fio, fd);
      w.syncViaStorageIo(fio, fd);
      const err = await settle(w, fio);
      assert.ok(err instanceof PerCoreWalError && err.code === 'IO');
      assert.match(err.message, /short write of 10 of \d+ bytes/);
      assert.equal(err.position, at);
      assert.equal(w.syncedPosition(), 0);
      fio.close();
      w.close();
      assert.equal(fs.statSync(p).size, 10, 'only the 10 bytes of the short write reached the file');
      assert.equal(scanSegment(0, p).entries, 0);
    });

    test('a failed datasync poisons the writer and is never reported as success', async () => {
      const fio = new FaultInjectingStorageIo(factory());
      const { w, fd } = setup({ sio: fio });
      w.appendPutViaStorageIo(b('a'), b('1'), fio, fd);
      fio.failNext('datasync', 'EIO');
      w.syncViaStorageIo(fio, fd);
      const err = await settle(w, fio);
      assert.ok(err instanceof PerCoreWalError && err.code === 'IO' && err.errno === EIO);
      assert.equal(w.syncedPosition(), 0);
      assert.equal(w.isSyncPending(), false);
      assert.throws(() => w.syncViaStorageIo(fio, fd), (e) => codeOf(e) === 'POISONED');
      fio.close();
      w.close();
    });

    test('QUEUE_FULL becomes BACKPRESSURE: nothing appended, the writer stays usable', async () => {
      const sio = factory({ maxQueued: 3 });
      const { w, fd, p } = setup({ sio });
      w.appendPutViaStorageIo(b('1'), b('x'), sio, fd);
      w.appendPutViaStorageIo(b('2'), b('x'), sio, fd);
      w.appendPutViaStorageIo(b('3'), b('x'), sio, fd);
      const pos = w.position();
      const seq = w.sequence();
      assert.throws(() => w.appendPutViaStorageIo(b('4'), b('x'), sio, fd), (e) => e instanceof PerCoreWalError && e.code === 'BACKPRESSURE');
      assert.throws(() => w.syncViaStorageIo(sio, fd), (e) => codeOf(e) === 'BACKPRESSURE');
      assert.equal(w.position(), pos);
      assert.equal(w.sequence(), seq);
      assert.equal(w.isPoisoned(), false);
      assert.equal(await settle(w, sio), null);
      w.appendPutViaStorageIo(b('4'), b('x'), sio, fd);
      w.syncViaStorageIo(sio, fd);
      assert.equal(await settle(w, sio), null);
      assert.equal(w.syncedPosition(), w.position());
      sio.close();
      w.close();
      assert.deepEqual(entries(p).map((e) => e.sequence), [0n, 1n, 2n, 3n]);
    });

    test('completions polled in any order still move syncedPosition to the boundary', async () => {
      for (const mode of ['reverse', 'shuffle'] as const) {
        const fio = new FaultInjectingStorageIo(factory(), { reorder: mode, seed: 7 });
        const { w, fd } = setup({ sio: fio });
        for (let i = 0; i < 50; i++) w.appendPutViaStorageIo(b(`k${i}`), b('v'), fio, fd);
        // Hold the writes back so the datasync's completion is seen first.
        const hold = fio.hold({ op: 'write' });
        w.syncViaStorageIo(fio, fd);
        const out: IoCompletion[] = [];
        while (w.isSyncPending()) {
          await fio.waitForCompletions();
          out.length = 0;
          fio.pollCompletions(out);
          w.checkCompletions(out);
        }
        assert.equal(w.syncedPosition(), 0, 'writes not yet seen complete: nothing durable');
        hold.release();
        assert.equal(await settle(w, fio), null);
        assert.equal(w.syncedPosition(), w.position(), mode);
        fio.close();
        w.close();
      }
    });

    test('10 000 appends submitted without awaiting land in submission order', async () => {
      const { w, sio, fd, p } = setup({ preallocate: 256 * 1024 });
      const positions: number[] = [];
      for (let i = 0; i < 10_000; i++) positions.push(w.appendPutViaStorageIo(b(`key-${i}`), Buffer.alloc(i % 300, i & 0xff), sio, fd));
      w.syncViaStorageIo(sio, fd);
      assert.equal(await settle(w, sio), null);
      assert.equal(w.syncedPosition(), w.position());
      sio.close();
      w.close();
      const got = entries(p);
      assert.equal(got.length, 10_000);
      for (let i = 0; i < got.length; i++) {
        assert.equal(got[i]!.sequence, BigInt(i));
        assert.equal(Buffer.from(got[i]!.key()!).toString(), `key-${i}`);
        assert.equal(got[i]!.value()!.length, i % 300);
      }
      assert.ok(fs.statSync(p).size > w.position(), 'the segment was preallocated ahead through the backend');
    });

    test('direct appends buffered before and between StorageIo appends go out in order through the backend', async () => {
      const { w, sio, fd, p } = setup();
      w.appendPut(b('d1'), b('x'));
      w.appendPutViaStorageIo(b('s1'), b('x'), sio, fd);
      w.appendDelete(b('d2'));
      w.append(PerCoreWalEntry.checkpoint(0, 0, 0, 42, 0));
      w.appendDeleteViaStorageIo(b('s2'), sio, fd);
      w.appendPut(b('d3'), b('x'));
      assert.equal(w.flushViaStorageIo(sio, fd) > 0, true);
      w.syncViaStorageIo(sio, fd);
      assert.equal(await settle(w, sio), null);
      assert.equal(w.syncedPosition(), w.position());
      sio.close();
      w.close();
      const got = entries(p);
      assert.deepEqual(got.map((e) => e.operation.type), ['put', 'put', 'delete', 'checkpoint', 'delete', 'put']);
      assert.deepEqual(got.map((e) => e.sequence), [0n, 1n, 2n, 3n, 4n, 5n]);
    });

    // A flush of 16 KiB or more lends the append buffer to a backend with submitWriteOwned
    // (FaultInjectingStorageIo always offers it); the writer appends into a spare meanwhile.
    test('large flushes lend the append buffer: records intact across swaps while earlier flushes are still in flight', async () => {
      const fio = new FaultInjectingStorageIo(factory());
      fio.delay(3, { op: 'write' });
      const { w, fd, p } = setup({ sio: fio });
      const value = (i: number): Buffer => Buffer.alloc(1000 + (i % 50), i & 255);
      let i = 0;
      for (let round = 0; round < 6; round++) {
        for (let k = 0; k < 40; k++, i++) w.appendPut(b(`key-${i}`), value(i));
        assert.ok(w.flushViaStorageIo(fio, fd) >= 16 * 1024, 'a flush large enough to lend');
        fio.flush();
      }
      assert.ok(w.writesInFlight() > 1, 'several lent buffers in flight at once');
      w.syncViaStorageIo(fio, fd);
      assert.equal(await settle(w, fio), null);
      assert.equal(w.syncedPosition(), w.position());
      // Buffers came back: more appends reuse them.
      for (let k = 0; k < 40; k++, i++) w.appendPut(b(`key-${i}`), value(i));
      w.flushViaStorageIo(fio, fd);
      w.syncViaStorageIo(fio, fd);
      assert.equal(await settle(w, fio), null);
      fio.close();
      w.close();
      const got = entries(p);
      assert.equal(got.length, i);
      for (let j = 0; j < i; j++) {
        assert.equal(Buffer.from(got[j]!.key()!).toString(), `key-${j}`);
        assert.deepEqual(Buffer.from(got[j]!.value()!), value(j));
      }
    });

    test('a short write of a lent buffer poisons the writer, and nothing after it reaches the file', async () => {
      const fio = new FaultInjectingStorageIo(factory());
      const { w, fd, p } = setup({ sio: fio });
      for (let k = 0; k < 40; k++) w.appendPut(b(`a-${k}`), Buffer.alloc(1000, 1));
      w.flushViaStorageIo(fio, fd);
      fio.shortWriteNext(100);
      for (let k = 0; k < 40; k++) w.appendPut(b(`b-${k}`), Buffer.alloc(1000, 2));
      const second = w.position() - w.flushViaStorageIo(fio, fd);
      w.syncViaStorageIo(fio, fd);
      const err = await settle(w, fio);
      assert.ok(err instanceof PerCoreWalError && err.code === 'IO', String(err));
      assert.equal(err.position, second);
      assert.ok(w.syncedPosition() <= second);
      fio.close();
      w.close();
      assert.equal(fs.statSync(p).size, second + 100, 'the first flush, then only the 100 bytes of the short write');
      assert.equal(scanSegment(0, p).entries, 40);
    });

    test('two writers sharing one backend each take only their own completions', async () => {
      const sio = factory();
      const one = setup({ sio });
      const two = setup({ sio });
      one.w.appendPutViaStorageIo(b('one'), b('1'), sio, one.fd);
      two.w.appendPutViaStorageIo(b('two'), b('22'), sio, two.fd);
      one.w.syncViaStorageIo(sio, one.fd);
      const out: IoCompletion[] = [];
      while (one.w.isSyncPending() || one.w.writesInFlight() > 0) {
        await sio.waitForCompletions();
        out.length = 0;
        sio.pollCompletions(out);
        one.w.checkCompletions(out);
        two.w.checkCompletions(out);
      }
      assert.equal(one.w.syncedPosition(), one.w.position());
      assert.equal(two.w.syncedPosition(), 0, 'no datasync of its own yet');
      two.w.syncViaStorageIo(sio, two.fd);
      assert.equal(await settle(two.w, sio), null);
      assert.equal(two.w.syncedPosition(), two.w.position());
      sio.close();
      one.w.close();
      two.w.close();
      assert.equal(entries(one.p).length, 1);
      assert.equal(entries(two.p).length, 1);
    });
  });
}
