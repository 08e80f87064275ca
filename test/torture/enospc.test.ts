import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CoreWalWriter, GroupCommitLog, PerCoreWalError, PerCoreWalReader, scanSegment } from '../../src/index.js';
import { killValue } from './kill-values.js';

/**
 * A real full disk: a small tmpfs mounted for the test. Mounting needs root (or
 * CAP_SYS_ADMIN); where it is refused the tests skip and say why.
 */
const mounts: string[] = [];
let skipReason: string | null = null;

function mountTmpfs(dir: string, bytes: number): void {
  mkdirSync(dir, { recursive: true });
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${bytes}`, 'tmpfs', dir], { stdio: 'pipe' });
  mounts.push(dir);
}

// Not tempDir(): its cleanup could run before the unmount below.
const root = mkdtempSync(join(tmpdir(), 'corewal-enospc-'));
before(() => {
  try {
    mountTmpfs(join(root, 'probe'), 64 * 1024);
  } catch (e) {
    skipReason = `cannot mount a tmpfs here (${String((e as Error).message).split('\n')[0]}); run as root to test a real full disk`;
  }
});
after(() => {
  for (const m of mounts.reverse()) {
    try { execFileSync('umount', [m], { stdio: 'pipe' }); } catch { execFileSync('umount', ['-l', m], { stdio: 'pipe' }); }
  }
  rmSync(root, { recursive: true, force: true });
});

function fillUntilFull(w: CoreWalWriter): { err: PerCoreWalError; syncedSeq: bigint; synced: number } {
  let syncedSeq = -1n;
  let synced = w.syncedPosition();
  for (let i = 0; i < 100_000; i++) {
    try {
      const seq = w.sequence();
      w.appendPut(Buffer.from(`k${seq}`), killValue(seq));
      if (i % 10 === 9) {
        w.sync();
        syncedSeq = seq;
        synced = w.syncedPosition();
      }
    } catch (e) {
      assert.ok(e instanceof PerCoreWalError, `untyped error ${String(e)}`);
      return { err: e, syncedSeq, synced };
    }
  }
  assert.fail('the disk never filled');
}

const cases: { name: string; preallocate?: number; size: number; filler: number }[] = [
  { name: 'preallocate: 0', preallocate: 0, size: 1 << 20, filler: 512 << 10 },
  { name: 'preallocate: 64 KiB', preallocate: 64 << 10, size: 1 << 20, filler: 512 << 10 },
  { name: 'default preallocation (4 MiB)', size: 8 << 20, filler: 3 << 20 },
];

describe('ENOSPC on a real full disk (tmpfs)', () => {
  for (const c of cases) {
    test(c.name, (t) => {
      if (skipReason !== null) {
        t.skip(skipReason);
        return;
      }
      const mnt = join(root, c.name.replace(/\W+/g, '-'));
      mountTmpfs(mnt, c.size);
      const filler = join(mnt, 'filler');
      writeFileSync(filler, Buffer.alloc(c.filler, 1));
      const path = join(mnt, 'wal-0.log');
      const opts = c.preallocate === undefined ? {} : { preallocate: c.preallocate };
      const w = CoreWalWriter.create(0, path, opts);
      const { err, syncedSeq, synced } = fillUntilFull(w);
      assert.equal(err.code, 'IO', err.message);
      assert.equal(err.errno, 28, `errno ${err.errno}: ${err.message}`);
      assert.match(err.message, /ENOSPC/);
      assert.ok(syncedSeq >= 0n, 'nothing was synced before the disk filled');
      assert.equal(w.syncedPosition(), synced, 'syncedPosition moved in the failed operation');
      for (const f of [() => w.appendPut(Buffer.from('x'), Buffer.from('y')), () => w.sync(), () => w.appendEpochBarrier()]) {
        assert.throws(f, (e: unknown) => e instanceof PerCoreWalError && e.code === 'POISONED');
      }
      w.close();

      // Free space, then recover as recovery does: nothing synced is lost, appends work again.
      rmSync(filler);
      const scan = scanSegment(0, path);
      assert.notEqual(scan.tail, 'damaged');
      assert.ok(scan.validEnd >= synced, `valid end ${scan.validEnd} before synced ${synced}`);
      const w2 = scan.tail === 'clean' ? CoreWalWriter.create(0, path, opts) : CoreWalWriter.openAt(0, path, scan.validEnd, opts);
      const resumed = w2.sequence();
      assert.ok(resumed > syncedSeq);
      for (let i = 0; i < 20; i++) {
        const seq = w2.sequence();
        w2.appendPut(Buffer.from(`k${seq}`), killValue(seq));
      }
      w2.sync();
      w2.close();
      const all = PerCoreWalReader.open(0, path).readAll();
      assert.equal(all.length, Number(resumed) + 20);
      all.forEach((e, i) => {
        assert.equal(e.sequence, BigInt(i));
        assert.deepEqual(Buffer.from(e.value()!), killValue(e.sequence));
      });
    });
  }
});

describe('ENOSPC on a real full disk through group commit (StorageIo path)', () => {
  test('acknowledged puts survive, the failure is IO/ENOSPC, later puts are POISONED, and the log reopens once space is freed', async (t) => {
    if (skipReason !== null) {
      t.skip(skipReason);
      return;
    }
    const mnt = join(root, 'group-commit');
    mountTmpfs(mnt, 1 << 20);
    const filler = join(mnt, 'filler');
    writeFileSync(filler, Buffer.alloc(512 << 10, 1));
    const path = join(mnt, 'wal-0.log');
    const log = GroupCommitLog.open(path, { writerOptions: { preallocate: 0 } });
    const acked: bigint[] = [];
    let failure: unknown = null;
    for (let seq = 0n; failure === null && seq < 100_000n; ) {
      const batch: Promise<void>[] = [];
      for (let i = 0; i < 50; i++, seq++) {
        const s = seq;
        batch.push(log.put(Buffer.from(`k${s}`), killValue(s)).then(() => { acked.push(s); }, (e: unknown) => { failure ??= e; }));
      }
      await Promise.all(batch);
    }
    assert.ok(failure instanceof PerCoreWalError, `the disk never filled, or an untyped error: ${String(failure)}`);
    assert.equal(failure.code, 'IO');
    assert.equal(failure.errno, 28);
    assert.ok(acked.length > 0, 'nothing was acknowledged before the disk filled');
    await assert.rejects(log.put(Buffer.from('x'), Buffer.from('y')), (e: unknown) => e instanceof PerCoreWalError && e.code === 'POISONED');
    await log.close().catch(() => {});

    rmSync(filler);
    const scan = scanSegment(0, path);
    assert.notEqual(scan.tail, 'damaged');
    const w = CoreWalWriter.openAt(0, path, scan.validEnd, { preallocate: 0 });
    w.appendPut(Buffer.from('after'), Buffer.from('space'));
    w.sync();
    w.close();
    const bySeq = new Map(PerCoreWalReader.open(0, path).readAll().map((e) => [e.sequence, e]));
    for (const s of acked) assert.deepEqual(Buffer.from(bySeq.get(s)?.value() ?? []), killValue(s), `acknowledged put ${s}`);
  });
});
