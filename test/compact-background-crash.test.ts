import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CoreWalWriter } from '../src/index.js';
import { barrierCrcAt, BARRIER_RECORD_SIZE } from '../src/checkpoint/resume.js';
import type { WalFs } from '../src/io/fs.js';
import { SimDisk, SimPowerLoss } from '../src/testing/index.js';
import { putKeysFrom } from './helpers/segment.js';
import { b } from './helpers/tmp.js';

// A power cut at every file call of a two-phase compaction (beginCompaction … finish) with
// appends and syncs between its steps, as a worker makes them. Whatever survives, recovery
// (replaying from the barrier while it still stands, else from 0) must find every record
// after the barrier that was synced before the cut, once each, in order: a prefix of what
// was appended, at least as long as what was acknowledged.

const PATH = '/wal/wal-0.log';

const keysFrom = (fsys: WalFs, from: number): string[] => putKeysFrom(PATH, from, fsys);

/** A SimDisk whose `fdatasyncAsync` runs a turn later, so that appends and syncs can come in between (as on libuv's pool). */
function deferredSyncDisk(seed: number): SimDisk {
  const disk = new SimDisk({ seed });
  (disk as WalFs).fdatasyncAsync = (fd) => new Promise<void>((resolve, reject) => setImmediate(() => {
    try { disk.fdatasyncSync(fd); resolve(); } catch (e) { reject(e); }
  }));
  return disk;
}

interface Run { appended: string[]; acked: number; finished: boolean }

/** The workload: kept records, then a compaction with appends between all its steps. */
async function workload(w: CoreWalWriter, from: number, run: Run): Promise<void> {
  const append = (n: number): void => {
    for (let i = 0; i < n; i++) {
      const key = `c${run.appended.length}`;
      w.appendPut(b(key), b('during'));
      run.appended.push(key);
    }
  };
  const sync = (): void => { w.sync(); run.acked = run.appended.length; };
  const c = w.beginCompaction(from);
  for (let done = false; !done; ) {
    done = c.step(0);
    append(2);
    sync();
  }
  const syncing = c.syncCopy();
  // Should the cut come before the await, the rejection is still this workload's, not unhandled.
  syncing.catch(() => {});
  append(3);
  sync();
  await syncing;
  append(2); // appended, not synced: the finish syncs them
  c.finish();
  run.acked = run.appended.length;
  run.finished = true;
  append(2);
  sync();
}

test('a power cut at every call of a two-phase compaction loses no acknowledged record and duplicates none', async () => {
  let cases = 0;
  let viaBarrier = 0, viaNewFile = 0;
  for (const seed of [1, 2, 3, 4, 5, 6]) {
    for (let cut = 0; ; cut++) {
      const disk = deferredSyncDisk(seed);
      disk.mkdirSync('/wal', { recursive: true });
      const w = CoreWalWriter.create(0, PATH, { fs: disk, preallocate: seed % 2 === 0 ? 0 : 64 << 10 });
      const kept = 300;
      const run: Run = { appended: [], acked: 0, finished: false };
      for (let i = 0; i < 10; i++) w.appendPut(b(`a${i}`), b('before'));
      const from = w.appendEpochBarrier() + BARRIER_RECORD_SIZE;
      // ~300 KB kept: more than one block of the sliced copy.
      for (let i = 0; i < kept; i++) { w.appendPut(b(`b${i}`), Buffer.alloc(1000, 0x41 + (i % 26))); run.appended.push(`b${i}`); }
      w.sync();
      run.acked = run.appended.length;
      const crc = barrierCrcAt(disk, PATH, 0, from);
      disk.powerCut(cut, seed * 7919 + cut, { tear: 0.5, reorder: 0.5, keepDirOps: 0.5 });
      try {
        await workload(w, from, run);
      } catch (e) {
        if (!(e instanceof SimPowerLoss) && disk.afterPowerCut === null) throw e;
      }
      const after = disk.afterPowerCut ?? disk.crash(seed * 7919 + cut);
      const barrierStands = barrierCrcAt(after, PATH, 0, from) === crc;
      if (barrierStands) viaBarrier++; else viaNewFile++;
      const got = keysFrom(after, barrierStands ? from : 0);
      const msg = `seed ${seed}, power cut after ${cut} calls (finished: ${run.finished}, acked ${run.acked}, got ${got.length})`;
      assert.ok(got.length >= run.acked, msg);
      assert.deepEqual(got, run.appended.slice(0, got.length), msg);
      cases++;
      if (disk.afterPowerCut === null) break;
      assert.ok(cut < 2000, 'a compaction makes a bounded number of calls');
    }
  }
  assert.ok(cases > 100, `${cases} crash points`);
  if (process.env.COMPACT_CRASH_DEBUG) console.log({ cases, viaBarrier, viaNewFile });
  // Both sides of the rename were hit.
  assert.ok(viaBarrier > 10 && viaNewFile > 10, `${viaBarrier} via the barrier, ${viaNewFile} via the new file`);
});
