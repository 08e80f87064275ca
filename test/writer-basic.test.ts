import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { CoreWalWriter, PerCoreWalReader } from '../src/index.js';
import { b, tempDir } from './helpers/tmp.js';

test('write, sync, close, reopen, append again: one clean stream with continuing sequences', () => {
  const dir = tempDir();
  const p = join(dir, 'wal-0.log');
  const w = CoreWalWriter.create(0, p);
  assert.equal(w.appendPut(b('a'), b('1')), 0);
  w.appendDelete(b('a'));
  w.sync();
  assert.equal(w.syncedPosition(), w.position());
  w.close();
  const w2 = CoreWalWriter.create(0, p);
  assert.equal(w2.sequence(), 2n);
  w2.appendPut(b('b'), b('2'));
  w2.sync();
  w2.close();
  const entries = PerCoreWalReader.open(0, p).readAll();
  assert.deepEqual(entries.map((e) => e.sequence), [0n, 1n, 2n]);
  assert.deepEqual(entries.map((e) => e.operation.type), ['put', 'delete', 'put']);
  for (let i = 1; i < entries.length; i++) assert.ok(entries[i]!.timestampNs >= entries[i - 1]!.timestampNs);
});
