import assert from 'node:assert/strict';
import { test } from 'node:test';
import { faultSweep } from './fault-sweep.js';

for (const [code, options] of [
  ['EIO', {}], ['ENOSPC', { partial: true }], ['EIO', { sticky: true }], ['ENOSPC', { sticky: true, partial: true }],
  ['EIO', { checkpoints: true }], ['ENOSPC', { checkpoints: true, partial: true }], ['EIO', { checkpoints: true, sticky: true }],
] as const) {
  test(`fault sweep: call n of a full scenario fails with ${code} ${JSON.stringify(options)}, for every n: typed errors only, and the WAL opens after a crash`, () => {
    const problems: string[] = [];
    const r = faultSweep(code, (m) => problems.push(m), options);
    assert.deepEqual(problems.slice(0, 5), []);
    assert.ok(r.points > 60, `only ${r.points} calls swept`);
    assert.ok(r.failures > 30, `only ${r.failures} failures`);
  });
}
