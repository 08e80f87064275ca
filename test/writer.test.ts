import assert from 'node:assert/strict';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { CoreWalWriter, PerCoreWalError, PerCoreWalReader, realFs, type WalFs } from '../src/index.js';
import { b, tempDir } from './helpers/tmp.js';

const code = (f: () => unknown): string => {
  try { f(); return 'none'; } catch (e) { return e instanceof PerCoreWalError ? e.code : `untyped: ${String(e)}`; }
};

/** Real fs whose chosen operation fails once with an errno-shaped error, like Node's SystemError. */
function failing(op: 'writeSync' | 'fdatasyncSync', errCode: 'EIO' | 'ENOSPC'): WalFs & { armed: boolean; calls: number } {
  const errno = errCode === 'EIO' ? -5 : -28;
  const f = {
    ...realFs, armed: false, calls: 0,
    [op]: (...args: unknown[]) => {
      f.calls++;
      if (f.armed) {
        f.armed = false;
        throw Object.assign(new Error(`${errCode}: injected, ${op}`), { code: errCode, errno, syscall: op });
      }
      return (realFs[op] as (...a: unknown[]) => unknown)(...args);
    },
  } as WalFs & { armed: boolean; calls: number };
  return f;
}

test('a failed fdatasync poisons the writer, is never retried, and syncedPosition stays put', () => {
  const dir = tempDir();
  const fs = failing('fdatasyncSync', 'EIO');
  const w = CoreWalWriter.create(0, join(dir, 'wal-0.log'), { fs, preallocate: 0 });
  w.appendPut(b('a'), b('1'));
  w.sync();
  const synced = w.syncedPosition();
  w.appendPut(b('b'), b('2'));
  fs.armed = true;
  const err = (() => { try { w.sync(); } catch (e) { return e as PerCoreWalError; } return null; })();
  assert.ok(err instanceof PerCoreWalError);
  assert.equal(err.code, 'IO');
  assert.equal(err.errno, 5);
  assert.ok(err.cause instanceof Error);
  assert.equal(w.syncedPosition(), synced);
  const callsAfterFailure = fs.calls;
  assert.equal(code(() => w.sync()), 'POISONED');
  assert.equal(code(() => w.appendPut(b('c'), b('3'))), 'POISONED');
  assert.equal(code(() => w.appendCommit({ a: 1 })), 'POISONED');
  assert.equal(fs.calls, callsAfterFailure, 'no fdatasync retried after the failure');
  assert.equal(w.syncedPosition(), synced);
  w.close();
});

test('a failed write (ENOSPC) poisons the writer; what was synced before survives', () => {
  const dir = tempDir();
  const path = join(dir, 'wal-0.log');
  const fs = failing('writeSync', 'ENOSPC');
  const w = CoreWalWriter.create(0, path, { fs, preallocate: 0, bufferSize: 4096 });
  w.appendPut(b('kept'), b('1'));
  w.sync();
  fs.armed = true;
  let failed: PerCoreWalError | null = null;
  for (let i = 0; i < 100 && failed === null; i++) {
    try { w.appendPut(b(`k${i}`), Buffer.alloc(100)); } catch (e) { failed = e as PerCoreWalError; }
  }
  if (failed === null) { try { w.sync(); } catch (e) { failed = e as PerCoreWalError; } }
  assert.ok(failed);
  assert.equal(failed.code, 'IO');
  assert.equal(failed.errno, 28);
  assert.equal(code(() => w.appendPut(b('x'), b('y'))), 'POISONED');
  w.close();
  const entries = PerCoreWalReader.open(0, path).readAll();
  assert.equal(Buffer.from(entries[0]!.key()!).toString(), 'kept');
});

test('bad arguments fail before a byte is written', () => {
  const dir = tempDir();
  const path = join(dir, 'wal-0.log');
  const w = CoreWalWriter.create(0, path, { maxRecordSize: 1024, preallocate: 0 });
  w.appendPut(b('a'), b('1'));
  w.sync();
  const size = statSync(path).size;
  const pos = w.position(), seq = w.sequence();
  assert.equal(code(() => w.appendPut('k' as unknown as Uint8Array, b('v'))), 'INVALID_ARGUMENT');
  assert.equal(code(() => w.appendPut(b('k'), null as unknown as Uint8Array)), 'INVALID_ARGUMENT');
  assert.equal(code(() => w.appendDelete(42 as unknown as Uint8Array)), 'INVALID_ARGUMENT');
  assert.equal(code(() => w.appendPut(b('k'), Buffer.alloc(2000))), 'RECORD_TOO_LARGE');
  assert.equal(code(() => w.setEpoch(-1)), 'INVALID_ARGUMENT');
  assert.equal(code(() => w.setEpoch(1n << 64n)), 'INVALID_ARGUMENT');
  assert.equal(code(() => w.appendCheckpoint(-5)), 'INVALID_ARGUMENT');
  assert.equal(code(() => w.appendCommit({ a: 1.5 })), 'INVALID_ARGUMENT');
  assert.equal(code(() => w.appendCommit({ a: 1 }, 'x' as unknown as number)), 'INVALID_ARGUMENT');
  assert.equal(code(() => w.truncate(-1)), 'INVALID_POSITION');
  assert.equal(code(() => w.truncate(pos + 100)), 'INVALID_POSITION');
  assert.equal(code(() => CoreWalWriter.create(-1, join(dir, 'x.log'))), 'INVALID_CORE_ID');
  assert.equal(code(() => CoreWalWriter.openAt(0, path, -3)), 'INVALID_POSITION');
  assert.equal(code(() => CoreWalWriter.openAt(0, path, 3)), 'INVALID_POSITION');
  w.sync();
  assert.equal(w.position(), pos);
  assert.equal(w.sequence(), seq);
  assert.equal(statSync(path).size, size);
  w.close();
  assert.equal(PerCoreWalReader.open(0, path).readAll().length, 1);
});

test('the epoch never decreases; timestamps never decrease when the clock steps back', () => {
  const dir = tempDir();
  let now = 1_000_000n;
  const clock = () => now;
  const path = join(dir, 'wal-0.log');
  const w = CoreWalWriter.create(0, path, { clock });
  w.setEpoch(5);
  assert.equal(code(() => w.setEpoch(4)), 'EPOCH_MISMATCH');
  w.setEpoch(5);
  assert.equal(w.epoch(), 5n);
  w.appendPut(b('a'), b('1'));
  now = 500n; // the wall clock steps back
  w.appendPut(b('b'), b('2'));
  now = 2_000_000n;
  w.appendPut(b('c'), b('3'));
  w.sync();
  w.close();
  now = 10n; // and back again across a restart
  const w2 = CoreWalWriter.create(0, path, { clock });
  assert.equal(w2.epoch(), 5n, 'epoch resumes from the segment');
  w2.appendDelete(b('a'));
  w2.sync();
  w2.close();
  const ts = PerCoreWalReader.open(0, path).readAll().map((e) => e.timestampNs);
  assert.deepEqual(ts, [1_000_000n, 1_000_000n, 2_000_000n, 2_000_000n]);
});

test('create refuses a segment with an invalid tail; openAt resumes at a boundary and cuts the rest', () => {
  const dir = tempDir();
  const path = join(dir, 'wal-0.log');
  const w = CoreWalWriter.create(0, path, { preallocate: 0 });
  const p1 = w.appendPut(b('a'), b('1'));
  const p2 = w.appendPut(b('b'), b('2'));
  w.sync();
  const end = w.position();
  w.close();
  const full = readFileSync(path);
  writeFileSync(path, full.subarray(0, end - 3));
  assert.equal(code(() => CoreWalWriter.create(0, path)), 'INVALID_TAIL');
  assert.equal(readFileSync(path).length, end - 3, 'a refused create changes nothing');
  assert.equal(code(() => CoreWalWriter.openAt(0, path, end)), 'INVALID_POSITION');
  const w2 = CoreWalWriter.openAt(0, path, p2);
  assert.equal(w2.sequence(), 1n);
  assert.equal(statSync(path).size, p2, 'bytes after the position are cut');
  assert.equal(w2.appendPut(b('c'), b('3')), p2);
  w2.sync();
  w2.close();
  const entries = PerCoreWalReader.open(0, path).readAll();
  assert.deepEqual(entries.map((e) => [e.sequence, Buffer.from(e.key()!).toString()]), [[0n, 'a'], [1n, 'c']]);
  assert.equal(p1, 0);
});

test('preallocated zeros read as the end of the log, and a reopen appends right after the last record', () => {
  const dir = tempDir();
  const path = join(dir, 'wal-0.log');
  const w = CoreWalWriter.create(0, path, { preallocate: 1 << 20 });
  w.appendPut(b('a'), b('1'));
  w.sync();
  const end = w.position();
  w.close();
  assert.ok(statSync(path).size > end, 'the segment is preallocated');
  const w2 = CoreWalWriter.create(0, path, { preallocate: 1 << 20 });
  assert.equal(w2.position(), end);
  w2.appendPut(b('b'), b('2'));
  w2.sync();
  w2.close();
  assert.deepEqual(PerCoreWalReader.open(0, path).readAll().map((e) => e.sequence), [0n, 1n]);
});

test('truncate and reset keep sequences and the epoch counting up', () => {
  const dir = tempDir();
  const path = join(dir, 'wal-0.log');
  const w = CoreWalWriter.create(0, path);
  w.appendPut(b('a'), b('1'));
  const p = w.appendPut(b('b'), b('2'));
  w.appendPut(b('c'), b('3'));
  w.sync();
  w.truncate(p);
  assert.equal(w.position(), p);
  assert.ok(w.syncedPosition() <= p);
  assert.equal(code(() => w.truncate(p - 1)), 'INVALID_POSITION');
  w.appendPut(b('d'), b('4'));
  w.sync();
  assert.deepEqual(PerCoreWalReader.open(0, path).readAll().map((e) => [e.sequence, Buffer.from(e.key()!).toString()]), [[0n, 'a'], [3n, 'd']]);
  w.reset();
  assert.equal(w.position(), 0);
  assert.equal(w.syncedPosition(), 0);
  w.appendPut(b('e'), b('5'));
  w.sync();
  w.close();
  assert.deepEqual(PerCoreWalReader.open(0, path).readAll().map((e) => e.sequence), [4n]);
});

test('markers, commits and appended entries are stamped by the writer', () => {
  const dir = tempDir();
  const path = join(dir, 'wal-0.log');
  const w = CoreWalWriter.create(3, path);
  w.setEpoch(2);
  w.appendCheckpoint(9);
  w.appendEpochBarrier();
  w.appendCommit(new Map<string, bigint | number>([['topic-0', 10n], ['topic-1', 20]]), 1234);
  w.appendCommit({ a: -1 });
  assert.equal(w.entriesSinceSync(), 4);
  w.sync();
  assert.equal(w.entriesSinceSync(), 0);
  w.close();
  const e = PerCoreWalReader.open(3, path).readAll();
  assert.deepEqual(e.map((x) => x.operation), [
    { type: 'checkpoint', id: 9n },
    { type: 'epochBarrier', epoch: 2n },
    { type: 'commit', offsets: new Map([['topic-0', 10n], ['topic-1', 20n]]), watermark: 1234n },
    { type: 'commit', offsets: new Map([['a', -1n]]), watermark: null },
  ]);
  assert.ok(e.every((x) => x.coreId === 3 && x.epoch === 2n));
  assert.deepEqual(e.map((x) => x.sequence), [0n, 1n, 2n, 3n]);
});

test('records carry the durable boundary known when they were appended', () => {
  const dir = tempDir();
  const path = join(dir, 'wal-0.log');
  const w = CoreWalWriter.create(0, path);
  w.appendPut(b('a'), b('1'));
  w.sync();
  const s1 = w.syncedPosition();
  w.appendPut(b('b'), b('2'));
  w.appendPut(b('c'), b('3'));
  w.sync();
  w.close();
  assert.deepEqual(PerCoreWalReader.open(0, path).readAll().map((e) => e.syncedBoundary), [0, s1, s1]);
});
