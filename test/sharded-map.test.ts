import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { ShardedMap, ShardedSet } from '../src/checkpoint/sharded-map.js';

// The store's state map is split over 256 Maps (one Map holds at most 2^24 keys, and
// rehashes all of them at once when it grows). It must behave like one Map, and spread
// the keys people use evenly, or one shard would hit both limits alone.

test('ShardedMap and ShardedSet behave like Map and Set under any sequence of operations', () => {
  const key = fc.oneof(fc.string({ maxLength: 6 }), fc.string({ minLength: 30, maxLength: 80 }));
  const op = fc.oneof(
    fc.record({ t: fc.constant('set' as const), k: key, v: fc.integer() }),
    fc.record({ t: fc.constant('del' as const), k: key }),
    fc.record({ t: fc.constant('clear' as const) }),
  );
  fc.assert(fc.property(fc.array(op, { maxLength: 80 }), (ops) => {
    const m = new ShardedMap<number>();
    const s = new ShardedSet();
    const model = new Map<string, number>();
    for (const o of ops) {
      if (o.t === 'set') { m.set(o.k, o.v); s.add(o.k); model.set(o.k, o.v); }
      else if (o.t === 'del') { assert.equal(m.delete(o.k), model.has(o.k)); assert.equal(s.delete(o.k), model.has(o.k)); model.delete(o.k); }
      else { m.clear(); s.clear(); model.clear(); }
      assert.equal(m.size, model.size);
      assert.equal(s.size, model.size);
    }
    for (const [k, v] of model) { assert.equal(m.get(k), v); assert.ok(m.has(k)); assert.ok(s.has(k)); }
    assert.deepEqual(new Map(m), model);
    assert.deepEqual(new Set(m.keys()), new Set(model.keys()));
    assert.deepEqual(new Set(s), new Set(model.keys()));
  }), { numRuns: 300 });
});

test('ShardedMap spreads common key shapes evenly over its shards', () => {
  const shapes: [string, (i: number) => string][] = [
    ['counters', (i) => String(i)],
    ['prefixed ids', (i) => `user:${i}`],
    ['id in the middle', (i) => `tenant:${i}:profile`],
    ['fixed-width', (i) => `k${String(i).padStart(12, '0')}`],
    ['long, id in the middle', (i) => `${'x'.repeat(40)}/${i}/${'y'.repeat(40)}`],
    ['very long, id near the end', (i) => `${'z'.repeat(300)}/${i}/end`],
    ['big-endian u32 bytes', (i) => Buffer.from([i >>> 24, (i >>> 16) & 255, (i >>> 8) & 255, i & 255]).toString('latin1')],
  ];
  const n = 64 * 256;
  for (const [name, make] of shapes) {
    const m = new ShardedMap<number>();
    for (let i = 0; i < n; i++) m.set(make(i), i);
    const sizes = Array.from((m as unknown as { shards: (Map<string, number> | undefined)[] }).shards, (s) => s?.size ?? 0);
    const max = Math.max(...sizes);
    const min = Math.min(...sizes);
    // 64 keys a shard on average; a shard with twice that would be a skew, not chance.
    assert.ok(max <= 128 && min >= 16, `${name}: shard sizes from ${min} to ${max} (mean 64)`);
  }
});
