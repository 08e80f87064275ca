import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CoreWalPool, PerCoreWalError, scanSegment } from '../src/index.js';
import { readCore } from './helpers/read-core.js';
import { tempDir } from './helpers/tmp.js';

const isWorkerFailed = (core: number) => (e: unknown) =>
  e instanceof PerCoreWalError && e.code === 'WORKER_FAILED' && e.coreId === core && e.message.includes(`core ${core}`);

interface Outcome { acked: Map<number, { key: string; ticket: number }[]>; refused: { core: number; err: unknown }[] }

/** Producers append to both cores until `stop()`; every outcome is recorded. */
function ingest(pool: CoreWalPool, lanes: number): { done: Promise<Outcome>; stop: () => void; ackedOn: (c: number) => number } {
  let stopped = false;
  const acked = new Map<number, { key: string; ticket: number }[]>([[0, []], [1, []]]);
  const refused: { core: number; err: unknown }[] = [];
  const value = Buffer.alloc(100, 0x5a);
  let n = 0;
  const lane = async (core: number) => {
    while (!stopped) {
      const key = `c${core}-${n++}`;
      try {
        const ticket = await pool.put(key, value, { core });
        acked.get(core)!.push({ key, ticket });
      } catch (err) {
        refused.push({ core, err });
        if (core === 0) await new Promise((r) => setTimeout(r, 1)); // a failed core refuses at once: don't spin
      }
    }
  };
  const done = Promise.all(Array.from({ length: lanes }, (_, i) => lane(i % 2))).then(() => ({ acked, refused }));
  return { done, stop: () => { stopped = true; }, ackedOn: (c) => acked.get(c)!.length };
}

async function until(cond: () => boolean, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

for (const how of ['terminate', 'exit', 'throw'] as const) {
  test(`a worker killed mid-stream (${how}): acknowledged records survive, the core's appends reject with WORKER_FAILED, a restart recovers it`, async () => {
    const dir = tempDir();
    const pool = await CoreWalPool.start({ dir, workers: 2, preallocate: 0 });
    const events: [number, PerCoreWalError][] = [];
    pool.on('coreFailed', (core, err) => events.push([core, err]));
    const run = ingest(pool, 64);
    await until(() => run.ackedOn(0) >= 500, '500 acknowledged appends on core 0');
    await pool.injectFault(0, how);
    const ackedAtFault = run.ackedOn(1);
    await until(() => run.ackedOn(1) >= ackedAtFault + 200, 'core 1 to keep going');
    run.stop();
    const { acked, refused } = await run.done;

    assert.deepEqual(pool.failedCores(), [0]);
    assert.equal(events.length, 1);
    assert.equal(events[0]![0], 0);
    assert.ok(isWorkerFailed(0)(events[0]![1]));
    assert.ok(isWorkerFailed(0)(pool.coreError(0)));
    assert.ok(refused.length > 0, 'appends in flight on core 0 were refused');
    for (const r of refused) {
      assert.equal(r.core, 0, 'core 1 refused nothing');
      assert.ok(isWorkerFailed(0)(r.err), String(r.err));
    }
    await assert.rejects(pool.put('later', 'v', { core: 0 }), isWorkerFailed(0));
    assert.ok(await pool.put('later', 'v', { core: 1 }) > 0, 'the other core still works');
    await pool.close();

    // On disk: valid records, perhaps a torn tail (never damage), every acknowledged record.
    const scan = scanSegment(0, pool.segmentPath(0));
    assert.ok(scan.tail === 'clean' || scan.tail === 'torn', `core 0 tail is ${scan.tail}`);
    const again = await CoreWalPool.start({ dir, workers: 2, preallocate: 0 });
    assert.equal(again.openReport()[0]!.validEnd, scan.validEnd);
    const lastSeq = again.openReport()[0]!.sequence;
    assert.equal(await again.put('after', 'restart', { core: 0 }), 1);
    await again.close();
    for (const core of [0, 1]) {
      const entries = readCore(again.segmentPath(core), core);
      const at = new Map(entries.map((e, i) => [Buffer.from(e.key()!).toString(), i]));
      let prev = -1;
      for (const a of acked.get(core)!.sort((x, y) => x.ticket - y.ticket)) {
        const i = at.get(a.key);
        assert.ok(i !== undefined, `acknowledged ${a.key} on core ${core} survived`);
        assert.ok(i > prev, `core ${core} order`);
        prev = i;
      }
      for (let i = 1; i < entries.length; i++) assert.equal(entries[i]!.sequence, entries[i - 1]!.sequence + 1n);
      if (core === 0) {
        assert.equal(Buffer.from(entries.at(-1)!.key()!).toString(), 'after');
        assert.equal(entries.at(-1)!.sequence, lastSeq, 'the restarted core resumes its sequence');
      }
    }
  });
}

test('a core that fails while idle is reported, and close() still closes the others', async () => {
  const dir = tempDir();
  const pool = await CoreWalPool.start({ dir, workers: 2, preallocate: 0 });
  const failed = new Promise<number>((resolve) => pool.once('coreFailed', (c) => resolve(c)));
  await pool.put('a', '1', { core: 1 });
  await pool.injectFault(1, 'exit');
  assert.equal(await failed, 1);
  await assert.rejects(pool.delete('a', { core: 1 }), isWorkerFailed(1));
  assert.equal(await pool.put('b', '2', { core: 0 }), 1);
  await pool.close();
  assert.deepEqual(pool.failedCores(), [1]);
  assert.equal(readCore(pool.segmentPath(1), 1).length, 1);
});
