import assert from 'node:assert/strict';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { test } from 'node:test';
import { CoreWalPool } from '../src/index.js';
import { tempDir } from './helpers/tmp.js';

// A responsiveness check, not a speed assertion: during a heavy durable ingest the main
// thread only copies records into rings and resolves promises, so its timers stay on time.
// The bound is generous because the machine is shared (2 cores, other test suites, two busy
// workers): preemption alone costs tens of ms at a load of 8. Appending and syncing on the
// main thread (one fdatasync per record, as a naive loop would) blocks it for hundreds.
test('the main event loop stays responsive during a heavy ingest', async (t) => {
  const pool = await CoreWalPool.start({ dir: tempDir(), workers: 2 });
  const value = Buffer.alloc(100, 0x61);
  let stop = false;
  let acked = 0;
  let n = 0;
  const lane = async () => {
    while (!stop) {
      await pool.put(`k${n++}`, value);
      acked++;
    }
  };
  const h = monitorEventLoopDelay({ resolution: 10 });
  h.enable();
  const lanes = Array.from({ length: 256 }, lane);
  await new Promise((r) => setTimeout(r, 1500));
  stop = true;
  await Promise.all(lanes);
  h.disable();
  await pool.close();
  // The histogram holds the intervals between 10 ms timer ticks: lateness is what exceeds 10 ms.
  const p99 = h.percentile(99) / 1e6 - 10;
  const max = h.max / 1e6 - 10;
  t.diagnostic(`${acked} durable appends in 1.5 s; timer lateness p50 ${(h.percentile(50) / 1e6 - 10).toFixed(1)} ms, p99 ${p99.toFixed(1)} ms, max ${max.toFixed(1)} ms`);
  assert.ok(acked > 1000, `the ingest ran (${acked} durable appends)`);
  assert.ok(p99 < 100, `timer lateness p99 ${p99.toFixed(1)} ms (max ${max.toFixed(1)} ms, ${acked} appends)`);
});
