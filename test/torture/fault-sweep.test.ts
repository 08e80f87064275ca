import assert from 'node:assert/strict';
import { test } from 'node:test';
import { faultSweep } from './fault-sweep.js';

for (const code of ['EIO', 'ENOSPC'] as const) {
  test(`fault sweep: every call of a full scenario failing with ${code} in turn gives a typed error, and the WAL still opens after a crash`, () => {
    const problems: string[] = [];
    const r = faultSweep(code, (m) => problems.push(m));
    assert.deepEqual(problems.slice(0, 5), []);
    assert.ok(r.points > 60, `only ${r.points} calls swept`);
    assert.ok(r.failures > 30, `only ${r.failures} failures`);
  });
}
