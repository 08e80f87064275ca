import assert from 'node:assert/strict';
import { openSync, writeSync, fdatasyncSync, closeSync } from 'node:fs';
import { test } from 'node:test';
import {
  PerCoreWalConfig, PerCoreWalError, PerCoreWalManager, type IoCompletion, type IoFd, type StorageIo,
} from '../src/index.js';
import { b, tempDir } from './helpers/tmp.js';

/**
 * A StorageIo whose writes reach the file at once but complete only when the test says
 * so: the bytes are in the file, yet nothing may treat them as written before then.
 */
class HeldIo implements StorageIo {
  private next = 1;
  private held = new Map<number, { fd: number; len: number; sync: boolean }>();
  private staged: IoCompletion[] = [];
  registerFd(fd: number): IoFd { return fd as IoFd; }
  deregisterFd(fd: IoFd): void { closeSync(fd); }
  submitWrite(fd: IoFd, data: Uint8Array, offset: number): number {
    writeSync(fd, data, 0, data.length, offset);
    const t = this.next++;
    this.held.set(t, { fd, len: data.length, sync: false });
    return t;
  }
  submitAppend(): number { throw new Error('unused'); }
  submitDatasync(fd: IoFd): number {
    const t = this.next++;
    this.held.set(t, { fd, len: 0, sync: true });
    return t;
  }
  flush(): number { return 0; }
  /** Completes `token` with its full length (or `result`). */
  complete(token: number, result?: number): void {
    const op = this.held.get(token)!;
    this.held.delete(token);
    if (op.sync && result === undefined) fdatasyncSync(op.fd);
    this.staged.push({ token, result: result ?? op.len });
  }
  pollCompletions(out: IoCompletion[]): void { out.push(...this.staged); this.staged = []; }
  pendingCount(): number { return this.held.size + this.staged.length; }
  waitForCompletions(): Promise<void> { return Promise.resolve(); }
  close(): void {}
}

const keys = (m: PerCoreWalManager) => m.mergeSegments().map((e) => Buffer.from(e.key()!).toString());

test('merge never reads past a StorageIo segment\'s completed writes; checkAllCompletions counts completed syncs', () => {
  const cfg = new PerCoreWalConfig(tempDir(), 2, { preallocate: 0 });
  const m = PerCoreWalManager.create(cfg);
  const sio = new HeldIo();
  const fd0 = sio.registerFd(openSync(cfg.segmentPath(0), 'r+'));
  const w0 = m.writer(0);
  w0.appendPutViaStorageIo(b('a'), b('1'), sio, fd0);
  w0.appendPutViaStorageIo(b('b'), b('2'), sio, fd0);
  w0.appendPutViaStorageIo(b('c'), b('3'), sio, fd0);
  m.writer(1).appendPut(b('direct'), b('x')); // buffered on the direct path: merge flushes it
  const [t0, t1, t2] = [1, 2, 3];
  assert.deepEqual(keys(m), ['direct'], 'bytes in the file but not completed are not merged');
  const batch: IoCompletion[] = [];
  sio.complete(t1);
  sio.pollCompletions(batch);
  assert.equal(m.checkAllCompletions(batch), 0);
  assert.deepEqual(keys(m).sort(), ['direct'], 'a later write completing first proves nothing about an earlier one');
  batch.length = 0;
  sio.complete(t0);
  sio.pollCompletions(batch);
  assert.equal(m.checkAllCompletions(batch), 0);
  assert.deepEqual(keys(m).filter((k) => k !== 'direct'), ['a', 'b']);
  const ts = w0.syncViaStorageIo(sio, fd0);
  assert.equal(m.anySyncPending(), true);
  batch.length = 0;
  sio.complete(t2);
  sio.complete(ts);
  sio.pollCompletions(batch);
  assert.equal(m.checkAllCompletions(batch), 1);
  assert.equal(m.anySyncPending(), false);
  assert.equal(w0.syncedPosition(), w0.position());
  assert.deepEqual(keys(m).filter((k) => k !== 'direct'), ['a', 'b', 'c']);
  m.close();
  sio.deregisterFd(fd0);
});

test('checkAllCompletions feeds every writer even when one fails, then throws the failure', () => {
  const cfg = new PerCoreWalConfig(tempDir(), 2, { preallocate: 0 });
  const m = PerCoreWalManager.create(cfg);
  const sio = new HeldIo();
  const fds = [0, 1].map((c) => sio.registerFd(openSync(cfg.segmentPath(c), 'r+')));
  m.writer(0).appendPutViaStorageIo(b('lost'), b('1'), sio, fds[0]!);
  m.writer(1).appendPutViaStorageIo(b('kept'), b('2'), sio, fds[1]!);
  const batch: IoCompletion[] = [];
  sio.complete(1, -5); // EIO on core 0
  sio.complete(2);
  sio.pollCompletions(batch);
  assert.throws(() => m.checkAllCompletions(batch), (e: unknown) => e instanceof PerCoreWalError && e.code === 'IO' && e.coreId === 0 && e.errno === 5);
  assert.equal(m.writer(0).isPoisoned(), true);
  assert.equal(m.writer(1).completedPosition(), m.writer(1).position(), 'core 1 got its completion');
  assert.deepEqual(keys(m), ['kept'], 'the poisoned segment merges up to what completed: nothing');
  m.close();
  for (const fd of fds) sio.deregisterFd(fd);
});
