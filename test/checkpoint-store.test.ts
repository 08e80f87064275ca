import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { CheckpointStore, inspectCheckpointDir, PerCoreWalError } from '../src/index.js';
import { decodeCheckpointFile } from '../src/checkpoint/files.js';
import { CrashFs, SimulatedCrash } from './helpers/crash-fs.js';
import { b, tempDir } from './helpers/tmp.js';

type Model = Map<string, string>; // hex key -> hex value

function snapshot(store: CheckpointStore): Model {
  const m: Model = new Map();
  for (const [k, v] of store.state().entries()) m.set(Buffer.from(k).toString('hex'), Buffer.from(v).toString('hex'));
  return m;
}

function cpFiles(dir: string): string[] {
  return readdirSync(dir).filter((n) => n.endsWith('.cwc')).sort();
}

/** A small deterministic PRNG so failures reproduce. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

test('round trip: binary keys, empty key and value, offsets, watermark, positions survive a reopen', () => {
  const dir = tempDir();
  const s = CheckpointStore.open({ checkpointDir: dir });
  s.put(Buffer.from([0, 255, 128, 0]), Buffer.from([1, 2, 3]));
  s.put(new Uint8Array(0), new Uint8Array(0));
  s.put('ünïcode', b('v'));
  s.put('gone', b('x'));
  s.delete('gone');
  s.setSourceOffset('orders-0', 42n);
  s.setSourceOffset('ørders-1', -7);
  s.setWatermark(123456789012345n);
  const meta = s.createCheckpoint(1, { epoch: 5, walPositions: [10, 20], nextSequences: [3n, 4] });
  assert.equal(meta.id, 1n);
  assert.equal(meta.epoch, 5n);
  assert.equal(meta.isIncremental, false);
  assert.equal(meta.parentId, null);
  assert.equal(meta.keyCount, 3);
  assert.equal(meta.changeCount, 3);
  assert.deepEqual(meta.walPositions, [10, 20]);
  assert.deepEqual(meta.nextSequences, [3n, 4n]);

  const r = CheckpointStore.open({ checkpointDir: dir });
  assert.deepEqual(snapshot(r), snapshot(s));
  assert.deepEqual(r.get(Buffer.from([0, 255, 128, 0])), Buffer.from([1, 2, 3]));
  assert.deepEqual(r.get(''), Buffer.alloc(0));
  assert.deepEqual(r.get(Buffer.from('ünïcode', 'utf8')), b('v'));
  assert.equal(r.has('gone'), false);
  assert.deepEqual(r.sourceOffsets(), new Map([['orders-0', 42n], ['ørders-1', -7n]]));
  assert.equal(r.watermark(), 123456789012345n);
  const latest = r.latestCheckpoint()!;
  assert.equal(latest.id, 1n);
  assert.equal(latest.checksum, meta.checksum);
  assert.equal(latest.sizeBytes, meta.sizeBytes);
  assert.deepEqual(latest.nextSequences, [3n, 4n]);
  assert.equal(r.warnings().length, 0);
});

test('values larger than the write buffer and many keys round trip', () => {
  const dir = tempDir();
  const s = CheckpointStore.open({ checkpointDir: dir });
  const big = Buffer.alloc(3 << 20, 7);
  big[12345] = 9;
  s.put('big', big);
  s.put(Buffer.alloc(2 << 20, 1), b('big key'));
  for (let i = 0; i < 5000; i++) s.put(`k${i}`, b(`v${i}`));
  s.createCheckpoint(1);
  const r = CheckpointStore.open({ checkpointDir: dir });
  assert.deepEqual(r.get('big'), big);
  assert.deepEqual(r.get(Buffer.alloc(2 << 20, 1)), b('big key'));
  assert.equal(r.size, 5002);
  assert.deepEqual(snapshot(r), snapshot(s));
});

test('incremental chain: only changes are stored, a full snapshot every fullEvery, every checkpoint loads as it was', () => {
  const dir = tempDir();
  const s = CheckpointStore.open({ checkpointDir: dir, fullEvery: 3, maxRetained: Infinity });
  const snaps = new Map<bigint, Model>();
  for (let i = 0; i < 100; i++) s.put(`k${i}`, b(`v${i}`));
  const m1 = s.createCheckpoint(1, { epoch: 1 });
  snaps.set(1n, snapshot(s));
  s.put('k1', b('changed'));
  s.delete('k2');
  s.delete('never-existed');
  const m2 = s.createCheckpoint(2, { epoch: 2 });
  snaps.set(2n, snapshot(s));
  s.put('new', b('n'));
  const m3 = s.createCheckpoint(3, { epoch: 2 });
  snaps.set(3n, snapshot(s));
  s.put('k3', b('after full'));
  const m4 = s.createCheckpoint(4, { epoch: 3 });
  snaps.set(4n, snapshot(s));
  const m5 = s.createCheckpoint(5, { epoch: 3 });
  snaps.set(5n, snapshot(s));

  assert.deepEqual([m1, m2, m3, m4, m5].map((m) => m.isIncremental), [false, true, true, false, true]);
  assert.deepEqual([m1, m2, m3, m4, m5].map((m) => m.parentId), [null, 1n, 2n, null, 4n]);
  assert.equal(m1.changeCount, 100);
  assert.equal(m2.changeCount, 3, 'one put and two deletes');
  assert.equal(m3.changeCount, 1);
  assert.equal(m4.changeCount, 100, 'a full snapshot holds every key');
  assert.equal(m5.changeCount, 0);
  assert.ok(m2.sizeBytes < m1.sizeBytes / 5);
  assert.equal(m3.keyCount, 100);

  for (const [id, model] of snaps) {
    const loaded = s.loadCheckpoint(id);
    assert.deepEqual(snapshot({ state: () => loaded.state } as unknown as CheckpointStore), model, `checkpoint ${id}`);
  }
  const r = CheckpointStore.open({ checkpointDir: dir, fullEvery: 3 });
  assert.deepEqual(snapshot(r), snaps.get(5n));
  r.put('x', b('y'));
  const m6 = r.createCheckpoint(6, { epoch: 3 });
  assert.equal(m6.isIncremental, true, 'chain depth survives a reopen: 4 full, 5 and 6 incremental');
  assert.equal(m6.parentId, 5n);
  assert.equal(r.createCheckpoint(7, { epoch: 3 }).isIncremental, false);
});

test('randomized: every retained checkpoint resolves to the model state at its creation', () => {
  for (let seed = 1; seed <= 5; seed++) {
    const rand = rng(seed);
    const dir = tempDir();
    const fullEvery = 1 + Math.floor(rand() * 4);
    let s = CheckpointStore.open({ checkpointDir: dir, fullEvery, maxRetained: Infinity });
    const snaps = new Map<bigint, Model>();
    let id = 0n;
    for (let round = 0; round < 12; round++) {
      for (let i = 0, n = Math.floor(rand() * 30); i < n; i++) {
        const k = Buffer.from([Math.floor(rand() * 20), Math.floor(rand() * 3)]);
        if (rand() < 0.3) s.delete(k); else s.put(k, Buffer.from(String(rand())));
      }
      s.createCheckpoint(++id, { full: rand() < 0.1 });
      snaps.set(id, snapshot(s));
      if (rand() < 0.3) s = CheckpointStore.open({ checkpointDir: dir, fullEvery, maxRetained: Infinity });
    }
    for (const [cid, model] of snaps) {
      const st = s.loadCheckpoint(cid).state;
      const got: Model = new Map();
      for (const [k, v] of st.entries()) got.set(Buffer.from(k).toString('hex'), Buffer.from(v).toString('hex'));
      assert.deepEqual(got, model, `seed ${seed} checkpoint ${cid}`);
    }
  }
});

test('retention keeps the newest checkpoints and every parent they need', () => {
  const dir = tempDir();
  const s = CheckpointStore.open({ checkpointDir: dir, fullEvery: 4, maxRetained: 2 });
  for (let i = 1; i <= 3; i++) {
    s.put(`k${i}`, b('v'));
    s.createCheckpoint(i);
  }
  // 1 full, 2 and 3 incremental: keeping 2 and 3 keeps 1.
  assert.deepEqual(s.listCheckpoints().map((m) => m.id), [1n, 2n, 3n]);
  for (let i = 4; i <= 6; i++) {
    s.put(`k${i}`, b('v'));
    s.createCheckpoint(i);
  }
  // 5 is full: keeping 5 and 6 needs nothing older.
  assert.deepEqual(s.listCheckpoints().map((m) => m.id), [5n, 6n]);
  assert.equal(s.loadCheckpoint(6).state.size, 6);
  const before6 = s.loadCheckpoint(6).state;
  s.cleanupOldCheckpoints(1);
  const left = s.listCheckpoints();
  assert.deepEqual(left.map((m) => m.id), [6n], 'explicit cleanup keeps exactly one');
  assert.equal(left[0]!.isIncremental, false, 'checkpoint 6 was rewritten as a full snapshot, since its parent went');
  assert.equal(left[0]!.parentId, null);
  const after6 = s.loadCheckpoint(6).state;
  assert.deepEqual([...after6.entries()], [...before6.entries()]);
  // The store keeps building on the rewritten checkpoint.
  s.put('k7', b('v'));
  const m7 = s.createCheckpoint(7);
  assert.equal(m7.parentId, 6n);
  assert.equal(CheckpointStore.open({ checkpointDir: dir }).size, 7);
  assert.throws(() => s.cleanupOldCheckpoints(0), (e: unknown) => e instanceof PerCoreWalError && e.code === 'INVALID_ARGUMENT');
});

test('deleteCheckpoint: refuses while a child needs it, unknown ids fail typed, deleting the latest forces a full one', () => {
  const dir = tempDir();
  const s = CheckpointStore.open({ checkpointDir: dir, fullEvery: 10, maxRetained: Infinity });
  s.put('a', b('1'));
  s.createCheckpoint(1);
  s.put('b', b('2'));
  s.createCheckpoint(2);
  assert.throws(() => s.deleteCheckpoint(1), (e: unknown) => e instanceof PerCoreWalError && e.code === 'INVALID_ARGUMENT' && /needed by checkpoint\(s\) 2/.test(e.message));
  assert.throws(() => s.deleteCheckpoint(9), (e: unknown) => e instanceof PerCoreWalError && e.code === 'CHECKPOINT_NOT_FOUND');
  s.deleteCheckpoint(2);
  assert.deepEqual(s.listCheckpoints().map((m) => m.id), [1n]);
  const m3 = s.createCheckpoint(3);
  assert.equal(m3.isIncremental, false, 'no parent holds the changes since 1 any more');
  assert.equal(CheckpointStore.open({ checkpointDir: dir }).size, 2);
});

test('bad arguments fail before anything is written', () => {
  const dir = tempDir();
  const s = CheckpointStore.open({ checkpointDir: dir });
  s.createCheckpoint(5, { epoch: 3 });
  const code = (c: string) => (e: unknown) => e instanceof PerCoreWalError && e.code === c;
  assert.throws(() => s.createCheckpoint(5), code('INVALID_ARGUMENT'));
  assert.throws(() => s.createCheckpoint(6, { epoch: 2 }), code('EPOCH_MISMATCH'));
  assert.throws(() => s.createCheckpoint(-1), code('INVALID_ARGUMENT'));
  assert.throws(() => s.createCheckpoint(6, { walPositions: [-1] }), code('INVALID_POSITION'));
  assert.throws(() => s.createCheckpoint(6, { walPositions: [1], nextSequences: [] }), code('INVALID_ARGUMENT'));
  assert.throws(() => s.put(42 as unknown as string, b('v')), code('INVALID_ARGUMENT'));
  assert.throws(() => s.put('k', 'v' as unknown as Uint8Array), code('INVALID_ARGUMENT'));
  assert.throws(() => CheckpointStore.open({ checkpointDir: dir, fullEvery: 0 }), code('INVALID_ARGUMENT'));
  assert.deepEqual(cpFiles(dir), ['checkpoint-00000000000000000005.cwc']);
});

test('a corrupted, truncated or orphaned newest checkpoint is skipped for the previous one, with a warning', () => {
  const setup = (dir: string): { s: CheckpointStore; snaps: Map<bigint, Model> } => {
    const s = CheckpointStore.open({ checkpointDir: dir, fullEvery: 2, maxRetained: Infinity });
    s.put('a', b('1'));
    s.createCheckpoint(1);           // full
    s.put('b', b('2'));
    s.createCheckpoint(2);           // incremental on 1
    const snaps = new Map([[2n, snapshot(s)]]);
    s.put('c', b('3'));
    s.createCheckpoint(3);           // full
    snaps.set(3n, snapshot(s));
    s.put('d', b('4'));
    s.createCheckpoint(4);           // incremental on 3
    return { s, snaps };
  };
  const damage: [string, (dir: string) => void, RegExp, bigint][] = [
    ['bit flip in the newest body', (d) => flip(join(d, cpFiles(d)[3]!), -3), /body checksum mismatch/, 3n],
    ['bit flip in the newest meta', (d) => flip(join(d, cpFiles(d)[3]!), 45), /header checksum mismatch/, 3n],
    ['newest truncated', (d) => truncateSync(join(d, cpFiles(d)[3]!), 30), /shorter than the 40-byte header/, 3n],
    ['newest cut in its body', (d) => { const p = join(d, cpFiles(d)[3]!); truncateSync(p, readFileSync(p).length - 2); }, /header says/, 3n],
    ['parent of the newest corrupted', (d) => flip(join(d, cpFiles(d)[2]!), -1), /depends on checkpoint 3/, 2n],
    ['parent of the newest emptied', (d) => truncateSync(join(d, cpFiles(d)[2]!), 0), /depends on checkpoint 3/, 2n],
    ['parent of the newest deleted', (d) => unlinkSync(join(d, cpFiles(d)[2]!)), /needs checkpoint 3, which is missing/, 2n],
  ];
  for (const [what, hurt, reason, fallback] of damage) {
    const dir = tempDir();
    const { snaps } = setup(dir);
    hurt(dir);
    const warnings: string[] = [];
    const r = CheckpointStore.open({ checkpointDir: dir, onWarning: (m) => warnings.push(m) });
    assert.equal(r.latestCheckpoint()!.id, fallback, what);
    assert.deepEqual(snapshot(r), snaps.get(fallback), what);
    assert.ok(warnings.some((w) => reason.test(w)), `${what}: ${warnings.join(' | ')}`);
    assert.deepEqual(r.warnings(), warnings);
    // The next checkpoint builds on the one that loaded, not the broken one.
    r.put('e', b('5'));
    const m = r.createCheckpoint(5);
    assert.ok(m.parentId === fallback || !m.isIncremental, what);
    assert.equal(CheckpointStore.open({ checkpointDir: dir }).get('e')!.toString(), '5', what);
  }
  // Every checkpoint broken: an empty state, and one warning per file.
  const dir = tempDir();
  setup(dir);
  for (const f of cpFiles(dir)) writeFileSync(join(dir, f), 'garbage');
  const r = CheckpointStore.open({ checkpointDir: dir });
  assert.equal(r.latestCheckpoint(), null);
  assert.equal(r.size, 0);
  assert.equal(r.warnings().length, 4);
});

function flip(path: string, at: number): void {
  const buf = readFileSync(path);
  const i = at < 0 ? buf.length + at : at;
  buf[i]! ^= 0x10;
  writeFileSync(path, buf);
}

test('decoding any mutation of a checkpoint file yields metadata or CHECKPOINT_INVALID, never another exception', () => {
  const dir = tempDir();
  const s = CheckpointStore.open({ checkpointDir: dir, fullEvery: 2 });
  for (let i = 0; i < 20; i++) s.put(`key-${i}`, Buffer.alloc(i, i));
  s.setSourceOffset('src', 9n);
  s.setWatermark(77n);
  s.createCheckpoint(1);
  s.delete('key-3');
  s.createCheckpoint(2);
  const files = cpFiles(dir).map((f) => readFileSync(join(dir, f)));
  const rand = rng(99);
  let valid = 0;
  for (let i = 0; i < 3000; i++) {
    const orig = files[i % files.length]!;
    let buf = Buffer.from(orig);
    const kind = Math.floor(rand() * 4);
    if (kind === 0) buf[Math.floor(rand() * buf.length)] = Math.floor(rand() * 256);
    else if (kind === 1) buf = buf.subarray(0, Math.floor(rand() * buf.length));
    else if (kind === 2) buf = Buffer.concat([buf, Buffer.from([Math.floor(rand() * 256)])]);
    else buf = Buffer.from(Array.from({ length: Math.floor(rand() * 200) }, () => Math.floor(rand() * 256)));
    try {
      decodeCheckpointFile(buf);
      valid++;
      assert.ok(buf.equals(orig) || kind === 0, 'only an unchanged or same-byte mutation can validate');
    } catch (e) {
      assert.ok(e instanceof PerCoreWalError && e.code === 'CHECKPOINT_INVALID', `mutation ${i} (${kind}) threw ${String(e)}`);
      assert.match(e.message, /<buffer> at byte \d+/);
    }
  }
  assert.ok(valid < 3000);
});

test('crash at every step of createCheckpoint: reopening finds the previous checkpoint or the new one, never a broken one', () => {
  const prepare = (dir: string, fs?: CrashFs): CheckpointStore => {
    const s = CheckpointStore.open({ checkpointDir: dir, fullEvery: 2, maxRetained: 1, fs });
    return s;
  };
  // Count the steps of the operation under test.
  const counter = new CrashFs();
  const dir0 = tempDir();
  const base = prepare(dir0);
  for (let i = 0; i < 50; i++) base.put(`k${i}`, Buffer.alloc(3000, i));
  base.createCheckpoint(1);
  const before = snapshot(base);
  const counted = CheckpointStore.open({ checkpointDir: dir0, fullEvery: 2, maxRetained: 1, fs: counter });
  const startCalls = counter.calls;
  counted.put('new', b('value'));
  counted.delete('k7');
  counted.createCheckpoint(2);
  const after = snapshot(counted);
  const steps = counter.calls - startCalls;
  if (process.env['COREWAL_TEST_VERBOSE']) console.log(counter.log.slice(startCalls));
  assert.ok(steps >= 6, `create, writes, fsync, rename, fsync of the directory: ${counter.log.slice(startCalls).join('; ')}`);

  let sawOld = 0, sawNew = 0;
  for (let n = 1; n <= steps; n++) {
    const dir = tempDir();
    const s0 = prepare(dir);
    for (let i = 0; i < 50; i++) s0.put(`k${i}`, Buffer.alloc(3000, i));
    s0.createCheckpoint(1);
    const fs = new CrashFs();
    const s = CheckpointStore.open({ checkpointDir: dir, fullEvery: 2, maxRetained: 1, fs });
    fs.crashAt = fs.calls + n;
    s.put('new', b('value'));
    s.delete('k7');
    assert.throws(() => s.createCheckpoint(2), (e: unknown) => e instanceof SimulatedCrash || (e instanceof PerCoreWalError && e.cause instanceof SimulatedCrash), `step ${n}`);
    fs.closeAll();
    const warnings: string[] = [];
    const r = CheckpointStore.open({ checkpointDir: dir, onWarning: (w) => warnings.push(w) });
    const got = snapshot(r);
    const id = r.latestCheckpoint()!.id;
    if (id === 1n) { assert.deepEqual(got, before, `step ${n}`); sawOld++; } else { assert.equal(id, 2n); assert.deepEqual(got, after, `step ${n}`); sawNew++; }
    assert.ok(!readdirSync(dir).some((f) => f.endsWith('.tmp')), `step ${n}: the leftover temporary file is removed`);
    // And the store works after the restart.
    r.put('again', b('1'));
    r.createCheckpoint(3);
    assert.equal(CheckpointStore.open({ checkpointDir: dir }).get('again')!.toString(), '1');
  }
  assert.ok(sawOld > 0 && sawNew > 0, `crashes landed both before and after the rename (${sawOld} old, ${sawNew} new)`);
  assert.ok(existsSync(dir0));
});

test('inspectCheckpointDir reports every file with its validity, without touching the directory', () => {
  const dir = tempDir();
  const s = CheckpointStore.open({ checkpointDir: dir, fullEvery: 3, maxRetained: Infinity });
  for (let i = 1; i <= 3; i++) { s.put(`k${i}`, b('v')); s.createCheckpoint(i); }
  flip(join(dir, cpFiles(dir)[1]!), -1);
  writeFileSync(join(dir, 'checkpoint-00000000000000000009.cwc.tmp'), 'half');
  const report = inspectCheckpointDir(dir);
  assert.deepEqual(report.map((r) => [r.id, r.valid]), [[1n, true], [2n, false], [3n, false]]);
  assert.match(report[1]!.error!, /body checksum mismatch/);
  assert.match(report[2]!.error!, /depends on checkpoint 2/);
  assert.equal(report[2]!.metadata!.parentId, 2n, 'the header of 3 is fine; its chain is not');
  assert.ok(readdirSync(dir).some((f) => f.endsWith('.tmp')), 'read-only: the temporary file is still there');
  assert.deepEqual(inspectCheckpointDir(join(dir, 'missing')), []);
});

test('a crash at every step of cleanupOldCheckpoints (with a rewrite) leaves every kept checkpoint loadable', () => {
  const build = (dir: string): Model => {
    const s = CheckpointStore.open({ checkpointDir: dir, fullEvery: 10, maxRetained: Infinity });
    for (let i = 1; i <= 4; i++) { s.put(`k${i}`, b(`v${i}`)); s.delete(`k${i - 1}`); s.createCheckpoint(i); }
    return snapshot(s);
  };
  const counter = new CrashFs();
  const d0 = tempDir();
  const want = build(d0);
  const c0 = CheckpointStore.open({ checkpointDir: d0, fs: counter });
  const before = counter.calls;
  c0.cleanupOldCheckpoints(2);
  const steps = counter.calls - before;
  assert.ok(steps >= 8, `rewrite of 3 as full, unlink 1 and 2, fsync: ${counter.log.slice(before).join('; ')}`);
  assert.deepEqual(c0.listCheckpoints().map((m) => [m.id, m.isIncremental]), [[3n, false], [4n, true]]);
  for (let n = 1; n <= steps; n++) {
    const dir = tempDir();
    build(dir);
    const fs = new CrashFs();
    const s = CheckpointStore.open({ checkpointDir: dir, fs });
    fs.crashAt = fs.calls + n;
    assert.throws(() => s.cleanupOldCheckpoints(2), (e: unknown) => e instanceof SimulatedCrash || (e instanceof PerCoreWalError && e.cause instanceof SimulatedCrash));
    fs.closeAll();
    const r = CheckpointStore.open({ checkpointDir: dir });
    assert.equal(r.latestCheckpoint()!.id, 4n, `step ${n}`);
    assert.deepEqual(snapshot(r), want, `step ${n}`);
    for (const c of inspectCheckpointDir(dir)) if (c.id >= 3n) assert.ok(c.valid, `step ${n}: checkpoint ${c.id}: ${c.error}`);
  }
});
