import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CoreWalWriter, PerCoreWalError, PerCoreWalReader, scanSegment } from '../../src/index.js';
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
