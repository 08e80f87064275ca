import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Worker } from 'node:worker_threads';
import {
  CoreWalPool, CoreWalProducer, PerCoreWalConfig, PerCoreWalEntry, PerCoreWalError, PerCoreWalManager,
} from '../src/index.js';
import { readCore } from './helpers/read-core.js';
import { tempDir } from './helpers/tmp.js';

interface Ack { key: string; core: number; ticket: number }

const isCode = (code: string) => (e: unknown) => e instanceof PerCoreWalError && e.code === code;

/** Every acknowledged put is in its core's segment, and per core in ticket order. */
function checkAcked(pool: CoreWalPool, acked: Ack[], entries: PerCoreWalEntry[][]): void {
  for (let c = 0; c < entries.length; c++) {
    const pos = new Map<string, number>();
    entries[c]!.forEach((e, i) => { if (e.isPut()) pos.set(Buffer.from(e.key()!).toString(), i); });
    const mine = acked.filter((a) => a.core === c).sort((a, b) => a.ticket - b.ticket);
    let prev = -1;
    for (const a of mine) {
      const at = pos.get(a.key);
      assert.ok(at !== undefined, `acknowledged ${a.key} (core ${c}, ticket ${a.ticket}) is missing from ${pool.segmentPath(c)}`);
      assert.ok(at > prev, `core ${c}: ${a.key} (ticket ${a.ticket}) is out of ticket order`);
      prev = at;
    }
    // Sequences strictly increase within a core.
    for (let i = 1; i < entries[c]!.length; i++) assert.ok(entries[c]![i]!.sequence > entries[c]![i - 1]!.sequence);
  }
}

async function produce(pool: CoreWalPool | CoreWalProducer, prefix: string, count: number, inFlight: number): Promise<Ack[]> {
  const acked: Ack[] = [];
  let next = 0;
  const lane = async () => {
    while (next < count) {
      const key = `${prefix}${next++}`;
      const ticket = await pool.put(key, `value of ${key}`);
      acked.push({ key, core: pool.coreOf(key), ticket });
    }
  };
  await Promise.all(Array.from({ length: inFlight }, lane));
  return acked;
}

function producerThread(pool: CoreWalPool, prefix: string, count: number, inFlight: number): Promise<Ack[]> {
  const w = new Worker(new URL('./helpers/pool-producer.js', import.meta.url), {
    workerData: { handle: pool.producerHandle(), prefix, count, inFlight },
  });
  return new Promise((resolve, reject) => {
    w.once('message', (m: { acked: Ack[] }) => resolve(m.acked));
    w.once('error', reject);
    w.once('exit', (code) => { if (code !== 0) reject(new Error(`producer thread exited with ${code}`)); });
  });
}

test('N workers x M records from several producers (one on another thread): every acknowledged record, in each core\'s order', async () => {
  const dir = tempDir();
  const pool = await CoreWalPool.start({ dir, workers: 3, preallocate: 0 });
  assert.equal(pool.numCores(), 3);
  const [a, b, t] = await Promise.all([
    produce(pool, 'a', 3000, 64),
    produce(pool, 'b', 3000, 8),
    producerThread(pool, 't', 3000, 32),
  ]);
  const acked = [...a, ...b, ...t];
  assert.equal(acked.length, 9000);
  // Tickets are unique per core.
  for (let c = 0; c < 3; c++) {
    const ts = acked.filter((x) => x.core === c).map((x) => x.ticket);
    assert.equal(new Set(ts).size, ts.length);
    assert.ok(ts.length > 1000, `keys spread over cores (core ${c} got ${ts.length})`);
  }
  const synced = pool.syncedPositions();
  await pool.close();
  const entries = [0, 1, 2].map((c) => readCore(pool.segmentPath(c), c));
  checkAcked(pool, acked, entries);
  for (let c = 0; c < 3; c++) assert.equal(entries[c]!.length, acked.filter((x) => x.core === c).length);
  assert.ok(synced.every((s) => s > 0));
  // The same directory opens as a PerCoreWalManager WAL: same files, same format.
  const m = PerCoreWalManager.open(new PerCoreWalConfig(dir, 3));
  const merged = m.mergeSegments();
  m.close();
  assert.equal(merged.length, 9000);
  for (let i = 1; i < merged.length; i++) assert.ok(PerCoreWalEntry.compare(merged[i - 1]!, merged[i]!) < 0);
});

test('puts, deletes and commits land with the payloads given; explicit core routing', async () => {
  const dir = tempDir();
  const pool = await CoreWalPool.start({ dir, workers: 2, preallocate: 0 });
  const t1 = await pool.put(Buffer.from('k1'), Buffer.from('v1'), { core: 1 });
  const t2 = await pool.delete('k1', { core: 1 });
  const t3 = await pool.commit({ 'orders/0': 42n, 'orders/1': 7 }, 1234n, { core: 1 });
  const t4 = await pool.commit(new Map([['x', -5n]]));
  assert.deepEqual([t1, t2, t3, t4], [1, 2, 3, 1]);
  await pool.close();
  const e1 = readCore(pool.segmentPath(1), 1);
  assert.deepEqual(e1.map((e) => e.operation.type), ['put', 'delete', 'commit']);
  assert.equal(Buffer.from(e1[0]!.value()!).toString(), 'v1');
  assert.equal(Buffer.from(e1[1]!.key()!).toString(), 'k1');
  assert.deepEqual(e1[2]!.operation, { type: 'commit', offsets: new Map([['orders/0', 42n], ['orders/1', 7n]]), watermark: 1234n });
  const e0 = readCore(pool.segmentPath(0), 0);
  assert.deepEqual(e0.map((e) => e.operation), [{ type: 'commit', offsets: new Map([['x', -5n]]), watermark: null }]);
});

test('bad arguments reject before anything is queued', async () => {
  const pool = await CoreWalPool.start({ dir: tempDir(), workers: 2, preallocate: 0, maxRecordSize: 200, ringBytes: 4096 });
  await assert.rejects(pool.put('k', 'v', { core: 2 }), isCode('INVALID_CORE_ID'));
  await assert.rejects(pool.put('k', 'v', { core: 0.5 }), isCode('INVALID_CORE_ID'));
  await assert.rejects(pool.put(42 as unknown as string, 'v'), isCode('INVALID_ARGUMENT'));
  await assert.rejects(pool.put('k', Buffer.alloc(300)), isCode('RECORD_TOO_LARGE'));
  await assert.rejects(pool.commit({ a: -1n << 70n }), isCode('INVALID_ARGUMENT'));
  assert.equal(await pool.put('k', 'v', { core: 0 }), 1, 'nothing was queued before');
  await pool.close();
  await assert.rejects(pool.put('k', 'v'), isCode('CLOSED'));
  assert.throws(() => CoreWalProducer.fromHandle({} as never), isCode('INVALID_ARGUMENT'));
  await assert.rejects(CoreWalPool.start({ dir: '', workers: 1 }), isCode('INVALID_ARGUMENT'));
  await assert.rejects(CoreWalPool.start({ dir: tempDir(), workers: 1, ringBytes: 5000 }), isCode('INVALID_ARGUMENT'));
});

test('a record bigger than half the ring is refused with RECORD_TOO_LARGE naming ringBytes', async () => {
  const pool = await CoreWalPool.start({ dir: tempDir(), workers: 1, preallocate: 0, ringBytes: 4096 });
  await assert.rejects(pool.put('k', Buffer.alloc(2100)), (e: unknown) => isCode('RECORD_TOO_LARGE')(e) && /ringBytes/.test((e as Error).message));
  assert.equal(await pool.put('k', Buffer.alloc(1900)), 1);
  await pool.close();
});

test('backpressure: a full ring makes appends wait (in call order) or reject with BACKPRESSURE', async () => {
  const dir = tempDir();
  // 4 KiB ring, ~1 KiB records: the ring holds three; the worker syncs between batches.
  const pool = await CoreWalPool.start({ dir, workers: 1, preallocate: 0, ringBytes: 4096 });
  const value = Buffer.alloc(1000, 7);
  const waits = Array.from({ length: 300 }, (_, i) => pool.put(`w${i}`, value));
  const rejected = Array.from({ length: 300 }, (_, i) => pool.put(`r${i}`, value, { wait: false }).then(
    (t) => ({ ok: true as const, t }), (e: unknown) => ({ ok: false as const, e })));
  const tickets = await Promise.all(waits);
  // Waiting appends keep the order of the calls.
  assert.deepEqual(tickets, Array.from({ length: 300 }, (_, i) => i + 1));
  const r = await Promise.all(rejected);
  const refused = r.filter((x) => !x.ok);
  assert.ok(refused.length > 0, 'some no-wait appends met a full ring');
  for (const x of refused) assert.ok(!x.ok && isCode('BACKPRESSURE')(x.e));
  const accepted = r.filter((x) => x.ok).length;
  await pool.close();
  const entries = readCore(pool.segmentPath(0), 0);
  assert.equal(entries.length, 300 + accepted);
  assert.deepEqual(entries.slice(0, 300).map((e) => Buffer.from(e.key()!).toString()), Array.from({ length: 300 }, (_, i) => `w${i}`));
  // Pool-wide 'reject' mode.
  const p2 = await CoreWalPool.start({ dir, workers: 1, preallocate: 0, ringBytes: 4096, backpressure: 'reject' });
  const all = await Promise.allSettled(Array.from({ length: 300 }, (_, i) => p2.put(`x${i}`, value)));
  assert.ok(all.some((x) => x.status === 'rejected' && isCode('BACKPRESSURE')(x.reason)));
  assert.ok(all.some((x) => x.status === 'fulfilled'));
  await p2.close();
});

test('clean shutdown, then a restart continues sequences and the epoch', async () => {
  const dir = tempDir();
  const p1 = await CoreWalPool.start({ dir, workers: 2, preallocate: 0 });
  await produce(p1, 'a', 200, 16);
  assert.equal(p1.advanceEpoch(), 1n);
  assert.equal(p1.advanceEpoch(), 2n);
  await produce(p1, 'b', 200, 16);
  await p1.close();
  await p1.close(); // idempotent
  const before = [0, 1].map((c) => readCore(p1.segmentPath(c), c));
  const p2 = await CoreWalPool.start({ dir, workers: 2, preallocate: 0 });
  assert.equal(p2.epoch(), 2n);
  for (let c = 0; c < 2; c++) {
    const r = p2.openReport()[c]!;
    assert.equal(r.entries, before[c]!.length);
    assert.equal(r.sequence, before[c]!.at(-1)!.sequence + 1n);
  }
  await produce(p2, 'c', 200, 16);
  await p2.close();
  for (let c = 0; c < 2; c++) {
    const all = readCore(p2.segmentPath(c), c);
    assert.ok(all.length > before[c]!.length);
    for (let i = 1; i < all.length; i++) {
      assert.equal(all[i]!.sequence, all[i - 1]!.sequence + 1n);
      assert.ok(all[i]!.timestampNs >= all[i - 1]!.timestampNs);
      assert.ok(all[i]!.epoch >= all[i - 1]!.epoch);
    }
    assert.equal(all.at(-1)!.epoch, 2n);
  }
  // Fewer workers than the WAL has segments would hide a segment: refused.
  await assert.rejects(CoreWalPool.start({ dir, workers: 1 }), isCode('INVALID_ARGUMENT'));
});

test('the epoch is shared memory: workers stamp batches with it without messages', async () => {
  const pool = await CoreWalPool.start({ dir: tempDir(), workers: 2, preallocate: 0 });
  await pool.put('a', '1', { core: 0 });
  pool.epochRef().advance();
  pool.epochRef().advance();
  await pool.put('b', '2', { core: 0 });
  await pool.put('c', '3', { core: 1 });
  await pool.close();
  assert.deepEqual(readCore(pool.segmentPath(0), 0).map((e) => e.epoch), [0n, 2n]);
  assert.deepEqual(readCore(pool.segmentPath(1), 1).map((e) => e.epoch), [2n]);
});

test('a directory written by PerCoreWalManager continues in the pool, and back', async () => {
  const dir = tempDir();
  const cfg = new PerCoreWalConfig(dir, 2);
  const m = PerCoreWalManager.create(cfg);
  m.writer(0).appendPut(Buffer.from('m0'), Buffer.from('x'));
  m.writer(1).appendPut(Buffer.from('m1'), Buffer.from('y'));
  m.advanceEpoch();
  m.writer(1).appendPut(Buffer.from('m2'), Buffer.from('z'));
  m.syncAll();
  m.close();
  const pool = await CoreWalPool.start({ dir, workers: 2 });
  assert.equal(pool.epoch(), 1n);
  await pool.put('p0', 'v', { core: 0 });
  await pool.put('p1', 'v', { core: 1 });
  await pool.close();
  const again = PerCoreWalManager.open(cfg);
  const merged = again.mergeSegments();
  const keysOf = (c: number) => merged.filter((e) => e.coreId === c).map((e) => Buffer.from(e.key()!).toString());
  assert.deepEqual(keysOf(0), ['m0', 'p0']);
  assert.deepEqual(keysOf(1), ['m1', 'm2', 'p1']);
  // The pool's entries order after everything the manager wrote (epoch 1, later timestamps).
  assert.deepEqual(merged.slice(3).map((e) => Buffer.from(e.key()!).toString()).sort(), ['p0', 'p1']);
  assert.deepEqual(again.positions().map((_, c) => again.writer(c).sequence()), [2n, 3n]);
  again.close();
});

test('start cuts a torn tail, and refuses a damaged segment with CORRUPTED (stopping every worker)', async () => {
  const { appendFileSync, readFileSync, writeFileSync } = await import('node:fs');
  const dir = tempDir();
  const p1 = await CoreWalPool.start({ dir, workers: 2, preallocate: 0 });
  for (let i = 0; i < 3; i++) await p1.put(`k${i}`, 'v', { core: 1 });
  await p1.close();
  const seg = p1.segmentPath(1);
  const good = readFileSync(seg);
  appendFileSync(seg, good.subarray(0, 20)); // half a record: what a crash mid-write leaves
  const p2 = await CoreWalPool.start({ dir, workers: 2, preallocate: 0 });
  const r = p2.openReport()[1]!;
  assert.equal(r.tail, 'torn');
  assert.equal(r.validEnd, good.length);
  assert.equal(r.fileLen, good.length + 20);
  assert.equal(r.sequence, 3n);
  await p2.put('k3', 'v', { core: 1 });
  await p2.close();
  assert.deepEqual(readCore(seg, 1).map((e) => e.sequence), [0n, 1n, 2n, 3n]);
  // Damage: a flipped byte in the second record, followed by records appended after it was synced.
  const bytes = readFileSync(seg);
  const second = bytes.readUInt32LE(0) + 8;
  bytes[second + 20] ^= 0xff;
  writeFileSync(seg, bytes);
  await assert.rejects(CoreWalPool.start({ dir, workers: 2, preallocate: 0 }),
    (e: unknown) => e instanceof PerCoreWalError && e.code === 'CORRUPTED' && /core 1/.test(e.message));
  assert.deepEqual(readFileSync(seg), bytes, 'nothing was cut');
});
