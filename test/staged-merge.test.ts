import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import fc from 'fast-check';
import { CheckpointStore, PerCoreWalConfig, PerCoreWalManager } from '../src/index.js';
import { mergeSegmentsIntoStore } from '../src/checkpoint/coordinator.js';
import { mergeSegmentsStaged, SortedRuns, Slicer } from '../src/checkpoint/staged-merge.js';
import { b, tempDir } from './helpers/tmp.js';

// The pool's merge (mergeSegmentsStaged) yields to the event loop; among its steps, the
// sort of the values to read back goes in runs, read back through a merge of the runs.

test('SortedRuns hands out any values in ascending order, whatever the run length', () => {
  fc.assert(fc.property(fc.array(fc.nat(1e9), { maxLength: 300 }), fc.integer({ min: 1, max: 40 }), (xs, run) => {
    const runs = new SortedRuns(Float64Array.from(xs), run);
    let sorts = 0;
    while (!runs.sortSome()) sorts++;
    assert.ok(sorts <= Math.ceil(xs.length / run), 'one run a call');
    const out: number[] = [];
    for (let v = runs.next(); v >= 0; v = runs.next()) out.push(v);
    assert.deepEqual(out, [...xs].sort((x, y) => x - y));
  }), { numRuns: 300 });
});

test('the staged merge, its read-back sorted in runs of 7, stages exactly what the synchronous merge writes', async () => {
  // (1000 keys in runs of 7 would be 143 runs: capped at 64, so runs of 16.)
  const dir = tempDir();
  const config = new PerCoreWalConfig(join(dir, 'wal'), 3, { preallocate: 0 });
  const wal = PerCoreWalManager.create(config);
  wal.setEpochAll(1);
  // Overwrites across cores, deletes, and values large enough to be read back from their records.
  for (let i = 0; i < 3000; i++) {
    const w = wal.writer(i % 3);
    const k = b(`key-${(i * 7919) % 1000}`);
    if (i % 11 === 0) w.appendDelete(k);
    else w.appendPut(k, b(`v${i}-`.padEnd(40 + (i % 50), 'x')));
  }
  wal.syncAll();
  const from = [0, 0, 0];
  const to = [0, 1, 2].map((c) => wal.writer(c).position());
  const store = CheckpointStore.open({ checkpointDir: join(dir, 'cp') });
  mergeSegmentsIntoStore(config, store, from, to);
  const staged = await mergeSegmentsStaged(config, from, to, new Slicer({ sliceMs: 0, stepEntries: 16 }), 7);
  const expected = new Map([...store.state().entries()].map(([k, v]) => [Buffer.from(k).toString('latin1'), Buffer.from(v).toString()]));
  const got = new Map<string, string>();
  for (const [k, v] of staged.kv) if (v !== null) got.set(k, Buffer.from(v).toString());
  assert.equal(got.size, expected.size);
  assert.deepEqual(got, expected);
  for (const [k, v] of staged.kv) if (v === null) assert.equal(store.state().get(Buffer.from(k, 'latin1')), undefined, 'a staged delete is absent after the merge');
  wal.close();
});
