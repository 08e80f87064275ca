// UringStorageIo's fused datasync chains (datasyncPath): writes before a datasync sent
// with IOSQE_CQE_SKIP_SUCCESS ('skip'), or one write with RWF_DSYNC standing for
// [write, datasync] ('dsync'). Real files; the CQE counter shows what the kernel posted.
import assert from 'node:assert/strict';
import { openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import {
  CoreWalWriter, PerCoreWalError, PerCoreWalReader, UringStorageIo,
  type IoCompletion, type IoFd,
} from '../src/index.js';
import { b, tempDir } from './helpers/tmp.js';
import { withSmallTmpfs } from './helpers/small-tmpfs.js';
import { drainAll } from './helpers/storage-io-suite.js';

const support = UringStorageIo.isSupported();
const skip = support.supported ? false : `UringStorageIo unsupported here: ${support.reason}`;

const EBADF = 9;
const ENOSPC = 28;
const ECANCELED = 125;

/** Results by token. */
async function drain(sio: UringStorageIo): Promise<Map<number, number>> {
  return new Map((await drainAll(sio)).map((c) => [c.token, c.result]));
}

/** Completions in hand-out order. */
const drainList = drainAll;



/**
 * A datasync alone, completed: it covers every write before it, so the fd has no write
 * left uncovered and its next [write, datasync] may go as one RWF_DSYNC write.
 */
async function cover(sio: UringStorageIo, fd: IoFd): Promise<void> {
  const s = sio.submitDatasync(fd);
  const done = await drain(sio);
  assert.equal(done.get(s), 0);
}

describe('UringStorageIo fused datasync chains', { skip }, () => {
  test('skip: writes before a datasync post no CQE; their completions still come, full, before the datasync\'s', async () => {
    const p = join(tempDir(), 'skip.log');
    // No coalescing: three writes, three SQEs, then the datasync — four SQEs, one CQE.
    const sio = UringStorageIo.create({ datasyncPath: 'skip', coalesce: false });
    try {
      const fd = sio.registerFd(openSync(p, 'w+'));
      const ws = [sio.submitAppend(fd, b('one;')), sio.submitAppend(fd, b('two;')), sio.submitAppend(fd, b('three'))];
      const s = sio.submitDatasync(fd);
      const before = sio.info();
      const done = await drainList(sio);
      const after = sio.info();
      assert.deepEqual(done, [
        { token: ws[0], result: 4 }, { token: ws[1], result: 4 }, { token: ws[2], result: 5 }, { token: s, result: 0 },
      ]);
      assert.equal(after.sqesSubmitted - before.sqesSubmitted, 4);
      assert.equal(after.cqes - before.cqes, 1, 'the kernel posted the datasync\'s CQE alone');
      assert.equal(after.chainsFused, 1);
      assert.equal(after.dsyncWrites, 0);
      assert.equal(readFileSync(p, 'utf8'), 'one;two;three');
    } finally {
      sio.close();
    }
  });

  test('linked: every SQE posts its CQE (the control for the skip test)', async () => {
    const p = join(tempDir(), 'linked.log');
    const sio = UringStorageIo.create({ datasyncPath: 'linked', coalesce: false });
    try {
      const fd = sio.registerFd(openSync(p, 'w+'));
      sio.submitAppend(fd, b('one;'));
      sio.submitAppend(fd, b('two;'));
      sio.submitDatasync(fd);
      const before = sio.info().cqes;
      await drain(sio);
      assert.equal(sio.info().cqes - before, 3);
      assert.equal(sio.info().chainsFused, 0);
    } finally {
      sio.close();
    }
  });

  test('dsync: one RWF_DSYNC write reports both the write and the datasync', async () => {
    const p = join(tempDir(), 'dsync.log');
    const sio = UringStorageIo.create({ datasyncPath: 'dsync' });
    try {
      const fd = sio.registerFd(openSync(p, 'w+'));
      await cover(sio, fd);
      const before = sio.info();
      const w1 = sio.submitAppend(fd, b('hello '));
      const w2 = sio.submitAppend(fd, b('world')); // coalesced: one write op
      const s = sio.submitDatasync(fd);
      const done = await drainList(sio);
      const after = sio.info();
      assert.deepEqual(done, [{ token: w1, result: 6 }, { token: w2, result: 5 }, { token: s, result: 0 }]);
      assert.equal(after.sqesSubmitted - before.sqesSubmitted, 1, 'one SQE for [write, datasync]');
      assert.equal(after.cqes - before.cqes, 1);
      assert.equal(after.dsyncWrites - before.dsyncWrites, 1);
      assert.equal(readFileSync(p, 'utf8'), 'hello world');
    } finally {
      sio.close();
    }
  });

  test('dsync is not used while a write no datasync covered may exist: a fresh fd, or after writes alone', async () => {
    const p = join(tempDir(), 'loose.log');
    writeFileSync(p, 'dirty before registration;');
    const sio = UringStorageIo.create({ datasyncPath: 'dsync', coalesce: false });
    try {
      const fd = sio.registerFd(openSync(p, 'r+'));
      // A fresh fd: its pages may be dirty from before; a full datasync (skip path) covers them.
      sio.submitAppend(fd, b('a'));
      sio.submitDatasync(fd);
      await drain(sio);
      assert.equal(sio.info().dsyncWrites, 0);
      assert.equal(sio.info().chainsFused, 1);
      // Covered now: the next [write, datasync] is one RWF_DSYNC write.
      sio.submitAppend(fd, b('b'));
      sio.submitDatasync(fd);
      await drain(sio);
      assert.equal(sio.info().dsyncWrites, 1);
      // A write alone leaves bytes a ranged sync of the next write would not cover.
      sio.submitAppend(fd, b('c'));
      await drain(sio);
      sio.submitAppend(fd, b('d'));
      sio.submitDatasync(fd);
      await drain(sio);
      assert.equal(sio.info().dsyncWrites, 1, 'a full datasync after a write alone');
      // Two write SQEs before the datasync (not contiguous): RWF_DSYNC on one would not cover the other.
      sio.submitWrite(fd, b('X'), 100);
      sio.submitWrite(fd, b('Y'), 200);
      sio.submitDatasync(fd);
      await drain(sio);
      assert.equal(sio.info().dsyncWrites, 1);
      assert.equal(sio.info().chainsFused, 4);
      // After that full datasync, dsync again.
      sio.submitAppend(fd, b('e'));
      sio.submitDatasync(fd);
      await drain(sio);
      assert.equal(sio.info().dsyncWrites, 2);
      const data = readFileSync(p);
      assert.equal(data.subarray(0, 30).toString(), 'dirty before registration;abcd');
      assert.equal(String.fromCharCode(data[100]!, data[200]!), 'XY');
    } finally {
      sio.close();
    }
  });

  test('chains with more than fuseMaxBytes of writes stay linked, one CQE per SQE', async () => {
    const p = join(tempDir(), 'big.log');
    const sio = UringStorageIo.create({ datasyncPath: 'dsync', fuseMaxBytes: 1000 });
    try {
      const fd = sio.registerFd(openSync(p, 'w+'));
      await cover(sio, fd);
      sio.submitAppend(fd, Buffer.alloc(1001, 1));
      sio.submitDatasync(fd);
      const before = sio.info().cqes;
      await drain(sio);
      assert.equal(sio.info().cqes - before, 2);
      assert.equal(sio.info().chainsFused, 0);
      sio.submitAppend(fd, Buffer.alloc(1000, 2));
      sio.submitDatasync(fd);
      await drain(sio);
      assert.equal(sio.info().dsyncWrites, 1);
    } finally {
      sio.close();
    }
  });

  for (const path of ['skip', 'dsync'] as const) {
    test(`${path}: a failing write cancels the datasync: -EBADF and -ECANCELED reach the caller`, async () => {
      const p = join(tempDir(), 'ro.bin');
      writeFileSync(p, 'x');
      const sio = UringStorageIo.create({ datasyncPath: path });
      try {
        const fd = sio.registerFd(openSync(p, 'r')); // fdatasync works on it, writes fail
        await cover(sio, fd);
        const before = sio.info();
        const w = sio.submitAppend(fd, b('nope'));
        const s = sio.submitDatasync(fd);
        const done = await drain(sio);
        assert.equal(done.get(w), -EBADF);
        assert.equal(done.get(s), -ECANCELED, 'never reported as a successful sync');
        assert.equal(sio.info().chainsFused - before.chainsFused, 1);
        assert.equal(sio.info().dsyncWrites - before.dsyncWrites, path === 'dsync' ? 1 : 0);
        // The fd failed: later operations are cancelled without running.
        const later = sio.submitDatasync(fd);
        assert.equal((await drain(sio)).get(later), -ECANCELED);
        assert.equal(readFileSync(p, 'utf8'), 'x');
        assert.equal(sio.info().freeBuffers, sio.info().bufferCount);
      } finally {
        sio.close();
      }
    });

    test(`${path}: a short write is resubmitted before the datasync; on a full tmpfs it ends in -ENOSPC and cancels it`, async (t) => {
      await withSmallTmpfs(t, '64k', async (mnt) => {
        const sio = UringStorageIo.create({ datasyncPath: path, fuseMaxBytes: 1 << 20, coalesce: false });
        try {
          const fd = sio.registerFd(openSync(join(mnt, 'f'), 'w+'));
          await cover(sio, fd);
          const before = sio.info();
          const big = sio.submitAppend(fd, Buffer.alloc(100_000, 7)); // 64 KiB fit
          const s = sio.submitDatasync(fd);
          const done = await drain(sio);
          assert.equal(sio.info().shortWriteRetries, 1, 'the kernel wrote part of it; the rest was resubmitted');
          assert.equal(done.get(big), -ENOSPC, 'a write reports its full length or an errno, never a short count');
          assert.equal(done.get(s), -ECANCELED, 'no datasync reports success after a failed write');
          assert.equal(sio.info().chainsFused - before.chainsFused, 2, 'the remainder went fused again');
          // The first attempt's datasync never ran: the remainder's chain ends in a full one.
          assert.equal(sio.info().dsyncWrites - before.dsyncWrites, path === 'dsync' ? 1 : 0);
          assert.equal(readFileSync(join(mnt, 'f')).length, 65536);
        } finally {
          sio.close();
        }
      });
    });

    test(`${path}: several writes in one SQE, then the datasync: each write's completion, in order, before the datasync's`, async () => {
      const p = join(tempDir(), 'tokens.log');
      const sio = UringStorageIo.create({ datasyncPath: path, fuseMaxBytes: 1 << 20, bufferSize: 512 * 1024, bufferCount: 2 });
      try {
        const fd = sio.registerFd(openSync(p, 'w+'));
        await cover(sio, fd);
        const before = sio.info();
        const toks: number[] = [];
        for (let i = 0; i < 20; i++) toks.push(sio.submitAppend(fd, Buffer.alloc(5000, i)));
        const s = sio.submitDatasync(fd);
        const done = await drainList(sio);
        assert.deepEqual(done.map((c) => c.token), [...toks, s], 'every write before the datasync, in order');
        assert.ok(done.every((c, i) => c.result === (i < toks.length ? 5000 : 0)));
        assert.equal(sio.info().cqes - before.cqes, 1);
        assert.equal(sio.info().sqesSubmitted - before.sqesSubmitted, path === 'dsync' ? 1 : 2);
        const data = readFileSync(p);
        assert.equal(data.length, 100_000);
        for (let i = 0; i < 20; i++) assert.equal(data[i * 5000 + 4999], i);
      } finally {
        sio.close();
      }
    });
  }

  for (const path of ['auto', 'skip', 'dsync', 'linked'] as const) {
    test(`writer StorageIo path, a datasync every record (${path}): syncedPosition follows each one; the reader sees every record`, async () => {
      const p = join(tempDir(), 'wal-0.log');
      const w = CoreWalWriter.create(0, p);
      const sio = UringStorageIo.create({ datasyncPath: path });
      const fd = sio.registerFd(openSync(p, 'r+'));
      const out: IoCompletion[] = [];
      const N = 300;
      try {
        for (let i = 0; i < N; i++) {
          w.appendPutViaStorageIo(b(`key-${i}`), Buffer.alloc(i % 5 === 0 ? 4096 : 100, i & 0xff), sio, fd);
          const target = w.position();
          w.syncViaStorageIo(sio, fd);
          while (w.isSyncPending()) {
            await sio.waitForCompletions();
            out.length = 0;
            sio.pollCompletions(out);
            w.checkCompletions(out);
          }
          assert.equal(w.syncedPosition(), target);
        }
        const info = sio.info();
        if (path === 'linked') assert.equal(info.chainsFused, 0);
        else assert.ok(info.chainsFused >= N - 2, `${info.chainsFused} of ${N} chains fused`);
        if (path === 'dsync' || path === 'auto') assert.ok(info.dsyncWrites >= N - 5, `${info.dsyncWrites} RWF_DSYNC writes`);
      } finally {
        sio.close();
        w.close();
      }
      const entries = PerCoreWalReader.open(0, p).readAll();
      assert.equal(entries.length, N);
      entries.forEach((e, i) => assert.equal(e.sequence, BigInt(i)));
    });
  }

  test('writer StorageIo path (dsync): a failed RWF_DSYNC write reaches checkCompletions and poisons the writer; syncedPosition stays', async () => {
    const p = join(tempDir(), 'wal-0.log');
    const w = CoreWalWriter.create(0, p, { preallocate: 0 });
    const sio = UringStorageIo.create({ datasyncPath: 'dsync' });
    try {
      const fd = sio.registerFd(openSync(p, 'r')); // datasyncs work, writes fail with EBADF
      await cover(sio, fd);
      w.appendPutViaStorageIo(b('k'), b('v'), sio, fd);
      w.syncViaStorageIo(sio, fd);
      const out = [...(await drain(sio))].map(([token, result]) => ({ token, result }));
      assert.equal(sio.info().dsyncWrites, 1);
      assert.ok(out.some((c) => c.result === -EBADF));
      assert.ok(out.some((c) => c.result === -ECANCELED));
      assert.throws(() => w.checkCompletions(out), (e: unknown) => e instanceof PerCoreWalError && e.code === 'IO' && e.errno === EBADF);
      assert.equal(w.syncedPosition(), 0, 'nothing claimed durable');
    } finally {
      sio.close();
      w.close();
    }
  });

  test('bad datasyncPath and fuseMaxBytes are refused', () => {
    assert.throws(() => UringStorageIo.create({ datasyncPath: 'fast' as unknown as 'auto' }), (e: unknown) => e instanceof PerCoreWalError && e.code === 'INVALID_ARGUMENT');
    assert.throws(() => UringStorageIo.create({ fuseMaxBytes: -1 }), (e: unknown) => e instanceof PerCoreWalError && e.code === 'INVALID_ARGUMENT');
  });
});
