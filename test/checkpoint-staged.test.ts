import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { CheckpointStore, PerCoreWalError } from '../src/index.js';
import { realFs, type WalFs } from '../src/io/fs.js';
import { SimDisk } from '../src/testing/index.js';
import type { StagedChanges } from '../src/checkpoint/staged-merge.js';
import type { KvState, StateView } from '../src/checkpoint/state.js';
import { tempDir } from './helpers/tmp.js';

// CheckpointStore.createCheckpointStaged: what the pool's checkpoint uses to write the file
// in slices and switch the store to the merged state in one step.

const bytes = (s: string): Buffer => Buffer.from(s);
const mk = (s: string): string => Buffer.from(s).toString('latin1');

function staged(n: number, tag: string): StagedChanges {
  const kv = new Map<string, Uint8Array | null>();
  for (let i = 0; i < n; i++) kv.set(mk(`s${i}`), bytes(`${tag}${i}`));
  kv.set(mk('gone'), null);
  return { kv, offsets: new Map([['src', 7n]]), watermark: 99n, entries: n + 1 };
}

function snapshot(of: CheckpointStore | StateView): Map<string, string> {
  const state = of instanceof CheckpointStore ? of.state() : of;
  return new Map([...state.entries()].map(([k, v]) => [Buffer.from(k).toString(), Buffer.from(v).toString()]));
}

for (const [name, base] of [['few changes to a large state', 40_000], ['changes outnumbering the state', 10]] as const) {
  test(`staged checkpoint, ${name}: readers see before or after, and the files load to what the store holds`, async () => {
    const dir = join(tempDir(), 'cp');
    const store = CheckpointStore.open({ checkpointDir: dir });
    for (let i = 0; i < base; i++) store.put(`b${i}`, bytes(`v${i}`));
    store.put('gone', bytes('x'));
    store.createCheckpoint(1n);
    for (let round = 2; round <= 3; round++) {
      const before = store.size;
      const sizes = new Set<number>();
      let pauses = 0;
      const meta = await store.createCheckpointStaged(BigInt(round), { epoch: BigInt(round) }, staged(3000, `r${round}-`), async () => {
        pauses++;
        sizes.add(store.size);
        assert.equal(store.get('s0') === undefined, round === 2, 'the staged changes are not visible yet');
        await new Promise((r) => setImmediate(r));
      });
      assert.ok(pauses > 0);
      assert.deepEqual([...sizes], [before], 'the store did not change while the checkpoint was written');
      assert.equal(store.get('gone'), undefined);
      assert.equal(Buffer.from(store.get('s5')!).toString(), `r${round}-5`);
      assert.equal(store.watermark(), 99n);
      assert.equal(store.sourceOffsets().get('src'), 7n);
      assert.equal(meta.keyCount, store.size);
      assert.equal(store.latestCheckpoint()!.id, BigInt(round));
      // The merge was taken as an overlay, folded into the map in the background: the same
      // state before, during and after the fold.
      const kv = store.state() as KvState;
      assert.notEqual(kv.over, null, 'taken as an overlay');
      const during = snapshot(store);
      while (kv.over !== null) await new Promise((r) => setImmediate(r));
      assert.deepEqual(snapshot(store), during, 'folding does not change the state');
      assert.equal(kv.map.size, store.size);
      const reopened = CheckpointStore.open({ checkpointDir: dir });
      assert.deepEqual(snapshot(reopened), snapshot(store), 'the checkpoint chain loads to the same state');
      assert.equal(reopened.watermark(), 99n);
    }
  });
}

test('staged checkpoint: a change to the store while it is written falls back to the synchronous path, and keeps that change', async () => {
  const dir = join(tempDir(), 'cp');
  const store = CheckpointStore.open({ checkpointDir: dir });
  for (let i = 0; i < 5000; i++) store.put(`b${i}`, bytes(`v${i}`));
  store.createCheckpoint(1n);
  let first = true;
  await store.createCheckpointStaged(2n, {}, staged(5000, 'z'), async () => {
    if (first) { first = false; store.put('user', bytes('meanwhile')); }
    await new Promise((r) => setImmediate(r));
  });
  assert.equal(first, false, 'the writer paused at least once');
  assert.equal(Buffer.from(store.get('user')!).toString(), 'meanwhile');
  assert.equal(Buffer.from(store.get('s1')!).toString(), 'z1');
  const reopened = CheckpointStore.open({ checkpointDir: dir });
  assert.deepEqual(snapshot(reopened), snapshot(store));
  assert.equal(reopened.latestCheckpoint()!.id, 2n);
});

/** Node's fs, with the checkpoint file's fsync held until `release`, and fsyncSync counted. */
function heldFsync(): { fs: WalFs; syncCalls: () => number; started: Promise<void>; release: (err?: Error) => void } {
  let syncCalls = 0;
  let onStart!: () => void;
  const started = new Promise<void>((r) => { onStart = r; });
  let release!: (err?: Error) => void;
  const held = new Promise<Error | undefined>((r) => { release = r; });
  const fs: WalFs = {
    ...realFs,
    fsyncSync: (fd) => { syncCalls++; realFs.fsyncSync(fd); },
    fsyncAsync: async (fd) => {
      onStart();
      const err = await held;
      if (err) throw err;
      await realFs.fsyncAsync!(fd);
    },
  };
  return { fs, syncCalls: () => syncCalls, started, release };
}

/** A store at checkpoint 1 whose staged checkpoint 2 is under way, its file's fsync held. */
async function stagedWithHeldFsync() {
  const dir = join(tempDir(), 'cp');
  const held = heldFsync();
  const store = CheckpointStore.open({ checkpointDir: dir, fs: held.fs });
  for (let i = 0; i < 100; i++) store.put(`b${i}`, bytes(`v${i}`));
  store.createCheckpoint(1n);
  const h = { ...held, syncsBeforeStaged: held.syncCalls() };
  const done = store.createCheckpointStaged(2n, {}, staged(100, 'y'), () => new Promise((r) => setImmediate(r)));
  await held.started;
  return { dir, h, store, done };
}

test('staged checkpoint: the file\'s fsync runs off the thread, which goes on meanwhile', async () => {
  const { dir, h, store, done } = await stagedWithHeldFsync();
  const syncsBefore = h.syncsBeforeStaged;
  // The fsync is held: timers run, and the store still shows the state before the checkpoint.
  await new Promise((r) => setTimeout(r, 5));
  assert.equal(store.latestCheckpoint()!.id, 1n);
  assert.equal(store.get('s1'), undefined);
  h.release();
  const meta = await done;
  assert.equal(meta.id, 2n);
  assert.equal(h.syncCalls(), syncsBefore, 'no fsyncSync on the calling thread');
  assert.equal(Buffer.from(store.get('s1')!).toString(), 'y1');
  assert.deepEqual(snapshot(CheckpointStore.open({ checkpointDir: dir })), snapshot(store));
});

test('staged checkpoint: a change to the store during the fsync drops that file and keeps the change', async () => {
  const { dir, h, store, done } = await stagedWithHeldFsync();
  store.put('user', bytes('during-fsync'));
  h.release();
  await done;
  assert.equal(Buffer.from(store.get('user')!).toString(), 'during-fsync');
  assert.equal(Buffer.from(store.get('s1')!).toString(), 'y1');
  const reopened = CheckpointStore.open({ checkpointDir: dir });
  assert.equal(reopened.latestCheckpoint()!.id, 2n);
  assert.deepEqual(snapshot(reopened), snapshot(store), 'checkpoint 2 holds the change made during the fsync');
});

test('staged checkpoint: a failed fsync is an IO error; the store and its files stay at the last checkpoint', async () => {
  const { dir, h, store, done } = await stagedWithHeldFsync();
  h.release(Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO', errno: -5, syscall: 'fsync' }));
  await assert.rejects(done, (e: unknown) => e instanceof PerCoreWalError && e.code === 'IO');
  assert.equal(store.latestCheckpoint()!.id, 1n);
  assert.equal(store.get('s1'), undefined);
  assert.deepEqual(readdirSync(dir).filter((n) => !n.startsWith('checkpoint-') || n.includes('.tmp')), [], 'no temporary file left');
  const reopened = CheckpointStore.open({ checkpointDir: dir });
  assert.equal(reopened.latestCheckpoint()!.id, 1n);
  assert.deepEqual(snapshot(reopened), snapshot(store));
});

test('staged checkpoint: changes and a checkpoint made while its overlay is still being folded are kept', async () => {
  const dir = join(tempDir(), 'cp');
  const store = CheckpointStore.open({ checkpointDir: dir });
  for (let i = 0; i < 20_000; i++) store.put(`s${i}`, bytes(`v${i}`));
  store.createCheckpoint(1n);
  await store.createCheckpointStaged(2n, {}, staged(20_000, 'w'), async () => {});
  const kv = store.state() as KvState;
  assert.notEqual(kv.over, null, 'the fold has not run yet');
  store.put('s3', bytes('after'));
  store.delete('s4');
  store.put('new', bytes('n'));
  const meta = store.createCheckpoint(3n);
  assert.equal(meta.isIncremental, true);
  assert.equal(meta.keyCount, store.size);
  const reopened = CheckpointStore.open({ checkpointDir: dir });
  assert.deepEqual(snapshot(reopened), snapshot(store), 'checkpoint 3 on top of 2 loads to the store\'s state');
  assert.equal(Buffer.from(store.get('s3')!).toString(), 'after');
  assert.equal(store.get('s4'), undefined);
  assert.equal(Buffer.from(store.get('s5')!).toString(), 'w5');
  while (kv.over !== null) await new Promise((r) => setImmediate(r));
  assert.deepEqual(snapshot(store), snapshot(reopened), 'and so does the folded map');
});

test('staged checkpoint: a power cut at any call, a crash of any shape, leaves checkpoint 1 or 2 whole, and the store loads to one of the two', async () => {
  const run = async (disk: SimDisk): Promise<CheckpointStore> => {
    const store = CheckpointStore.open({ checkpointDir: '/cp', fs: disk });
    for (let i = 0; i < 3000; i++) store.put(`b${i}`, bytes(`v${i}`));
    store.delete('b7');
    store.createCheckpoint(1n, { epoch: 1n });
    store.put('after-1', bytes('dirty'));
    await store.createCheckpointStaged(2n, { epoch: 2n }, staged(3000, 'z'), () => new Promise((r) => setImmediate(r)));
    return store;
  };
  // The states the two checkpoints hold, and the calls a whole run makes.
  const clean = new SimDisk();
  const cp2 = snapshot(await run(clean));
  const calls = clean.callCount();
  const cp1 = snapshot(CheckpointStore.open({ checkpointDir: '/cp', fs: clean }).loadCheckpoint(1n).state);
  assert.ok(calls > 10, `${calls} calls`);
  let saw2 = 0;
  for (let cut = 0; cut <= calls; cut++) {
    for (let shape = 0; shape < 3; shape++) {
      const disk = new SimDisk();
      disk.powerCut(cut, cut * 7 + shape);
      try {
        await run(disk);
      } catch (e) {
        if (disk.afterPowerCut === null) throw e;
      }
      const after = disk.afterPowerCut ?? disk.crash(cut * 7 + shape);
      const store = CheckpointStore.open({ checkpointDir: '/cp', fs: after });
      const id = store.latestCheckpoint()?.id ?? 0n;
      const got = snapshot(store);
      if (id === 2n) {
        saw2++;
        assert.deepEqual(got, cp2, `cut after ${cut} calls: checkpoint 2 loads to the merged state`);
      } else if (id === 1n) {
        assert.deepEqual(got, cp1, `cut after ${cut} calls: checkpoint 1 loads whole`);
      } else {
        assert.equal(got.size, 0, `cut after ${cut} calls: no checkpoint, no state`);
      }
    }
  }
  assert.ok(saw2 > 0, 'some cuts came after checkpoint 2 was durable');
});
