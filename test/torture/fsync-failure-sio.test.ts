import assert from 'node:assert/strict';

import { join } from 'node:path';
import { describe, test } from 'node:test';
import {
  CoreWalWriter, PerCoreWalError, PerCoreWalReader, registerWriterSegment, SyncStorageIo, ThreadPoolStorageIo, UringStorageIo,
  type IoCompletion, type IoFd, type StorageIo,
} from '../../src/index.js';
import { FaultInjectingStorageIo } from '../../src/testing/index.js';
import { b, tempDir } from '../helpers/tmp.js';

async function settle(w: CoreWalWriter, sio: StorageIo): Promise<unknown> {
  for (let i = 0; i < 100 && sio.pendingCount() > 0; i++) {
    await sio.waitForCompletions();
    const out: IoCompletion[] = [];
    sio.pollCompletions(out);
    try {
      w.checkCompletions(out);
    } catch (e) {
      return e;
    }
  }
  return null;
}

const backends: [string, () => StorageIo][] = [
  ['SyncStorageIo', () => new SyncStorageIo()],
  ['ThreadPoolStorageIo', () => new ThreadPoolStorageIo()],
];
// io_uring where its addon is built and the kernel allows it (the uring tests say why not).
if (UringStorageIo.isSupported().supported) backends.push(['UringStorageIo', () => UringStorageIo.create()]);

describe('fsync failure through the fault-injecting StorageIo (real files)', () => {
  for (const [name, make] of backends) {
    test(`${name}: a failed datasync is reported once, never retried, poisons, and syncedPosition stays`, async () => {
      const dir = tempDir();
      const path = join(dir, 'wal-0.log');
      const w = CoreWalWriter.create(0, path, { preallocate: 0 });
      const sio = new FaultInjectingStorageIo(make(), { reorder: 'reverse' });
      const fd: IoFd = registerWriterSegment(w, sio);
      w.appendPutViaStorageIo(b('a'), b('1'), sio, fd);
      w.syncViaStorageIo(sio, fd);
      assert.equal(await settle(w, sio), null);
      const synced = w.syncedPosition();
      assert.equal(synced, w.position());
      w.appendPutViaStorageIo(b('b'), b('2'), sio, fd);
      sio.failNext('datasync', 'EIO');
      w.syncViaStorageIo(sio, fd);
      const err = await settle(w, sio);
      assert.ok(err instanceof PerCoreWalError, String(err));
      assert.equal(err.code, 'IO');
      assert.equal(err.errno, 5);
      assert.equal(w.syncedPosition(), synced);
      for (const f of [
        () => w.appendPutViaStorageIo(b('c'), b('3'), sio, fd), () => w.syncViaStorageIo(sio, fd),
        () => w.appendPut(b('c'), b('3')), () => w.sync(),
      ]) {
        assert.throws(f, (e: unknown) => e instanceof PerCoreWalError && e.code === 'POISONED');
      }
      assert.equal(await settle(w, sio), null);
      assert.equal(w.syncedPosition(), synced);
      // Exactly two datasyncs reached the backend: the good one and the failed one, no retry.
      assert.equal(sio.log.filter((o) => o.op === 'datasync').length, 2);
      sio.close();
      w.close();
      const keys = PerCoreWalReader.open(0, path).readAll().map((e) => Buffer.from(e.key()!).toString());
      assert.equal(keys[0], 'a');
    });

    test(`${name}: ENOSPC on a write poisons; a datasync let through after it does not make it count`, async () => {
      const dir = tempDir();
      const path = join(dir, 'wal-0.log');
      const w = CoreWalWriter.create(0, path, { preallocate: 0 });
      const sio = new FaultInjectingStorageIo(make(), { afterFailure: 'cancelWrites', reorder: 'reverse' });
      const fd = registerWriterSegment(w, sio);
      w.appendPutViaStorageIo(b('a'), b('1'), sio, fd);
      w.syncViaStorageIo(sio, fd);
      assert.equal(await settle(w, sio), null);
      const synced = w.syncedPosition();
      sio.failNext('write', 'ENOSPC');
      const at = w.appendPutViaStorageIo(b('b'), b('2'), sio, fd);
      w.syncViaStorageIo(sio, fd);
      const err = await settle(w, sio);
      assert.ok(err instanceof PerCoreWalError, String(err));
      assert.equal(err.code, 'IO');
      assert.equal(err.errno, 28);
      assert.equal(err.position, at);
      assert.equal(w.syncedPosition(), synced);
      assert.throws(() => w.syncViaStorageIo(sio, fd), (e: unknown) => e instanceof PerCoreWalError && e.code === 'POISONED');
      sio.close();
      w.close();
    });
  }
});
