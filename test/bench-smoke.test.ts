import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadCases, runBench } from '../bench/run.js';

// Keeps the benchmark suite honest: every case runs and reports numbers. Nothing here is
// about speed; figures come from `npm run bench`.
test('every benchmark case runs in smoke mode and reports finite figures', { timeout: 240_000 }, async () => {
  const cases = await loadCases();
  assert.ok(cases.length >= 9, `expected the bench cases to load, got ${cases.length}`);
  const results = await runBench({ smoke: true, out: null, log: () => {} });
  assert.equal(results.length, cases.length);
  for (const r of results) {
    assert.ok(r.metrics.length > 0, `${r.group} / ${r.name} reported nothing`);
    for (const m of r.metrics) {
      assert.ok(Number.isFinite(m.median), `${r.group} / ${r.name}: ${m.name} = ${m.median}`);
      assert.ok(m.unit.length > 0);
    }
  }
});
