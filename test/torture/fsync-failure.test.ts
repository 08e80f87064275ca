import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { CoreWalWriter, PerCoreWalError, PerCoreWalReader, scanSegment } from '../../src/index.js';
import { FaultyFs, SimDisk } from '../../src/testing/index.js';
import { b, tempDir } from '../helpers/tmp.js';

function codeOf(f: () => unknown): string | undefined {
  try {
    f();
  } catch (e) {
    assert.ok(e instanceof PerCoreWalError, `untyped error ${String(e)}`);
    return e.code;
  }
  return undefined;
}

function expectPoisoned(w: CoreWalWriter): void {
  assert.equal(codeOf(() => w.appendPut(b('k'), b('v'))), 'POISONED');
  assert.equal(codeOf(() => w.appendDelete(b('k'))), 'POISONED');
  assert.equal(codeOf(() => w.appendCommit({ t: 1 }, 2)), 'POISONED');
  assert.equal(codeOf(() => w.sync()), 'POISONED');
  assert.equal(codeOf(() => w.flush()), 'POISONED');
  assert.equal(codeOf(() => w.markSynced()), 'POISONED');
  assert.equal(codeOf(() => w.truncate(0)), 'POISONED');
}

describe('fsync failure on the direct path (real files, FaultyFs)', () => {
  test('a failed fdatasync is reported as IO/EIO, never retried, and poisons the writer', () => {
    const dir = tempDir();
    const path = join(dir, 'wal-0.log');
    const fs = new FaultyFs();
    const w = CoreWalWriter.create(0, path, { fs, preallocate: 0 });
    w.appendPut(b('a'), b('1'));
    w.sync();
    const synced = w.syncedPosition();
    w.appendPut(b('b'), b('2'));
    const before = fs.callCount('fdatasyncSync');
    const fault = fs.injectFault({ op: 'fdatasyncSync', code: 'EIO' });
    let err: unknown;
    try { w.sync(); } catch (e) { err = e; }
    assert.ok(err instanceof PerCoreWalError);
    assert.equal(err.code, 'IO');
    assert.equal(err.errno, 5);
    assert.equal(err.path, path);
    assert.equal((err.cause as NodeJS.ErrnoException).code, 'EIO');
    assert.equal(fault.fired, 1);
    // Exactly one fdatasync: the failed one, not retried.
    assert.equal(fs.callCount('fdatasyncSync') - before, 1);
    assert.equal(w.syncedPosition(), synced);
    expectPoisoned(w);
    assert.equal(fs.callCount('fdatasyncSync') - before, 1, 'a poisoned writer touched fdatasync again');
    assert.equal(w.syncedPosition(), synced);
    w.close();
    // Recovery: the synced record is there and the segment reopens for appending.
    const scan = scanSegment(0, path);
    assert.ok(scan.entries >= 1);
    assert.notEqual(scan.tail, 'damaged');
    const w2 = CoreWalWriter.openAt(0, path, scan.validEnd, { preallocate: 0 });
    w2.appendPut(b('c'), b('3'));
    w2.sync();
    w2.close();
    const keys = PerCoreWalReader.open(0, path).readAll().map((e) => Buffer.from(e.key()!).toString());
    assert.deepEqual(keys.filter((k) => k !== 'b'), ['a', 'c']);
  });

  test('ENOSPC on write: IO with errno 28, poisoned, syncedPosition unchanged', () => {
    for (const preallocate of [0, 4096]) {
      const dir = tempDir();
      const path = join(dir, 'wal-0.log');
      const fs = new FaultyFs(undefined, { seed: preallocate });
      const w = CoreWalWriter.create(0, path, { fs, preallocate, bufferSize: 4096 });
      w.appendPut(b('a'), b('1'));
      w.sync();
      const synced = w.syncedPosition();
      fs.injectFault({ op: ['writeSync', 'writevSync'], code: 'ENOSPC', partial: true });
      let err: unknown;
      try {
        for (let i = 0; i < 100; i++) w.appendPut(b(`k${i}`), Buffer.alloc(100, i));
        w.sync();
      } catch (e) { err = e; }
      assert.ok(err instanceof PerCoreWalError, `preallocate ${preallocate}: ${String(err)}`);
      assert.equal(err.code, 'IO');
      assert.equal(err.errno, 28);
      assert.equal(w.syncedPosition(), synced);
      expectPoisoned(w);
      w.close();
      const entries = PerCoreWalReader.open(0, path).readAll();
      assert.ok(entries.length >= 1);
      assert.equal(Buffer.from(entries[0]!.key()!).toString(), 'a');
    }
  });

  test('a failed truncate or the fdatasync inside it poisons too', () => {
    for (const op of ['ftruncateSync', 'fdatasyncSync'] as const) {
      const dir = tempDir();
      const path = join(dir, 'wal-0.log');
      const fs = new FaultyFs();
      const w = CoreWalWriter.create(0, path, { fs, preallocate: 0 });
      const at = w.appendPut(b('a'), b('1'));
      w.appendPut(b('b'), b('2'));
      w.sync();
      const synced = w.syncedPosition();
      fs.injectFault({ op, code: 'EIO' });
      assert.equal(codeOf(() => w.truncate(at)), 'IO');
      assert.ok(w.syncedPosition() <= synced);
      expectPoisoned(w);
      w.close();
    }
  });

  test('a failed fdatasync on resume refuses the open instead of appending after unsynced bytes', () => {
    const dir = tempDir();
    const path = join(dir, 'wal-0.log');
    const w = CoreWalWriter.create(0, path, { preallocate: 0 });
    w.appendPut(b('a'), b('1'));
    w.sync();
    w.close();
    const fs = new FaultyFs();
    fs.injectFault({ op: 'fdatasyncSync', code: 'EIO' });
    assert.equal(codeOf(() => CoreWalWriter.create(0, path, { fs, preallocate: 0 })), 'IO');
  });
});

describe('fsync failure on the simulated disk: the lost data is really lost', () => {
  test('after a failed fdatasync the kernel forgets the pages; the writer never claims them', () => {
    for (let seed = 1; seed <= 50; seed++) {
      const disk = new SimDisk({ seed });
      disk.mkdirSync('/w');
      const w = CoreWalWriter.create(0, '/w/wal-0.log', { fs: disk, preallocate: 0 });
      w.appendPut(b('a'), b('1'));
      w.sync();
      const synced = w.syncedPosition();
      w.appendPut(b('b'), b('2'));
      disk.injectFault({ op: 'fdatasyncSync' });
      assert.equal(codeOf(() => w.sync()), 'IO');
      // A retry would succeed now (the disk only fails once) yet prove nothing.
      assert.equal(codeOf(() => w.sync()), 'POISONED');
      assert.equal(w.syncedPosition(), synced);
      const after = disk.crash(seed);
      const scan = scanSegment(0, '/w/wal-0.log', { fs: after });
      assert.notEqual(scan.tail, 'damaged');
      assert.ok(scan.entries >= 1 && scan.validEnd >= synced);
    }
  });
});
