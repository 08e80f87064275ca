import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Worker } from 'node:worker_threads';
import { EpochRef, PerCoreWalConfig, PerCoreWalError, PerCoreWalManager } from '../src/index.js';
import { tempDir } from './helpers/tmp.js';

const WORKER = `
const { workerData, parentPort } = require('node:worker_threads');
import(workerData.url).then(({ EpochRef }) => {
  const ref = EpochRef.fromShared(workerData.shared);
  const seen = ref.load();
  for (let i = 0; i < workerData.n; i++) ref.advance();
  ref.raiseTo(0n); // never lowers
  parentPort.postMessage({ seen: seen.toString(), after: ref.load().toString() });
});
`;

test('the global epoch is shared with a real worker thread: concurrent advances are never lost', async () => {
  const m = PerCoreWalManager.create(new PerCoreWalConfig(tempDir(), 2, { preallocate: 0 }));
  m.setEpochAll(40);
  const ref = m.epochRef();
  const n = 20000;
  const url = new URL('../src/manager/epoch.js', import.meta.url).href;
  const worker = new Worker(WORKER, { eval: true, workerData: { url, shared: ref.shared, n } });
  const reply = new Promise<{ seen: string; after: string }>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  for (let i = 0; i < n; i++) ref.advance(); // races the worker's advances
  const msg = await reply;
  await worker.terminate();
  assert.ok(BigInt(msg.seen) >= 40n, 'the worker sees the main thread\'s epoch');
  assert.equal(m.epoch(), 40n + 2n * BigInt(n));
  // The manager moves its writers past what the worker did.
  assert.equal(m.advanceEpoch(), 40n + 2n * BigInt(n) + 1n);
  assert.equal(m.writer(1).epoch(), m.epoch());
  m.close();
});

test('EpochRef: raiseTo never lowers, fromShared checks its argument', () => {
  const r = EpochRef.create(10);
  assert.equal(r.raiseTo(5), 10n);
  assert.equal(r.raiseTo(12n), 12n);
  assert.equal(r.advance(), 13n);
  const again = EpochRef.fromShared(r.shared);
  again.advance();
  assert.equal(r.load(), 14n);
  const bad = (e: unknown) => e instanceof PerCoreWalError && e.code === 'INVALID_ARGUMENT';
  assert.throws(() => EpochRef.fromShared(new ArrayBuffer(8) as unknown as SharedArrayBuffer), bad);
  assert.throws(() => EpochRef.fromShared(new SharedArrayBuffer(8), 4), bad);
  assert.throws(() => EpochRef.create(-1), bad);
  assert.throws(() => EpochRef.create((1n << 64n) - 1n).advance(), (e: unknown) => e instanceof PerCoreWalError && e.code === 'EPOCH_MISMATCH');
});
