import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { DELETED, hashBytes, ReplayTable } from '../src/recovery/replay-table.js';

function dump(t: ReplayTable): Map<string, string> {
  const out = new Map<string, string>();
  t.forEach((arena, s, e, ref, copy) => {
    const k = Buffer.from(arena.subarray(s, e)).toString('hex');
    assert.ok(!out.has(k), `key ${k} handed out once`);
    out.set(k, copy !== null ? `copy:${Buffer.from(copy).toString('hex')}` : ref === DELETED ? 'deleted' : `ref:${ref}`);
  });
  return out;
}

test('ReplayTable: the last change per key wins, across growth, for any keys (Map model)', () => {
  fc.assert(fc.property(
    fc.array(fc.record({
      key: fc.uint8Array({ maxLength: 40 }),
      kind: fc.constantFrom('ref', 'delete', 'copy'),
      n: fc.nat({ max: 2 ** 40 }),
    }), { maxLength: 3000 }),
    fc.nat({ max: 64 }),
    (ops, pad) => {
      const t = new ReplayTable();
      const model = new Map<string, string>();
      // The key sits inside a larger buffer, as it does in a read block.
      for (const op of ops) {
        const buf = new Uint8Array(pad + op.key.length + 3);
        buf.set(op.key, pad);
        const k = Buffer.from(op.key).toString('hex');
        if (op.kind === 'ref') { t.set(buf, pad, pad + op.key.length, op.n); model.set(k, `ref:${op.n}`); }
        else if (op.kind === 'delete') { t.set(buf, pad, pad + op.key.length, DELETED); model.set(k, 'deleted'); }
        else {
          const v = Buffer.from(String(op.n));
          t.set(buf, pad, pad + op.key.length, t.copyRef(v));
          model.set(k, `copy:${v.toString('hex')}`);
        }
      }
      assert.equal(t.size, model.size);
      assert.deepEqual(dump(t), model);
    },
  ), { numRuns: 60 });
});

test('ReplayTable: 200k distinct keys and a 1 MiB key', () => {
  const t = new ReplayTable();
  const k = Buffer.alloc(8);
  for (let i = 0; i < 200_000; i++) { k.writeUInt32LE(i, 0); k.writeUInt32LE(i * 7, 4); t.set(k, 0, 8, i); }
  for (let i = 0; i < 200_000; i += 2) { k.writeUInt32LE(i, 0); k.writeUInt32LE(i * 7, 4); t.set(k, 0, 8, DELETED); }
  const big = Buffer.alloc(1 << 20, 3);
  t.set(big, 0, big.length, 42);
  big[77] = 4;
  t.set(big, 0, big.length, 43);
  assert.equal(t.size, 200_002);
  let deleted = 0, refs = 0;
  t.forEach((_a, s, e, ref) => {
    if (ref === DELETED) deleted++;
    else if (e - s === 8) { refs++; }
    else assert.ok(ref === 42 || ref === 43);
  });
  assert.equal(deleted, 100_000);
  assert.equal(refs, 100_000);
});

test('hashBytes depends on every byte and on the length', () => {
  const a = Buffer.from('abcdefghijklmnopq');
  const seen = new Set<number>();
  for (let i = 0; i < a.length; i++) {
    const b = Buffer.from(a);
    b[i]! ^= 1;
    seen.add(hashBytes(b, 0, b.length));
  }
  seen.add(hashBytes(a, 0, a.length));
  seen.add(hashBytes(a, 0, a.length - 1));
  seen.add(hashBytes(Buffer.concat([a, Buffer.alloc(1)]), 0, a.length + 1));
  assert.equal(seen.size, a.length + 3);
});
