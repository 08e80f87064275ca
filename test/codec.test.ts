import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { PerCoreWalEntry, PerCoreWalError, type WalOperation } from '../src/index.js';
import { decodePayloadBuffer, encodePayloadToBuffer } from '../src/entry/codec.js';

const U64_MAX = (1n << 64n) - 1n;
const I64_MIN = -(1n << 63n);
const I64_MAX = (1n << 63n) - 1n;
const u64 = fc.oneof(fc.constantFrom(0n, 1n, U64_MAX, U64_MAX - 1n, 1n << 32n, (1n << 32n) - 1n, 1n << 53n), fc.bigInt({ min: 0n, max: U64_MAX }));
const i64 = fc.oneof(fc.constantFrom(I64_MIN, I64_MAX, 0n, -1n), fc.bigInt({ min: I64_MIN, max: I64_MAX }));
const bytes = (max: number) => fc.uint8Array({ minLength: 0, maxLength: max });
// Mostly small, sometimes up to 1 MiB: a big value is a single fill to keep the run fast.
const value = fc.oneof(
  { arbitrary: bytes(300), weight: 8 },
  { arbitrary: fc.tuple(fc.integer({ min: 0, max: 1 << 20 }), fc.integer({ min: 0, max: 255 })).map(([n, x]) => new Uint8Array(n).fill(x)), weight: 1 },
);
const operation: fc.Arbitrary<WalOperation> = fc.oneof(
  fc.record({ type: fc.constant('put' as const), key: value, value }),
  fc.record({ type: fc.constant('delete' as const), key: value }),
  fc.record({ type: fc.constant('checkpoint' as const), id: u64 }),
  fc.record({
    type: fc.constant('commit' as const),
    offsets: fc.uniqueArray(fc.tuple(fc.string({ unit: 'grapheme', maxLength: 30 }), i64), { selector: (t) => t[0], maxLength: 20 }).map((a) => new Map(a)),
    watermark: fc.option(i64, { nil: null }),
  }),
  fc.record({ type: fc.constant('epochBarrier' as const), epoch: u64 }),
);

function build(core: number, epoch: bigint, seq: bigint, ts: bigint, op: WalOperation): PerCoreWalEntry {
  switch (op.type) {
    case 'put': return PerCoreWalEntry.put(core, epoch, seq, op.key, op.value, ts);
    case 'delete': return PerCoreWalEntry.delete(core, epoch, seq, op.key, ts);
    case 'checkpoint': return PerCoreWalEntry.checkpoint(core, epoch, seq, op.id, ts);
    case 'commit': return PerCoreWalEntry.commit(core, epoch, seq, op.offsets, op.watermark, ts);
    case 'epochBarrier': return PerCoreWalEntry.epochBarrier(core, epoch, seq, ts);
  }
}

function plainOp(op: WalOperation): unknown {
  if (op.type === 'put') return { ...op, key: Buffer.from(op.key).toString('hex'), value: Buffer.from(op.value).toString('hex') };
  if (op.type === 'delete') return { ...op, key: Buffer.from(op.key).toString('hex') };
  if (op.type === 'commit') return { ...op, offsets: [...op.offsets] };
  return op;
}

test('every operation type round-trips through the codec, with u64/i64 extremes and values up to 1 MiB', () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 0xffff }), u64, u64, u64, operation, fc.nat({ max: Number.MAX_SAFE_INTEGER }), (core, epoch, seq, ts, op, boundary) => {
      const e = build(core, epoch, seq, ts, op);
      const bytes = encodePayloadToBuffer(e, boundary);
      const d = decodePayloadBuffer(bytes);
      assert.equal(d.coreId, core);
      assert.equal(d.epoch, epoch);
      assert.equal(d.sequence, seq);
      assert.equal(d.timestampNs, ts);
      assert.equal(d.syncedBoundary, boundary);
      assert.deepEqual(plainOp(d.operation), plainOp(e.operation));
      // Re-encoding the decoded entry gives the same bytes.
      assert.ok(encodePayloadToBuffer(d).equals(bytes));
    }),
    { numRuns: 300 },
  );
});

test('decoding any byte string yields an entry or a DECODE error, never another exception', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 200 }), (input) => {
      try {
        decodePayloadBuffer(input);
      } catch (e) {
        assert.ok(e instanceof PerCoreWalError && e.code === 'DECODE', String(e));
      }
    }),
    { numRuns: 5000 },
  );
});

test('compare orders by (epoch, timestampNs, coreId, sequence)', () => {
  const k = new Uint8Array([1]);
  const a = PerCoreWalEntry.put(1, 1, 9, k, k, 100);
  const b = PerCoreWalEntry.put(0, 1, 0, k, k, 200);
  const c = PerCoreWalEntry.put(0, 2, 0, k, k, 50);
  const d = PerCoreWalEntry.put(2, 1, 3, k, k, 100);
  const sorted = [c, d, b, a].sort(PerCoreWalEntry.compare);
  assert.deepEqual(sorted, [a, d, b, c]);
  assert.equal(PerCoreWalEntry.compare(a, a), 0);
  const big = PerCoreWalEntry.put(0, (1n << 40n) + 1n, 0, k, k, 0);
  const small = PerCoreWalEntry.put(0, 1n << 40n, 0, k, k, U64_MAX);
  assert.ok(PerCoreWalEntry.compare(small, big) < 0);
});

test('factories reject bad arguments with typed errors', () => {
  const k = new Uint8Array([1]);
  const codes = (f: () => unknown) => { try { f(); return 'none'; } catch (e) { return (e as PerCoreWalError).code; } };
  assert.equal(codes(() => PerCoreWalEntry.put(0, -1, 0, k, k, 0)), 'INVALID_ARGUMENT');
  assert.equal(codes(() => PerCoreWalEntry.put(0, U64_MAX + 1n, 0, k, k, 0)), 'INVALID_ARGUMENT');
  assert.equal(codes(() => PerCoreWalEntry.put(0, 1.5, 0, k, k, 0)), 'INVALID_ARGUMENT');
  assert.equal(codes(() => PerCoreWalEntry.put(0, 0, 0, 'k' as unknown as Uint8Array, k, 0)), 'INVALID_ARGUMENT');
  assert.equal(codes(() => PerCoreWalEntry.put(70000, 0, 0, k, k, 0)), 'INVALID_CORE_ID');
  assert.equal(codes(() => PerCoreWalEntry.commit(0, 0, 0, { a: 1n << 63n }, null, 0)), 'INVALID_ARGUMENT');
  assert.equal(codes(() => PerCoreWalEntry.put(0, Number.MAX_SAFE_INTEGER, 0, k, k, 0)), 'none');
  const now = PerCoreWalEntry.nowNs();
  assert.ok(now > 1_600_000_000_000_000_000n && now < 4_000_000_000_000_000_000n);
  const e = PerCoreWalEntry.put(0, 0, 0, k, k, 0);
  assert.ok(e.isPut() && e.isStateOperation() && !e.isDelete() && !e.isCheckpoint());
  assert.equal(e.key(), k);
  assert.equal(PerCoreWalEntry.checkpoint(0, 0, 0, 5, 0).key(), undefined);
});
