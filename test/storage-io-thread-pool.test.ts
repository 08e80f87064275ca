import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { constants } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { CoreWalWriter, nodeThreadPoolFs, PerCoreWalReader, registerWriterSegment, StorageIoError, ThreadPoolStorageIo } from '../src/index.js';
import type { IoCompletion, ThreadPoolFs } from '../src/index.js';
import { settle, storageIoSuite, waitForTokens } from './helpers/storage-io-suite.js';
import { b, tempDir } from './helpers/tmp.js';

storageIoSuite('ThreadPoolStorageIo', (o) => new ThreadPoolStorageIo(o));
// The same contract with a datasync always a pool job of its own (where the addon is not built).
storageIoSuite('ThreadPoolStorageIo without native jobs', (o) => new ThreadPoolStorageIo({ ...o, nativeJobs: false }));
// Native jobs, each queued to libuv afresh rather than handed to a lingering lane thread.
storageIoSuite('ThreadPoolStorageIo without lanes', (o) => new ThreadPoolStorageIo({ ...o, lingerMs: 0 }));

test('a datasync queued behind writes runs in the same native pool job, after them; a real write failure cancels it', async (t) => {
  const sio = new ThreadPoolStorageIo();
  if (!sio.info().nativeJobs) {
    sio.close();
    t.skip('the native addon is not built here');
    return;
  }
  const dir = tempDir();
  const p = join(dir, 'joined.bin');
  const fd = sio.registerFd(fs.openSync(p, 'w+'));
  const w1 = sio.submitAppend(fd, Buffer.alloc(100_000, 1));
  const w2 = sio.submitAppend(fd, b('tail'));
  const s1 = sio.submitDatasync(fd);
  const first = new Map((await waitForTokens(sio, [w1, w2, s1])).map((c) => [c.token, c.result]));
  assert.deepEqual([first.get(w1), first.get(w2), first.get(s1)], [100_000, 4, 0]);
  assert.equal(sio.info().writeDatasyncJobs, 1, 'both writes and the datasync went as one job');
  // A write at 32 TiB: EFBIG from ext4 (16 TiB files at most), inside the joined job.
  const far = sio.submitWrite(fd, b('too far'), 2 ** 45);
  const s2 = sio.submitDatasync(fd);
  const after = sio.submitAppend(fd, b('after'));
  const second = new Map((await waitForTokens(sio, [far, s2, after])).map((c) => [c.token, c.result]));
  sio.close();
  if (second.get(far)! >= 0) {
    t.skip(`this filesystem accepts a write at 32 TiB (result ${second.get(far)})`);
    return;
  }
  assert.equal(second.get(far), -constants.errno.EFBIG);
  assert.equal(second.get(s2), -constants.errno.ECANCELED, 'no datasync reports success over a failed write');
  assert.equal(second.get(after), -constants.errno.ECANCELED, 'nothing runs after the failure');
  const data = fs.readFileSync(p);
  assert.equal(data.length, 100_004);
  assert.equal(data.subarray(100_000).toString(), 'tail');
});

const dir = tempDir();
let n = 0;
const file = (content = ''): string => {
  const p = join(dir, `tp-${n++}.bin`);
  fs.writeFileSync(p, content);
  return p;
};

/** Node's fs with every call logged, and hooks to fail, shorten or delay chosen calls. */
function recordingFs(hooks: {
  write?: (call: number, len: number) => { errno?: number; short?: number; delayMs?: number } | void;
} = {}): { fs: ThreadPoolFs; calls: string[] } {
  const calls: string[] = [];
  let writes = 0;
  const doWrite = (kind: string, fd: number, bufs: Uint8Array[], pos: number, cb: (e: NodeJS.ErrnoException | null, n: number) => void): void => {
    const len = bufs.reduce((a, x) => a + x.length, 0);
    const call = writes++;
    calls.push(`${kind}@${pos}+${len}`);
    const h = hooks.write?.(call, len) ?? {};
    const run = (): void => {
      if (h.errno !== undefined) {
        setImmediate(() => cb(Object.assign(new Error('injected'), { errno: -h.errno!, code: 'EIO' }), 0));
        return;
      }
      if (h.short !== undefined) {
        // The kernel wrote only part of it.
        const one = Buffer.concat(bufs).subarray(0, h.short);
        nodeThreadPoolFs.write(fd, one, 0, one.length, pos, cb);
        return;
      }
      nodeThreadPoolFs.writev(fd, bufs, pos, cb);
    };
    if (h.delayMs !== undefined) setTimeout(run, h.delayMs); else run();
  };
  return {
    calls,
    fs: {
      write: (fd, buf, off, len, pos, cb) => doWrite('write', fd, [buf.subarray(off, off + len)], pos, cb),
      writev: (fd, bufs, pos, cb) => doWrite('writev', fd, bufs, pos, cb),
      fdatasync: (fd, cb) => { calls.push('fdatasync'); nodeThreadPoolFs.fdatasync(fd, cb); },
      close: (fd, cb) => { calls.push('close'); nodeThreadPoolFs.close(fd, cb); },
      fstatSync: (fd) => nodeThreadPoolFs.fstatSync(fd),
    },
  };
}

test('contiguous writes flushed together go out as one write; a gap starts another', async () => {
  const rec = recordingFs();
  const sio = new ThreadPoolStorageIo({ fs: rec.fs });
  const p = file();
  const fd = sio.registerFd(fs.openSync(p, 'r+'));
  const toks: number[] = [];
  for (let i = 0; i < 100; i++) toks.push(sio.submitWrite(fd, Buffer.alloc(10, 65 + (i % 26)), i * 10));
  toks.push(sio.submitWrite(fd, b('gap'), 2000));
  toks.push(sio.submitDatasync(fd));
  assert.deepEqual(rec.calls, [], 'nothing starts before flush');
  const got = await waitForTokens(sio, toks);
  assert.ok(got.every((c) => c.result >= 0));
  assert.deepEqual(rec.calls, ['write@0+1000', 'write@2000+3', 'fdatasync']);
  sio.close();
  const data = fs.readFileSync(p);
  for (let i = 0; i < 100; i++) assert.equal(data[i * 10], 65 + (i % 26));
});

test('a datasync starts only after every earlier write completed; later writes need not wait for it', async () => {
  // The slow write is slow enough that a loaded machine cannot finish it within the 10 ms look.
  const rec = recordingFs({ write: (call) => (call === 0 ? { delayMs: 500 } : undefined) });
  const sio = new ThreadPoolStorageIo({ fs: rec.fs });
  const fd = sio.registerFd(fs.openSync(file(), 'r+'));
  const w1 = sio.submitWrite(fd, b('first'), 0);
  const s = sio.submitDatasync(fd);
  const w2 = sio.submitWrite(fd, b('second'), 100);
  sio.flush();
  await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(rec.calls, ['write@0+5'], 'the datasync waits for the slow write');
  const got = await waitForTokens(sio, [w1, s, w2]);
  assert.deepEqual(rec.calls.slice(0, 2), ['write@0+5', 'fdatasync']);
  const order = got.map((c) => c.token);
  assert.ok(order.indexOf(w1) < order.indexOf(s));
  sio.close();
});

test('a failed write cancels everything queued after it on the fd: no record after a hole', async () => {
  const rec = recordingFs({ write: (call) => (call === 1 ? { errno: constants.errno.EIO } : undefined) });
  const sio = new ThreadPoolStorageIo({ fs: rec.fs });
  const p = file();
  const fd = sio.registerFd(fs.openSync(p, 'r+'));
  const a = sio.submitWrite(fd, b('AAAA'), 0);
  sio.flush(); // A goes alone
  const bTok = sio.submitWrite(fd, b('BBBB'), 4);
  const s = sio.submitDatasync(fd);
  sio.flush(); // B fails: EIO
  const c = sio.submitWrite(fd, b('CCCC'), 8);
  const got = await waitForTokens(sio, [a, bTok, s, c]);
  const res = new Map(got.map((x) => [x.token, x.result]));
  assert.equal(res.get(a), 4);
  assert.equal(res.get(bTok), -constants.errno.EIO);
  assert.equal(res.get(s), -constants.errno.ECANCELED);
  assert.equal(res.get(c), -constants.errno.ECANCELED);
  assert.deepEqual(rec.calls, ['write@0+4', 'write@4+4'], 'neither the datasync nor C ever ran');
  sio.close();
  assert.equal(fs.readFileSync(p, 'utf8'), 'AAAA');
});

test('a short write is completed by writing the rest', async () => {
  const rec = recordingFs({ write: (call) => (call === 0 ? { short: 7 } : undefined) });
  const sio = new ThreadPoolStorageIo({ fs: rec.fs });
  const p = file();
  const fd = sio.registerFd(fs.openSync(p, 'r+'));
  const toks = [sio.submitWrite(fd, b('0123456789'), 0), sio.submitWrite(fd, b('abcdef'), 10)];
  const got = await waitForTokens(sio, toks);
  assert.deepEqual(got.map((c) => c.result), [10, 6]);
  assert.deepEqual(rec.calls, ['write@0+16', 'write@7+9']);
  sio.close();
  assert.equal(fs.readFileSync(p, 'utf8'), '0123456789abcdef');
});

test('past maxBufferedBytes of copies, submit fails with BUFFER_EXHAUSTED and queues nothing', async () => {
  const sio = new ThreadPoolStorageIo({ slabSize: 4096, maxBufferedBytes: 8192 });
  const fd = sio.registerFd(fs.openSync(file(), 'r+'));
  const toks = [sio.submitWrite(fd, Buffer.alloc(2000), 0), sio.submitWrite(fd, Buffer.alloc(2000), 2000), sio.submitWrite(fd, Buffer.alloc(2000), 4000)];
  assert.throws(() => sio.submitWrite(fd, Buffer.alloc(5000), 6000), (e) => e instanceof StorageIoError && e.code === 'BUFFER_EXHAUSTED');
  assert.equal(sio.pendingCount(), 3);
  await waitForTokens(sio, toks);
  // Completed writes gave their slabs back.
  const t = sio.submitWrite(fd, Buffer.alloc(5000), 6000);
  await waitForTokens(sio, [t]);
  sio.close();
});

test('whenIdle resolves once nothing is running, keeping completions for polling', async () => {
  const sio = new ThreadPoolStorageIo();
  const fd = sio.registerFd(fs.openSync(file(), 'r+'));
  const t = sio.submitAppend(fd, b('x'));
  const s = sio.submitDatasync(fd);
  await sio.whenIdle();
  const out: IoCompletion[] = [];
  sio.pollCompletions(out);
  assert.deepEqual(out.map((c) => c.token), [t, s]);
  sio.close();
});

test('10 000 appends submitted without awaiting: in order on disk, and the event loop stays responsive', async () => {
  const p = join(dir, 'wal-responsive.log');
  const w = CoreWalWriter.create(0, p);
  const sio = new ThreadPoolStorageIo({ maxBufferedBytes: 256 << 20 });
  const fd = registerWriterSegment(w, sio);
  const value = Buffer.alloc(4096, 7); // 40 MB in all: the I/O takes a while
  for (let i = 0; i < 10_000; i++) w.appendPutViaStorageIo(b(`key-${i}`), value, sio, fd);
  w.syncViaStorageIo(sio, fd);
  // While libuv's threads write and sync, a 2 ms timer must keep firing.
  let ticks = 0;
  let worst = 0;
  let last = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    worst = Math.max(worst, now - last);
    last = now;
    ticks++;
  }, 2);
  const ioStart = performance.now();
  assert.equal(await settle(w, sio), null);
  const ioMs = performance.now() - ioStart;
  clearInterval(timer);
  assert.equal(w.syncedPosition(), w.position());
  sio.close();
  w.close();
  // A blocking backend would show no tick at all during the I/O. Generous bounds: the machine is shared.
  assert.ok(ticks >= Math.min(5, Math.floor(ioMs / 20)), `only ${ticks} timer ticks during ${ioMs.toFixed(1)} ms of I/O`);
  assert.ok(worst < Math.max(50, ioMs / 3), `the event loop stalled ${worst.toFixed(1)} ms during ${ioMs.toFixed(1)} ms of I/O`);
  const r = PerCoreWalReader.open(0, p);
  let i = 0;
  for (const e of r) {
    assert.equal(e.sequence, BigInt(i));
    assert.equal(Buffer.from(e.key()!).toString(), `key-${i}`);
    i++;
  }
  r.close();
  assert.equal(i, 10_000);
});

test('slabs recycled under pressure never corrupt data still in flight (randomised)', async () => {
  let seed = 12345;
  const rnd = (n: number): number => {
    seed ^= seed << 13; seed >>>= 0; seed ^= seed >>> 17; seed ^= seed << 5; seed >>>= 0;
    return seed % n;
  };
  const p = file();
  const sio = new ThreadPoolStorageIo({ slabSize: 4096, maxBufferedBytes: 32768, maxBatchBytes: 10_000 });
  const fd = sio.registerFd(fs.openSync(p, 'r+'));
  const expected: Buffer[] = [];
  let pos = 0;
  const pending = new Set<number>();
  const out: IoCompletion[] = [];
  for (let i = 0; i < 3000; i++) {
    const len = 1 + rnd(i % 10 === 0 ? 5000 : 1500);
    const data = Buffer.alloc(len, i & 0xff);
    if (len >= 4) data.writeUInt32LE(i, 0);
    let t: number;
    for (;;) {
      try {
        t = sio.submitWrite(fd, data, pos);
        break;
      } catch (e) {
        assert.ok(e instanceof StorageIoError && (e.code === 'BUFFER_EXHAUSTED' || e.code === 'QUEUE_FULL'));
        sio.flush();
        await sio.waitForCompletions();
        out.length = 0;
        sio.pollCompletions(out);
        for (const c of out) { assert.ok(c.result > 0); pending.delete(c.token); }
      }
    }
    data.fill(0xee); // the caller reuses its buffer at once
    expected.push(Buffer.alloc(len, i & 0xff));
    if (len >= 4) expected[expected.length - 1]!.writeUInt32LE(i, 0);
    pending.add(t);
    pos += len;
    if (rnd(4) === 0) sio.flush();
  }
  const rest = await waitForTokens(sio, pending);
  assert.ok(rest.every((c) => c.result > 0));
  sio.close();
  assert.ok(Buffer.concat(expected).equals(fs.readFileSync(p)));
});
