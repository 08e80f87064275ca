import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { closeSync, constants, fstatSync, openSync, readFileSync, readSync, statfsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import {
  CoreWalWriter, PerCoreWalError, PerCoreWalReader, scanSegment, StorageIoError, UringStorageIo,
  type IoCompletion, type IoFd, type UringStorageIoOptions,
} from '../src/index.js';
import { settle, storageIoSuite } from './helpers/storage-io-suite.js';
import { b, tempDir } from './helpers/tmp.js';
import { withSmallTmpfs } from './helpers/small-tmpfs.js';
import { drainAll } from './helpers/storage-io-suite.js';
import { runModule } from './helpers/run-module.js';

const support = UringStorageIo.isSupported();
const skip = support.supported ? false : `UringStorageIo unsupported here: ${support.reason}`;
if (skip) console.log(`# skipping io_uring tests — ${skip}`);
const indexUrl = pathToFileURL(fileURLToPath(new URL('../src/index.js', import.meta.url))).href;

const EBADF = 9;
const ENOSPC = 28;
const EINVAL = 22;
const EFBIG = 27;
const ECANCELED = 125;
const TMPFS_MAGIC = 0x01021994;

/** Waits until every pending operation has completed; returns the completions in hand-out order. */
const drain = drainAll;

function withIo(options: UringStorageIoOptions = {}): UringStorageIo {
  return UringStorageIo.create(options);
}

function code(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return (e as { code?: string }).code;
  }
  assert.fail('expected a throw');
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** 32 MiB: enough dirty pages for an fdatasync to take milliseconds on a disk. */
const BIG = Buffer.alloc(32 << 20, 1);

/**
 * A ring with `options`, a fresh file on a disk and, started, a write of {@link BIG} with a
 * datasync linked after it: a datasync that runs a while. Null, with the test skipped, on
 * tmpfs, where fdatasync returns at once.
 */
function slowDatasync(t: TestContext, options: UringStorageIoOptions = {}): { sio: UringStorageIo; fd: IoFd; p: string; w1: number; s1: number } | null {
  const dir = tempDir();
  if (statfsSync(dir).type === TMPFS_MAGIC) {
    t.skip('fdatasync on tmpfs returns at once: nothing runs long enough to overlap');
    return null;
  }
  const p = join(dir, 'slow-datasync.log');
  const sio = withIo(options);
  const fd = sio.registerFd(openSync(p, 'w+'));
  const w1 = sio.submitAppend(fd, BIG); // a private copy, one SQE
  const s1 = sio.submitDatasync(fd); // linked after it
  sio.flush();
  return { sio, fd, p, w1, s1 };
}

type Slow = NonNullable<ReturnType<typeof slowDatasync>>;

/**
 * Runs a scenario whose overlap with a running datasync depends on the datasync outlasting
 * the event loop's reaction to the write before it: milliseconds on a disk, but a machine
 * busy with other work can react later still. Up to three fresh attempts, each checking
 * everything else; the scenario returns why the overlap did not show, or null once it did.
 */
async function besideAttempts(t: TestContext, options: UringStorageIoOptions, scenario: (slow: Slow) => Promise<string | null>): Promise<void> {
  const misses: string[] = [];
  for (let attempt = 0; attempt < 3; attempt++) {
    const slow = slowDatasync(t, options);
    if (slow === null) return;
    try {
      const miss = await scenario(slow);
      if (miss === null) return;
      misses.push(miss);
    } finally {
      slow.sio.close();
    }
  }
  assert.fail(`the overlap never showed in three attempts: ${misses.join('; ')}`);
}

/** Where `token`'s completion stands in `done`, -1 if absent. */
const indexIn = (done: IoCompletion[], token: number): number => done.findIndex((c) => c.token === token);


describe('UringStorageIo', { skip }, () => {
  test('isSupported reports support with no reason; info describes the ring', () => {
    assert.deepEqual(UringStorageIo.isSupported(), { supported: true, reason: null });
    const sio = withIo({ queueDepth: 16, bufferCount: 4, bufferSize: 4096, sqpoll: false });
    try {
      const i = sio.info();
      assert.equal(i.sqpoll, false);
      assert.equal(i.queueDepth, 16);
      assert.equal(i.bufferCount, 4);
      assert.equal(i.freeBuffers, 4);
      assert.ok(i.cqEntries >= i.sqEntries);
    } finally {
      sio.close();
    }
  });

  for (const sqpoll of [true, false]) {
    test(`appends land in order after the size at register (sqpoll ${sqpoll})`, async () => {
      const dir = tempDir();
      const p = join(dir, 'a.log');
      writeFileSync(p, 'HEAD:');
      const sio = withIo({ sqpoll });
      try {
        const fd = sio.registerFd(openSync(p, 'r+'));
        const tokens: number[] = [];
        const lines: string[] = [];
        for (let i = 0; i < 200; i++) {
          lines.push(`record ${i};`);
          tokens.push(sio.submitAppend(fd, b(lines[i]!)));
          if (i % 37 === 0) sio.flush(); // some appends start before others are even queued
        }
        const done = await drain(sio);
        assert.deepEqual(done.map((c) => c.token), tokens, 'one completion per token, in order');
        for (let i = 0; i < done.length; i++) assert.equal(done[i]!.result, lines[i]!.length);
        assert.equal(readFileSync(p, 'utf8'), 'HEAD:' + lines.join(''));
        assert.ok(sio.info().sqesSubmitted < tokens.length, 'contiguous appends share SQEs');
        assert.equal(sio.info().freeBuffers, sio.info().bufferCount, 'every buffer returned to the pool');
      } finally {
        sio.close();
      }
    });
  }

  test('writes at explicit offsets, without coalescing, leave the append cursor alone', async () => {
    const dir = tempDir();
    const p = join(dir, 'w.bin');
    const sio = withIo({ coalesce: false, bufferSize: 4096 });
    try {
      const fd = sio.registerFd(openSync(p, 'w+'));
      const t1 = sio.submitWrite(fd, b('CCCC'), 100);
      const t2 = sio.submitWrite(fd, b('AAAA'), 0);
      const t3 = sio.submitWrite(fd, b('BBBB'), 50);
      const t4 = sio.submitAppend(fd, b('zz')); // cursor is still 0 (the size at register)
      const done = await drain(sio);
      assert.equal(sio.info().sqesSubmitted, 4);
      assert.deepEqual(new Map(done.map((c) => [c.token, c.result])), new Map([[t1, 4], [t2, 4], [t3, 4], [t4, 2]]));
      const data = readFileSync(p);
      assert.equal(data.length, 104);
      assert.equal(data.subarray(0, 4).toString(), 'zzAA');
      assert.equal(data.subarray(50, 54).toString(), 'BBBB');
      assert.equal(data.subarray(100, 104).toString(), 'CCCC');
      assert.ok(data.subarray(4, 50).every((x) => x === 0));
    } finally {
      sio.close();
    }
  });

  test('a write longer than a registered buffer goes from a private copy, bounded by maxCopyBytes', async () => {
    const dir = tempDir();
    const p = join(dir, 'big.bin');
    const sio = withIo({ bufferSize: 4096, bufferCount: 8, maxCopyBytes: 15_000 });
    try {
      const fd = sio.registerFd(openSync(p, 'w+'));
      const big = Buffer.alloc(10_000);
      for (let i = 0; i < big.length; i++) big[i] = (i * 7) & 0xff;
      const t = sio.submitAppend(fd, big);
      big.fill(0); // the backend copied it
      const t2 = sio.submitAppend(fd, b('tail'));
      assert.equal(sio.info().freeBuffers, 8 - 1, 'only the small write took a pool buffer');
      assert.equal(code(() => sio.submitAppend(fd, Buffer.alloc(6000))), 'BUFFER_EXHAUSTED', '10 000 + 6000 > maxCopyBytes');
      const done = await drain(sio);
      assert.deepEqual(done, [{ token: t, result: 10_000 }, { token: t2, result: 4 }]);
      const want = Buffer.alloc(10_000);
      for (let i = 0; i < want.length; i++) want[i] = (i * 7) & 0xff;
      assert.deepEqual(readFileSync(p), Buffer.concat([want, b('tail')]));
      assert.equal(sio.info().freeBuffers, 8);
      const huge = sio.submitAppend(fd, Buffer.alloc(20_000, 1)); // alone in flight: allowed past maxCopyBytes
      assert.deepEqual(await drain(sio), [{ token: huge, result: 20_000 }]);
    } finally {
      sio.close();
    }
  });

  test('nothing starts before flush(); a flush while the chain of the fd runs starts the rest when it ends', async () => {
    const dir = tempDir();
    const p = join(dir, 'f.bin');
    const sio = withIo();
    try {
      const fd = sio.registerFd(openSync(p, 'w+'));
      sio.submitAppend(fd, b('one'));
      const out: IoCompletion[] = [];
      sio.pollCompletions(out);
      await sleep(20);
      sio.pollCompletions(out);
      assert.equal(out.length, 0);
      assert.equal(readFileSync(p).length, 0, 'not started: submitted only');
      assert.equal(sio.flush(), 1);
      sio.submitDatasync(fd);
      sio.submitAppend(fd, b('two'));
      sio.flush(); // the chain of 'one' may still run: these wait for it, then start by themselves
      const done = await drain(sio);
      assert.equal(done.length + out.length, 3);
      assert.equal(readFileSync(p, 'utf8'), 'onetwo');
    } finally {
      sio.close();
    }
  });

  test('a zero-length write completes with 0 and writes nothing', async () => {
    const dir = tempDir();
    const p = join(dir, 'z.bin');
    const sio = withIo();
    try {
      const fd = sio.registerFd(openSync(p, 'w+'));
      const t = sio.submitAppend(fd, new Uint8Array(0));
      assert.deepEqual(await drain(sio), [{ token: t, result: 0 }]);
      assert.equal(readFileSync(p).length, 0);
    } finally {
      sio.close();
    }
  });

  test('datasync completes with 0, after every earlier write on its fd, in completion order', async () => {
    const dir = tempDir();
    const p = join(dir, 's.log');
    const sio = withIo();
    try {
      const fd = sio.registerFd(openSync(p, 'w+'));
      const writes: number[] = [];
      for (let i = 0; i < 50; i++) {
        writes.push(sio.submitAppend(fd, Buffer.alloc(3000, i)));
        if (i === 20) sio.flush();
      }
      const s = sio.submitDatasync(fd);
      const done = await drain(sio);
      const at = done.findIndex((c) => c.token === s);
      assert.equal(done[at]!.result, 0);
      for (const w of writes) {
        const i = done.findIndex((c) => c.token === w);
        assert.ok(i >= 0 && i < at, `write ${w} handed out before the datasync`);
      }
      assert.equal(fstatSync(openSync(p, 'r')).size, 50 * 3000);
      assert.equal(sio.info().cqesOutOfChainOrder, 0);
    } finally {
      sio.close();
    }
  });

  // A FIFO makes a write block in the kernel until someone reads: a datasync ordered after
  // it cannot complete before then. fsync of a FIFO fails with EINVAL, which makes its
  // completion visible. The control — a datasync on another registration of the same
  // FIFO, not ordered after those writes — completes at once, so the test can fail.
  // Flushed with the writes, the datasync is linked to them in the kernel; flushed later,
  // it waits in user space for their chain, then runs.
  for (const mode of ['linked (same flush)', 'deferred (writes flushed earlier)'] as const) {
    for (const sqpoll of [true, false]) {
      test(`datasync waits in the kernel for a blocked earlier write: ${mode}, sqpoll ${sqpoll}`, async () => {
        const dir = tempDir();
        const fifo = join(dir, 'fifo');
        execFileSync('mkfifo', [fifo]);
        // No coalescing: the write that fills the pipe and the one that blocks stay two SQEs.
        const sio = withIo({ sqpoll, coalesce: false });
        const reader = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
        try {
          const fd = sio.registerFd(openSync(fifo, constants.O_RDWR));
          const other = sio.registerFd(openSync(fifo, constants.O_RDWR));
          const w1 = sio.submitAppend(fd, Buffer.alloc(65536, 1)); // fills the pipe
          const w2 = sio.submitAppend(fd, Buffer.alloc(1000, 2)); // blocks
          if (mode.startsWith('deferred')) {
            sio.flush();
            await sleep(10);
          }
          const control = sio.submitDatasync(other);
          const s = sio.submitDatasync(fd);
          sio.flush();
          const early: IoCompletion[] = [];
          const deadline = Date.now() + 10_000;
          while (!early.some((c) => c.token === control) && Date.now() < deadline) {
            await Promise.race([sio.waitForCompletions(), sleep(20)]);
            sio.pollCompletions(early);
          }
          await sleep(30); // time for the ordered one to complete too, were it not ordered
          sio.pollCompletions(early);
          assert.ok(early.some((c) => c.token === control && c.result === -EINVAL), 'the unordered datasync completed at once');
          assert.ok(!early.some((c) => c.token === s), `the ordered datasync did not complete before the blocked write: ${JSON.stringify(early)}`);
          assert.ok(!early.some((c) => c.token === w2));
          assert.equal(sio.info().chainsDeferred > 0, mode.startsWith('deferred'));
          assert.equal(sio.info().cqesOutOfChainOrder, 0, 'the kernel ran the chain in order');
          const sink = Buffer.alloc(1 << 17);
          const rest: IoCompletion[] = [];
          while (sio.pendingCount() > 0) {
            try { readSync(reader, sink, 0, sink.length, null); } catch { /* EAGAIN: nothing yet */ }
            if (sio.pendingCount() > 0) await Promise.race([sio.waitForCompletions(), sleep(20)]);
            sio.pollCompletions(rest);
          }
          const all = [...early, ...rest];
          assert.deepEqual(all.filter((c) => c.token !== control), [
            { token: w1, result: 65536 }, { token: w2, result: 1000 }, { token: s, result: -EINVAL },
          ]);
        } finally {
          // Unblock the FIFO whatever happened, or close() would wait for the write forever.
          const sink = Buffer.alloc(1 << 17);
          for (let k = 0; k < 200 && sio.pendingCount() > 0; k++) {
            try { readSync(reader, sink, 0, sink.length, null); } catch { /* EAGAIN */ }
            await sleep(5);
            sio.pollCompletions([]);
          }
          sio.close();
          closeSync(reader);
        }
      });
    }
  }

  test('-errno results: a read-only fd gives -EBADF, /dev/full gives -ENOSPC, and a failed write cancels the datasync linked after it', async () => {
    const dir = tempDir();
    const p = join(dir, 'ro.bin');
    writeFileSync(p, 'x');
    const sio = withIo();
    try {
      const ro = sio.registerFd(openSync(p, 'r'));
      const full = sio.registerFd(openSync('/dev/full', 'w'));
      const t1 = sio.submitAppend(ro, b('nope'));
      const s1 = sio.submitDatasync(ro);
      const t2 = sio.submitWrite(full, b('nope'), 0);
      const done = new Map((await drain(sio)).map((c) => [c.token, c.result]));
      assert.equal(done.get(t1), -EBADF);
      assert.equal(done.get(s1), -ECANCELED, 'never reported as a successful sync');
      assert.equal(done.get(t2), -ENOSPC);
      assert.equal(readFileSync(p, 'utf8'), 'x');
    } finally {
      sio.close();
    }
  });

  test('after a failure on an fd every later operation on it is cancelled without running; other fds go on', async () => {
    const dir = tempDir();
    const p = join(dir, 'ok.bin');
    const sio = withIo();
    try {
      const full = sio.registerFd(openSync('/dev/full', 'w'));
      const ok = sio.registerFd(openSync(p, 'w+'));
      const w1 = sio.submitWrite(full, b('a'), 0);
      const w2 = sio.submitWrite(full, b('b'), 4096); // not contiguous: its own SQE in the chain
      const s1 = sio.submitDatasync(full);
      const o1 = sio.submitAppend(ok, b('fine'));
      sio.flush();
      const w3 = sio.submitAppend(full, b('c')); // queued behind the chain
      const first = new Map((await drain(sio)).map((c) => [c.token, c.result]));
      assert.deepEqual([first.get(w1), first.get(w2), first.get(s1), first.get(w3)], [-ENOSPC, -ECANCELED, -ECANCELED, -ECANCELED]);
      assert.equal(first.get(o1), 4);
      const later = sio.submitDatasync(full);
      const again = sio.submitAppend(ok, b('!'));
      assert.deepEqual(new Map((await drain(sio)).map((c) => [c.token, c.result])), new Map([[later, -ECANCELED], [again, 1]]));
      assert.equal(readFileSync(p, 'utf8'), 'fine!');
      assert.equal(sio.info().freeBuffers, sio.info().bufferCount);
    } finally {
      sio.close();
    }
  });

  test('a short write is resubmitted for its remainder; on a full tmpfs that ends in -ENOSPC and cancels what follows', async (t) => {
    await withSmallTmpfs(t, '64k', async (mnt) => {
      const sio = withIo({ bufferSize: 256 * 1024, bufferCount: 2 });
      try {
        const fd = sio.registerFd(openSync(join(mnt, 'f'), 'w+'));
        const big = sio.submitAppend(fd, Buffer.alloc(100_000, 7)); // one SQE; 64 KiB fit
        const after = sio.submitWrite(fd, Buffer.alloc(10, 8), 200_000); // its own SQE, after it in the chain
        const s = sio.submitDatasync(fd);
        const done = new Map((await drain(sio)).map((c) => [c.token, c.result]));
        assert.equal(sio.info().shortWriteRetries, 1, 'the kernel wrote part of it; the rest was resubmitted');
        assert.equal(done.get(big), -ENOSPC, 'a write reports its full length or an errno, never a short count');
        assert.equal(done.get(after), -ECANCELED);
        assert.equal(done.get(s), -ECANCELED, 'no datasync reports success after a failed write');
        assert.equal(readFileSync(join(mnt, 'f')).length, 65536);
      } finally {
        sio.close();
      }
    });
  });

  // fdatasync of tens of MiB of dirty pages takes milliseconds on a disk; writes made
  // meanwhile need not wait for it (as on ThreadPoolStorageIo), but must wait for every
  // earlier write, and a second datasync waits for the first.
  test('writes submitted while a datasync runs start beside it and complete before it; the next datasync waits for it', async (t) => {
    await besideAttempts(t, {}, async ({ sio, fd, p, w1, s1 }) => {
      const w2 = sio.submitAppend(fd, b('after s1'));
      const s2 = sio.submitDatasync(fd);
      sio.flush(); // w2 waits for w1's completion, s2 for s1's
      const done = await drain(sio);
      const at = (token: number): number => indexIn(done, token);
      assert.deepEqual([w1, s1, w2, s2].map((tok) => done[at(tok)]!.result), [BIG.length, 0, 8, 0]);
      assert.ok(at(s1) < at(s2), 'one datasync per fd at a time');
      assert.equal(sio.info().cqesOutOfChainOrder, 0);
      const data = readFileSync(p);
      assert.equal(data.length, BIG.length + 8);
      assert.equal(data.subarray(BIG.length).toString(), 'after s1');
      assert.equal(data[BIG.length - 1], 1);
      if (!(at(w2) < at(s1))) return `w2 did not complete beside s1: ${JSON.stringify(done)}`;
      assert.equal(sio.info().chainsBesideDatasync, 1);
      return null;
    });
  });

  test('beside a running datasync, a write with nothing queued behind it waits while the caller only polls, unless it fills a registered buffer', async (t) => {
    await besideAttempts(t, { bufferSize: 4096 }, async ({ sio, fd, p, w1, s1 }) => {
      const small = sio.submitAppend(fd, b('small')); // less than a buffer
      sio.flush();
      const done: IoCompletion[] = [];
      const at = (token: number): number => indexIn(done, token);
      // A caller that polls and never waits is busy: the small write waits for s1.
      while (at(small) < 0) {
        await new Promise<void>((r) => setImmediate(r));
        sio.pollCompletions(done);
      }
      assert.deepEqual([w1, s1, small].map((tok) => done[at(tok)]!.result), [BIG.length, 0, 5]);
      assert.ok(at(s1) < at(small), `the small write waited for s1: ${JSON.stringify(done)}`);
      assert.equal(sio.info().chainsBesideDatasync, 0);
      const w2 = sio.submitAppend(fd, BIG);
      const s2 = sio.submitDatasync(fd);
      sio.flush();
      const full = sio.submitAppend(fd, Buffer.alloc(4096, 2)); // a buffer's worth: starts beside s2
      sio.flush();
      while (at(s2) < 0 || at(full) < 0) {
        await new Promise<void>((r) => setImmediate(r));
        sio.pollCompletions(done);
      }
      assert.deepEqual([w2, s2, full].map((tok) => done[at(tok)]!.result), [BIG.length, 0, 4096]);
      assert.equal(fstatSync(openSync(p, 'r')).size, 2 * BIG.length + 5 + 4096);
      if (!(at(full) < at(s2))) return `the full buffer did not complete beside s2: ${JSON.stringify(done)}`;
      assert.equal(sio.info().chainsBesideDatasync, 1);
      return null;
    });
  });

  test('beside a running datasync, a small write held back starts once the caller waits; unflushed ones still wait for a flush', async (t) => {
    await besideAttempts(t, { bufferSize: 4096 }, async ({ sio, fd, p, w1, s1 }) => {
      const small = sio.submitAppend(fd, b('small')); // less than a buffer: held while the caller is busy
      sio.flush();
      assert.equal(sio.info().chainsSubmitted, 1);
      const done: IoCompletion[] = [];
      const at = (token: number): number => indexIn(done, token);
      // The caller sleeps: the write starts beside s1 (as soon as w1 has completed).
      while (at(s1) < 0) {
        await sio.waitForCompletions();
        sio.pollCompletions(done);
      }
      const unflushed = sio.submitAppend(fd, b('!'));
      while (at(small) < 0) {
        await sio.waitForCompletions();
        sio.pollCompletions(done);
      }
      assert.deepEqual([w1, s1, small].map((tok) => done[at(tok)]!.result), [BIG.length, 0, 5]);
      assert.equal(at(unflushed), -1);
      const overlapped = at(small) < at(s1);
      const beside = sio.info().chainsBesideDatasync;
      const s2 = sio.submitDatasync(fd);
      sio.flush();
      done.push(...await drain(sio));
      assert.deepEqual([unflushed, s2].map((tok) => done[at(tok)]!.result), [1, 0]);
      assert.equal(sio.info().cqesOutOfChainOrder, 0);
      assert.equal(readFileSync(p).subarray(BIG.length).toString(), 'small!');
      if (!overlapped) return `the small write did not complete beside s1: ${JSON.stringify(done)}`;
      assert.equal(beside, 1);
      return null;
    });
  });

  // A write at 32 TiB fails with EFBIG on ext4 (16 TiB files at most): a real kernel
  // failure of a write made while an earlier datasync runs.
  test('a write failing beside a running datasync cancels what follows it; that datasync reports its own result, the next one never success', async (t) => {
    const dir = tempDir();
    const p = join(dir, 'fail-beside.log');
    const sio = withIo();
    try {
      const fd = sio.registerFd(openSync(p, 'w+'));
      const w1 = sio.submitAppend(fd, Buffer.alloc(16 << 20, 1));
      const s1 = sio.submitDatasync(fd);
      sio.flush();
      const w2 = sio.submitWrite(fd, b('too far'), 2 ** 45);
      const w3 = sio.submitAppend(fd, b('after the hole'));
      const s2 = sio.submitDatasync(fd);
      const done = new Map((await drain(sio)).map((c) => [c.token, c.result]));
      if (done.get(w2) !== -EFBIG) {
        t.skip(`this filesystem accepts a write at 32 TiB (result ${done.get(w2)})`);
        return;
      }
      assert.equal(done.get(w1), 16 << 20);
      assert.equal(done.get(s1), 0, 'it covers w1 only, which succeeded');
      assert.equal(done.get(w3), -ECANCELED, 'nothing is written after the hole');
      assert.equal(done.get(s2), -ECANCELED, 'never a datasync reporting success over the failed write');
      const late = sio.submitAppend(fd, b('late'));
      assert.deepEqual(await drain(sio), [{ token: late, result: -ECANCELED }]);
      assert.equal(fstatSync(openSync(p, 'r')).size, 16 << 20);
    } finally {
      sio.close();
    }
  });

  test('submitZeros writes zeros from the registered zero buffer, any length, without taking pool buffers', async () => {
    const dir = tempDir();
    const p = join(dir, 'zeros.bin');
    writeFileSync(p, Buffer.alloc(700_000, 0xff));
    const sio = withIo({ bufferCount: 1, bufferSize: 4096 });
    try {
      const fd = sio.registerFd(openSync(p, 'r+'));
      const z = sio.submitZeros(fd, 10, 600_000); // several SQEs, one token
      const d = sio.submitWrite(fd, b('data'), 0);
      assert.equal(sio.info().freeBuffers, 0, 'only the data write took a pool buffer');
      assert.deepEqual(new Map((await drain(sio)).map((c) => [c.token, c.result])), new Map([[z, 600_000], [d, 4]]));
      const got = readFileSync(p);
      assert.equal(got.length, 700_000);
      assert.equal(got.subarray(0, 4).toString(), 'data');
      assert.ok(got.subarray(4, 10).every((x) => x === 0xff));
      assert.ok(got.subarray(10, 600_010).every((x) => x === 0));
      assert.ok(got.subarray(600_010).every((x) => x === 0xff));
      assert.equal(code(() => sio.submitZeros(fd, -1, 10)), 'INVALID_POSITION');
    } finally {
      sio.close();
    }
  });

  test('with the pool taken, writes spill to private copies that coalesce too, up to maxCopyBytes', async () => {
    const dir = tempDir();
    const p = join(dir, 'spill.bin');
    const sio = withIo({ bufferCount: 1, bufferSize: 4096, maxCopyBytes: 8192 });
    try {
      const fd = sio.registerFd(openSync(p, 'w+'));
      const a = sio.submitAppend(fd, Buffer.alloc(4096, 0x61)); // the one pool buffer
      const bb = sio.submitAppend(fd, Buffer.alloc(100, 0x62)); // spills: a 4096-byte copy
      const c = sio.submitAppend(fd, Buffer.alloc(100, 0x63)); // joins that copy
      const d = sio.submitWrite(fd, b('D'), 10_000); // scattered: a second copy, budget now used up
      assert.equal(code(() => sio.submitWrite(fd, b('E'), 20_000)), 'BUFFER_EXHAUSTED');
      const done = await drain(sio);
      assert.deepEqual(done, [{ token: a, result: 4096 }, { token: bb, result: 100 }, { token: c, result: 100 }, { token: d, result: 1 }]);
      assert.equal(sio.info().sqesSubmitted, 3);
      const got = readFileSync(p);
      assert.ok(got.subarray(0, 4096).every((x) => x === 0x61));
      assert.ok(got.subarray(4096, 4196).every((x) => x === 0x62));
      assert.ok(got.subarray(4196, 4296).every((x) => x === 0x63));
      assert.equal(got.subarray(10_000).toString(), 'D');
      const e = sio.submitWrite(fd, b('E'), 20_000); // the copies came back
      assert.deepEqual(await drain(sio), [{ token: e, result: 1 }]);
    } finally {
      sio.close();
    }
  });

  test('without registered buffers (bufferCount 0) writes and zeros go from copies', async () => {
    const dir = tempDir();
    const p = join(dir, 'nopool.bin');
    const sio = withIo({ bufferCount: 0 });
    try {
      assert.equal(sio.info().bufferCount, 0);
      const fd = sio.registerFd(openSync(p, 'w+'));
      const toks = [sio.submitAppend(fd, b('abc')), sio.submitAppend(fd, b('def')), sio.submitZeros(fd, 6, 300_000), sio.submitDatasync(fd)];
      assert.deepEqual((await drain(sio)).map((c) => [c.token, c.result]), [[toks[0], 3], [toks[1], 3], [toks[2], 300_000], [toks[3], 0]]);
      const got = readFileSync(p);
      assert.equal(got.subarray(0, 6).toString(), 'abcdef');
      assert.equal(got.length, 300_006);
      assert.ok(got.subarray(6).every((x) => x === 0));
    } finally {
      sio.close();
    }
  });

  test('under a small RLIMIT_MEMLOCK later rings get fewer registered buffers, then none, and still work', (t) => {
    const tools = spawnSync('sh', ['-c', 'command -v prlimit && command -v setpriv'], { encoding: 'utf8' });
    if (tools.status !== 0 || process.getuid?.() !== 0) {
      t.skip('needs root with prlimit and setpriv (to drop CAP_IPC_LOCK)');
      return;
    }
    const script = `
      import { UringStorageIo } from ${JSON.stringify(indexUrl)};
      import { openSync, readFileSync } from 'node:fs';
      const p = ${JSON.stringify(join(tempDir(), 'memlock.bin'))};
      const rings = [];
      for (let i = 0; i < 4; i++) rings.push(UringStorageIo.create());
      const counts = rings.map((r) => r.info().bufferCount);
      const last = rings[3];
      const fd = last.registerFd(openSync(p, 'w+'));
      last.submitAppend(fd, Buffer.from('still works'));
      last.submitDatasync(fd);
      const out = [];
      while (last.pendingCount() > 0) { await last.waitForCompletions(); last.pollCompletions(out); }
      for (const r of rings) r.close();
      console.log(JSON.stringify({ counts, results: out.map((c) => c.result), data: readFileSync(p, 'utf8') }));`;
    const r = spawnSync('prlimit', ['--memlock=4194304:4194304', 'setpriv', '--bounding-set', '-ipc_lock', process.execPath, '--input-type=module', '-e', script], {
      encoding: 'utf8', timeout: 20_000,
    });
    assert.equal(r.status, 0, r.stderr);
    const got = JSON.parse(r.stdout) as { counts: number[]; results: number[]; data: string };
    assert.equal(got.counts[0], 8, 'the first ring gets the full pool');
    assert.ok(got.counts.some((c) => c > 0 && c < 8), `some ring got a smaller pool: ${got.counts}`);
    assert.equal(got.counts[3], 0, `the last ring got none: ${got.counts}`);
    assert.deepEqual(got.results, [11, 0]);
    assert.equal(got.data, 'still works');
  });

  test('QUEUE_FULL past maxQueued operations not yet polled, coalesced or not', async () => {
    const dir = tempDir();
    const sio = withIo({ maxQueued: 3 });
    try {
      const fd = sio.registerFd(openSync(join(dir, 'm.bin'), 'w+'));
      const toks = [sio.submitAppend(fd, b('a')), sio.submitAppend(fd, b('b')), sio.submitAppend(fd, b('c'))];
      assert.equal(code(() => sio.submitAppend(fd, b('d'))), 'QUEUE_FULL');
      assert.equal(code(() => sio.submitDatasync(fd)), 'QUEUE_FULL');
      assert.equal(code(() => sio.submitZeros(fd, 0, 1)), 'QUEUE_FULL');
      assert.deepEqual((await drain(sio)).map((c) => c.token), toks);
      sio.submitAppend(fd, b('d'));
      await drain(sio);
      assert.equal(readFileSync(join(dir, 'm.bin'), 'utf8'), 'abcd');
    } finally {
      sio.close();
    }
  });

  test('QUEUE_FULL at the queue depth (SQEs queued or in flight), until completions are polled', async () => {
    const dir = tempDir();
    const sio = withIo({ queueDepth: 4, bufferSize: 4096, bufferCount: 16 });
    try {
      const fd = sio.registerFd(openSync(join(dir, 'q.bin'), 'w+'));
      for (let i = 0; i < 4; i++) sio.submitWrite(fd, b('x'), i * 100); // scattered: one SQE each
      assert.equal(code(() => sio.submitWrite(fd, b('x'), 1000)), 'QUEUE_FULL');
      assert.equal(code(() => sio.submitDatasync(fd)), 'QUEUE_FULL');
      assert.equal(sio.pendingCount(), 4);
      sio.flush();
      assert.equal(code(() => sio.submitAppend(fd, b('y'))), 'QUEUE_FULL', 'in flight counts too');
      assert.equal((await drain(sio)).length, 4);
      sio.submitDatasync(fd);
      assert.deepEqual((await drain(sio)).map((c) => c.result), [0]);
    } finally {
      sio.close();
    }
  });

  test('BUFFER_EXHAUSTED when no registered buffer is free (maxCopyBytes 0); buffers return on completion', async () => {
    const dir = tempDir();
    const sio = withIo({ bufferCount: 2, bufferSize: 4096, maxCopyBytes: 0 });
    try {
      const fd = sio.registerFd(openSync(join(dir, 'x.bin'), 'w+'));
      sio.submitWrite(fd, b('a'), 0);
      sio.submitWrite(fd, b('b'), 8192);
      assert.equal(code(() => sio.submitWrite(fd, b('c'), 16384)), 'BUFFER_EXHAUSTED');
      assert.equal(code(() => sio.submitAppend(fd, Buffer.alloc(3000))), 'BUFFER_EXHAUSTED');
      assert.equal(sio.pendingCount(), 2, 'a refused write is not pending');
      sio.submitWrite(fd, b('b2'), 8193); // contiguous with a queued write: no new buffer needed
      assert.equal((await drain(sio)).length, 3);
      assert.equal(sio.info().freeBuffers, 2);
      const t = sio.submitWrite(fd, b('c'), 16384);
      assert.deepEqual(await drain(sio), [{ token: t, result: 1 }]);
      const data = readFileSync(join(dir, 'x.bin'));
      assert.equal(data.subarray(8192, 8195).toString(), 'bb2');
      assert.equal(data.length, 16385);
    } finally {
      sio.close();
    }
  });

  test('BAD_FD for unknown, deregistered and non-open fds; deregister waits for in-flight writes and closes the fd', async () => {
    const dir = tempDir();
    const p = join(dir, 'd.bin');
    const sio = withIo({ maxFiles: 2 });
    try {
      assert.equal(code(() => sio.submitAppend(12345 as IoFd, b('x'))), 'BAD_FD');
      assert.equal(code(() => sio.registerFd(-1)), 'BAD_FD');
      const spare = openSync(p, 'w+');
      closeSync(spare);
      assert.equal(code(() => sio.registerFd(spare)), 'BAD_FD');
      const os = openSync(p, 'w+');
      const fd = sio.registerFd(os);
      const tokens = [];
      for (let i = 0; i < 20; i++) tokens.push(sio.submitAppend(fd, Buffer.alloc(1000, 65 + i)));
      sio.flush();
      sio.deregisterFd(fd);
      assert.equal(code(() => fstatSync(os)), 'EBADF', 'the OS fd is closed');
      assert.equal(readFileSync(p).length, 20_000, 'in-flight writes completed first');
      const done: IoCompletion[] = [];
      sio.pollCompletions(done);
      assert.deepEqual(done.map((c) => c.token), tokens);
      assert.ok(done.every((c) => c.result === 1000));
      assert.equal(code(() => sio.submitDatasync(fd)), 'BAD_FD');
      assert.equal(code(() => sio.deregisterFd(fd)), 'BAD_FD');
      // Slots are reused: maxFiles 2 still allows two more.
      sio.registerFd(openSync(p, 'r+'));
      sio.registerFd(openSync(p, 'r+'));
      assert.equal(code(() => sio.registerFd(openSync(p, 'r+'))), 'QUEUE_FULL');
    } finally {
      sio.close();
    }
  });

  test('CLOSED after close: every method fails, close is idempotent and closed the fds', async () => {
    const dir = tempDir();
    const sio = withIo();
    const os = openSync(join(dir, 'c.bin'), 'w+');
    const fd = sio.registerFd(os);
    sio.submitAppend(fd, b('hello'));
    const waiting = sio.waitForCompletions();
    sio.close();
    await waiting;
    sio.close();
    assert.equal(readFileSync(join(dir, 'c.bin'), 'utf8'), 'hello', 'close started and finished queued writes');
    assert.equal(code(() => fstatSync(os)), 'EBADF');
    for (const f of [
      () => sio.registerFd(0), () => sio.deregisterFd(fd), () => sio.submitWrite(fd, b('x'), 0), () => sio.submitAppend(fd, b('x')),
      () => sio.submitDatasync(fd), () => sio.flush(), () => sio.pollCompletions([]), () => sio.pendingCount(),
    ]) {
      assert.equal(code(f), 'CLOSED');
    }
    assert.throws(() => sio.waitForCompletions(), (e: unknown) => e instanceof StorageIoError && e.code === 'CLOSED');
  });

  test('waitForCompletions resolves on the eventfd wake-up, at once when something is ready, and flushes for the caller', async () => {
    const dir = tempDir();
    const sio = withIo({ sqpoll: false });
    try {
      await sio.waitForCompletions(); // nothing pending: resolves at once
      const fd = sio.registerFd(openSync(join(dir, 'w.bin'), 'w+'));
      const t = sio.submitAppend(fd, b('abc'));
      const s = sio.submitDatasync(fd);
      // No flush(): the wait starts the queued operations itself.
      const out: IoCompletion[] = [];
      while (out.length < 2) {
        await sio.waitForCompletions();
        const before = out.length;
        sio.pollCompletions(out);
        assert.ok(out.length > before, 'a resolved wait means pollCompletions has something');
      }
      assert.deepEqual(out, [{ token: t, result: 3 }, { token: s, result: 0 }]);
      assert.equal(sio.pendingCount(), 0);
    } finally {
      sio.close();
    }
  });

  test('waitForCompletions leaves unflushed operations queued while others are in flight; a datasync flushed later links them in its chain', async () => {
    const dir = tempDir();
    const sio = withIo({ sqpoll: false });
    try {
      const fd = sio.registerFd(openSync(join(dir, 'w.bin'), 'w+'));
      const w1 = sio.submitAppend(fd, b('one'));
      sio.flush();
      const w2 = sio.submitAppend(fd, b('two')); // not flushed
      const out: IoCompletion[] = [];
      while (!out.some((c) => c.token === w1)) {
        await sio.waitForCompletions();
        sio.pollCompletions(out);
      }
      assert.ok(!out.some((c) => c.token === w2));
      assert.equal(sio.info().chainsSubmitted, 1, 'w2 was not started by the wait while w1 ran');
      const s = sio.submitDatasync(fd);
      sio.flush();
      assert.equal(sio.info().chainsSubmitted, 2, 'w2 and the datasync went out as one chain');
      const rest = await drain(sio);
      assert.deepEqual(rest, [{ token: w2, result: 3 }, { token: s, result: 0 }]);
      // With nothing in flight, a wait starts what is queued: a forgotten flush cannot hang it.
      const w3 = sio.submitAppend(fd, b('!'));
      await sio.waitForCompletions();
      const last: IoCompletion[] = [];
      sio.pollCompletions(last);
      assert.deepEqual(last, [{ token: w3, result: 1 }]);
      assert.equal(readFileSync(join(dir, 'w.bin'), 'utf8'), 'onetwo!');
    } finally {
      sio.close();
    }
  });

  test('writes taken while the caller polls without yielding park the fd: later writes wait for an event-loop turn or a wait, a datasync behind them starts them at once', async () => {
    const dir = tempDir();
    const p = join(dir, 'parked.bin');
    const sio = withIo({ sqpoll: false });
    try {
      const fd = sio.registerFd(openSync(p, 'w+'));
      const out: IoCompletion[] = [];
      /** Polls without yielding to the event loop until `token` completes. */
      const busyUntil = (token: number): void => {
        const deadline = Date.now() + 10_000;
        while (!out.some((c) => c.token === token)) {
          assert.ok(Date.now() < deadline, 'timed out polling');
          sio.pollCompletions(out);
        }
      };
      const w1 = sio.submitAppend(fd, b('one'));
      assert.equal(sio.flush(), 1);
      busyUntil(w1);
      const w2 = sio.submitAppend(fd, b('two'));
      assert.equal(sio.flush(), 0, 'parked: waits for an event-loop turn');
      sio.pollCompletions(out);
      assert.equal(sio.info().chainsSubmitted, 1);
      for (let i = 0; i < 100 && sio.info().chainsSubmitted === 1; i++) await new Promise<void>((r) => setImmediate(r));
      assert.equal(sio.info().chainsSubmitted, 2, 'started on the event-loop turn');
      busyUntil(w2);
      const w3 = sio.submitAppend(fd, b('three'));
      const s = sio.submitDatasync(fd);
      assert.equal(sio.flush(), 2, 'a datasync behind parked writes starts them at once');
      busyUntil(s);
      const w4 = sio.submitAppend(fd, b('four'));
      assert.equal(sio.flush(), 0, 'still parked: no turn since w2 was taken (a datasync\'s chain does not park)');
      const rest = await drain(sio); // a wait starts it
      assert.deepEqual(out.concat(rest).map((c) => [c.token, c.result]), [[w1, 3], [w2, 3], [w3, 5], [s, 0], [w4, 4]]);
      assert.equal(readFileSync(p, 'utf8'), 'onetwothreefour');
      // close() starts what is parked before it closes the fd.
      const w5 = sio.submitAppend(fd, b('five'));
      sio.flush();
      busyUntil(w5);
      sio.submitAppend(fd, b('six'));
      sio.flush();
      sio.close();
      assert.equal(readFileSync(p, 'utf8'), 'onetwothreefourfivesix');
    } finally {
      sio.close();
    }
  });

  test('an idle instance does not keep the process alive, with or without close()', () => {
    for (const doClose of [true, false]) {
      const script = `
        import { UringStorageIo } from ${JSON.stringify(indexUrl)};
        import { openSync } from 'node:fs';
        const sio = UringStorageIo.create();
        const fd = sio.registerFd(openSync(${JSON.stringify(join(tempDir(), 'p.bin'))}, 'w+'));
        sio.submitAppend(fd, Buffer.from('x'));
        sio.submitDatasync(fd);
        while (sio.pendingCount() > 0) { await sio.waitForCompletions(); sio.pollCompletions([]); }
        ${doClose ? 'sio.close();' : ''}
        console.log('done');`;
      const r = runModule(script, { timeout: 20_000 });
      assert.equal(r.signal, null, `process ${doClose ? 'with' : 'without'} close() exited by itself`);
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout.trim(), 'done');
    }
  });

  test('a worker thread can own a ring and exit without closing it', () => {
    const script = `
      import { Worker } from 'node:worker_threads';
      const code = \`
        const { UringStorageIo } = await import(${JSON.stringify(indexUrl)});
        const { openSync } = await import('node:fs');
        const sio = UringStorageIo.create();
        const fd = sio.registerFd(openSync(${JSON.stringify(join(tempDir(), 'wk.bin'))}, 'w+'));
        sio.submitAppend(fd, Buffer.from('from worker'));
        const p = sio.waitForCompletions();
        await p;
        process.exit(0);\`;
      const w = new Worker(code, { eval: true, type: 'module' });
      w.on('exit', (c) => { console.log('worker exit', c); });
      w.on('error', (e) => { console.error(e); process.exitCode = 1; });`;
    const r = runModule(script, { timeout: 20_000 });
    assert.equal(r.signal, null);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /worker exit 0/);
  });

  test('unsupported: with the addon unavailable, isSupported says why and create throws UNSUPPORTED', () => {
    const script = `
      import { UringStorageIo, CoreWalWriter } from ${JSON.stringify(indexUrl)};
      const s = UringStorageIo.isSupported();
      let code = null;
      try { UringStorageIo.create(); } catch (e) { code = e.code; }
      console.log(JSON.stringify({ s, code, writer: typeof CoreWalWriter.create }));`;
    for (const [env, pattern] of [['/nonexistent/corewal_uring.node', /not built/], ['off', /disabled/]] as const) {
      const r = runModule(script, { timeout: 20_000, env: { ...process.env, COREWAL_URING_ADDON: env } });
      assert.equal(r.status, 0, r.stderr);
      const got = JSON.parse(r.stdout) as { s: { supported: boolean; reason: string }; code: string; writer: string };
      assert.equal(got.s.supported, false);
      assert.match(got.s.reason, pattern);
      assert.equal(got.code, 'UNSUPPORTED');
      assert.equal(got.writer, 'function', 'the rest of corewal loads without the addon');
    }
  });

  test('bad arguments fail before anything is queued', () => {
    const sio = withIo();
    try {
      const fd = sio.registerFd(openSync(join(tempDir(), 'b.bin'), 'w+'));
      assert.equal(code(() => sio.submitWrite(fd, b('x'), -1)), 'INVALID_POSITION');
      assert.equal(code(() => sio.submitWrite(fd, 'x' as unknown as Uint8Array, 0)), 'INVALID_ARGUMENT');
      assert.equal(sio.pendingCount(), 0);
      assert.equal(code(() => UringStorageIo.create({ bufferSize: 0 })), 'INVALID_ARGUMENT');
    } finally {
      sio.close();
    }
  });

  test('writer StorageIo path on io_uring: the reader sees every record; syncedPosition follows the datasyncs', async () => {
    const dir = tempDir();
    const p = join(dir, 'wal-0.log');
    const w = CoreWalWriter.create(0, p);
    const sio = withIo({ bufferSize: 16 * 1024, bufferCount: 8 });
    const fd = sio.registerFd(openSync(p, 'r+'));
    const out: IoCompletion[] = [];
    const pump = async (): Promise<void> => {
      await sio.waitForCompletions();
      out.length = 0;
      sio.pollCompletions(out);
      w.checkCompletions(out);
    };
    const N = 3000;
    try {
      for (let i = 0; i < N; i++) {
        const key = b(`key-${i}`);
        const value = Buffer.alloc(i % 7 === 0 ? 3000 : 40, i & 0xff);
        for (;;) {
          try {
            w.appendPutViaStorageIo(key, value, sio, fd);
            break;
          } catch (e) {
            // A refused submission leaves the writer usable: make room and retry.
            const c = (e as PerCoreWalError & { cause?: { code?: string } }).cause?.code;
            if (c !== 'QUEUE_FULL' && c !== 'BUFFER_EXHAUSTED') throw e;
            sio.flush();
            await pump();
          }
        }
        if (i % 500 === 499) {
          const target = w.position();
          w.syncViaStorageIo(sio, fd);
          while (w.isSyncPending()) await pump();
          assert.equal(w.syncedPosition(), target);
        }
      }
      w.syncViaStorageIo(sio, fd);
      while (w.isSyncPending() || w.writesInFlight() > 0) await pump();
      assert.equal(w.syncedPosition(), w.position());
    } finally {
      sio.close();
      w.close();
    }
    const entries = PerCoreWalReader.open(0, p).readAll();
    assert.equal(entries.length, N);
    entries.forEach((e, i) => {
      assert.equal(e.sequence, BigInt(i));
      assert.deepEqual(Buffer.from(e.key()!), b(`key-${i}`));
      assert.equal(e.value()!.length, i % 7 === 0 ? 3000 : 40);
    });
  });

  test('writer StorageIo path: an -errno completion reaches checkCompletions, which poisons the writer', async () => {
    const dir = tempDir();
    const p = join(dir, 'wal-0.log');
    const w = CoreWalWriter.create(0, p);
    const sio = withIo();
    try {
      const fd = sio.registerFd(openSync(p, 'r')); // writes fail with EBADF in the kernel
      w.appendPutViaStorageIo(b('k'), b('v'), sio, fd);
      w.syncViaStorageIo(sio, fd);
      const out = await drain(sio);
      assert.ok(out.some((c) => c.result === -EBADF));
      assert.throws(() => w.checkCompletions(out), (e: unknown) => e instanceof PerCoreWalError && e.code === 'IO' && e.errno === EBADF);
      assert.equal(w.syncedPosition(), 0, 'nothing claimed durable');
      assert.throws(() => w.appendPutViaStorageIo(b('k'), b('v'), sio, fd), (e: unknown) => e instanceof PerCoreWalError && e.code === 'POISONED');
    } finally {
      sio.close();
      w.close();
    }
  });

  test('writer appending while its datasyncs run, until the disk is full: ENOSPC reaches checkCompletions, syncedPosition stays below the failed write, no record after it', async (t) => {
    await withSmallTmpfs(t, '256k', async (mnt) => {
      const p = join(mnt, 'wal-0.log');
      const w = CoreWalWriter.create(0, p, { preallocate: 0 });
      const sio = withIo({ bufferSize: 16 * 1024 });
      const fd = sio.registerFd(openSync(p, 'r+'));
      const out: IoCompletion[] = [];
      let failure: unknown = null;
      try {
        try {
          // A group commit: appends go on while the datasync of the previous group runs.
          for (let i = 0; i < 10_000; i++) {
            w.appendPutViaStorageIo(b(`key-${i}`), Buffer.alloc(1000, i & 0xff), sio, fd);
            if (i % 16 === 15) {
              if (!w.isSyncPending()) w.syncViaStorageIo(sio, fd);
              sio.flush();
              await sio.waitForCompletions();
              out.length = 0;
              sio.pollCompletions(out);
              w.checkCompletions(out); // throws IO once the failure arrives
            }
          }
        } catch (e) {
          failure = e;
        }
        failure ??= await settle(w, sio);
        assert.ok(failure instanceof PerCoreWalError, `expected the writer to fail: ${String(failure)}`);
        assert.equal(failure.code, 'IO');
        assert.equal(failure.errno, ENOSPC);
        assert.ok(w.syncedPosition() > 0, 'groups synced before the disk filled');
        assert.ok(w.syncedPosition() <= failure.position!, `syncedPosition ${w.syncedPosition()} passed the failed write at ${failure.position}`);
        assert.equal(w.isPoisoned(), true);
      } finally {
        sio.close();
        w.close();
      }
      const scan = scanSegment(0, p);
      assert.ok(scan.validEnd <= (failure as PerCoreWalError).position!, 'no valid record at or after the failed write');
      assert.ok(scan.validEnd >= w.syncedPosition());
      assert.equal(scan.last!.sequence, BigInt(scan.entries - 1));
    });
  });
});

// The behaviour every backend shares (contract, ordering, failures, the writer's path).
if (support.supported) storageIoSuite('UringStorageIo', (o) => UringStorageIo.create({ maxQueued: o?.maxQueued }));
