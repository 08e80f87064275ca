import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { KvState } from '../src/checkpoint/state.js';

// KvState's overlay: a staged checkpoint hands its changes over at once and they are folded
// into the map in slices. Whatever the interleaving of puts, deletes, hand-overs and fold
// steps, the state must read exactly like a plain map that took every change in order.

type Op =
  | { t: 'set'; k: number; v: number }
  | { t: 'del'; k: number }
  | { t: 'overlay'; changes: [number, number | null][] }
  | { t: 'fold'; n: number };

const key = (k: number): string => `k${k}`;
const val = (v: number): Uint8Array => Uint8Array.of(v & 0xff, v >> 8);

const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ t: fc.constant('set' as const), k: fc.nat(30), v: fc.nat(60000) }),
  fc.record({ t: fc.constant('del' as const), k: fc.nat(30) }),
  fc.record({ t: fc.constant('overlay' as const), changes: fc.array(fc.tuple(fc.nat(30), fc.option(fc.nat(60000), { nil: null })), { maxLength: 20 }) }),
  fc.record({ t: fc.constant('fold' as const), n: fc.integer({ min: 1, max: 8 }) }),
);

function check(kv: KvState, model: Map<string, Uint8Array>): void {
  assert.equal(kv.size, model.size, 'size');
  for (let k = 0; k <= 30; k++) {
    assert.deepEqual(kv.getByMapKey(key(k)), model.get(key(k)), `get ${key(k)}`);
    assert.equal(kv.has(key(k)), model.has(key(k)), `has ${key(k)}`);
  }
  const seen = new Map([...kv.mapEntries()]);
  assert.equal(seen.size, model.size, 'entries are distinct keys, as many as the state holds');
  assert.deepEqual(seen, model, 'entries');
}

test('KvState with an overlay reads like a plain map that took every change in order', () => {
  fc.assert(fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
    const kv = new KvState();
    const model = new Map<string, Uint8Array>();
    for (const o of ops) {
      if (o.t === 'set') {
        kv.setKey(key(o.k), val(o.v));
        model.set(key(o.k), val(o.v));
      } else if (o.t === 'del') {
        kv.deleteKey(key(o.k));
        model.delete(key(o.k));
      } else if (o.t === 'overlay') {
        const changes = new Map<string, Uint8Array | null>();
        for (const [k, v] of o.changes) changes.set(key(k), v === null ? null : val(v));
        for (const [k, v] of changes) if (v === null) model.delete(k); else model.set(k, v);
        kv.installOverlay(changes, model.size);
      } else {
        kv.foldSome(o.n);
      }
      check(kv, model);
    }
    kv.foldSome(Infinity);
    assert.equal(kv.over, null, 'a full fold leaves no overlay');
    assert.deepEqual(new Map(kv.map), model, 'the map alone holds the state once folded');
  }), { numRuns: 500 });
});

test('KvState: changes made while an overlay is pending are dirty, and an overlay with a wrong size trips the fold\'s assertion', () => {
  const kv = new KvState();
  kv.setKey('a', val(1));
  kv.clearDirty();
  kv.installOverlay(new Map([['b', val(2)]]), 2);
  kv.setKey('c', val(3));
  kv.deleteKey('a');
  assert.deepEqual([...kv.dirty].sort(), ['a', 'c'], 'the overlay itself is not dirty; later changes are');
  kv.foldSome(Infinity);
  assert.deepEqual([...kv.map.keys()].sort(), ['b', 'c']);
  const bad = new KvState();
  bad.installOverlay(new Map([['x', val(1)]]), 5);
  assert.throws(() => bad.foldSome(Infinity), /folded map holds the keys the overlay counted/);
});
