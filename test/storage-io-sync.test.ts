import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { constants } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { realFs, SyncStorageIo } from '../src/index.js';
import type { IoCompletion, WalFs } from '../src/index.js';
import { storageIoSuite } from './helpers/storage-io-suite.js';
import { b, tempDir } from './helpers/tmp.js';

storageIoSuite('SyncStorageIo', (o) => new SyncStorageIo(o));

test('SyncStorageIo does its I/O inside submit and stages the completion for the next poll', () => {
  const p = join(tempDir(), 'inline.bin');
  fs.writeFileSync(p, '');
  const sio = new SyncStorageIo();
  const fd = sio.registerFd(fs.openSync(p, 'r+'));
  const t = sio.submitAppend(fd, b('now'));
  assert.equal(fs.readFileSync(p, 'utf8'), 'now', 'written before any flush or poll');
  const out: IoCompletion[] = [];
  sio.pollCompletions(out);
  assert.deepEqual(out, [{ token: t, result: 3 }]);
  sio.close();
});

test('SyncStorageIo runs on an injected WalFs: an fdatasync failure there reaches the completion', () => {
  const p = join(tempDir(), 'walfs.bin');
  fs.writeFileSync(p, '');
  let syncs = 0;
  const failing: WalFs = {
    ...realFs,
    fdatasyncSync: () => {
      syncs++;
      throw Object.assign(new Error('EIO: i/o error, fdatasync'), { errno: -constants.errno.EIO, code: 'EIO' });
    },
  };
  const sio = new SyncStorageIo({ fs: failing });
  const fd = sio.registerFd(fs.openSync(p, 'r+'));
  sio.submitAppend(fd, b('x'));
  const s = sio.submitDatasync(fd);
  const s2 = sio.submitDatasync(fd);
  const out: IoCompletion[] = [];
  sio.pollCompletions(out);
  assert.equal(out.find((c) => c.token === s)!.result, -constants.errno.EIO);
  assert.equal(out.find((c) => c.token === s2)!.result, -constants.errno.ECANCELED, 'a failed fsync is never retried');
  assert.equal(syncs, 1);
  sio.close();
});
