import {
  CheckpointStore, CoreWalWriter, PerCoreCheckpointCoordinator, PerCoreRecoveryManager, PerCoreWalConfig, PerCoreWalError,
  PerCoreWalManager, PerCoreWalReader, StorageIoError, scanSegment,
} from '../../src/index.js';
import { SimDisk, type FsFaultCode } from '../../src/testing/index.js';

/**
 * SQLite's I/O-error test, for corewal: run a scenario that touches every part of the
 * file layer once with the 1st call failing, once with the 2nd, and so on until the
 * scenario no longer reaches the failing call. Every failure the library reports must be
 * a `PerCoreWalError` or `StorageIoError` (never a raw Node error, never another type),
 * and after the failure a crash and `PerCoreWalManager.open` must still succeed.
 */

/** A scenario over one disk: the manager, its writers, merge, reopen, a bare reader and writer. */
export function scenario(disk: SimDisk): void {
  const config = new PerCoreWalConfig('/db/wal', 2, { fs: disk, preallocate: 256, bufferSize: 4096 });
  const m = PerCoreWalManager.create(config);
  try {
    m.writer(0).appendPut(Buffer.from('a'), Buffer.from('1'));
    m.writer(1).appendPut(Buffer.from('b'), Buffer.alloc(5000, 2));
    m.syncAll();
    m.advanceEpoch();
    m.writeEpochBarrierAll();
    m.writer(0).appendDelete(Buffer.from('a'));
    m.syncAll();
    const at = m.positions();
    m.writer(1).appendCommit({ t: 1 }, 9);
    m.writer(1).flush();
    m.truncateAll(at);
    m.mergeSegments();
  } finally {
    m.close();
  }
  const m2 = PerCoreWalManager.open(config);
  try {
    m2.writer(0).appendPut(Buffer.from('c'), Buffer.from('3'));
    m2.syncAll();
    m2.resetAll();
  } finally {
    m2.close();
  }
  const scan = scanSegment(1, '/db/wal/wal-1.log', { fs: disk });
  const w = CoreWalWriter.openAt(1, '/db/wal/wal-1.log', scan.validEnd, { fs: disk, preallocate: 0 });
  try {
    w.appendPut(Buffer.from('d'), Buffer.from('4'));
    w.sync();
    w.truncate(0);
  } finally {
    w.close();
  }
  const r = PerCoreWalReader.open(0, '/db/wal/wal-0.log', { fs: disk });
  try { r.readAll(); } finally { r.close(); }
}

/** Checkpoints and recovery: the coordinator, the store's files, retention, and recovery itself. */
export function checkpointScenario(disk: SimDisk): void {
  const config = new PerCoreWalConfig('/db/wal', 2, { fs: disk, preallocate: 0, bufferSize: 4096 });
  const opts = { checkpointDir: '/db/ckpt', fs: disk, fullEvery: 2, maxRetained: 2, onWarning: () => {} };
  const m = PerCoreWalManager.create(config);
  try {
    const coord = PerCoreCheckpointCoordinator.create(m, CheckpointStore.open(opts));
    m.writer(0).appendPut(Buffer.from('a'), Buffer.from('1'));
    m.writer(1).appendCommit({ t: 5 }, 3);
    coord.createCheckpoint(1n);
    m.writer(1).appendPut(Buffer.from('b'), Buffer.alloc(3000, 2));
    m.writer(0).appendDelete(Buffer.from('a'));
    coord.createCheckpointNoTruncate(2n);
    m.writer(0).appendPut(Buffer.from('c'), Buffer.from('3'));
    m.syncAll();
    coord.createCheckpoint(3n);
    coord.cleanupOldCheckpoints(1);
  } finally {
    m.close();
  }
  const rec = new PerCoreRecoveryManager(config, { checkpointDir: '/db/ckpt', fs: disk, onWarning: () => {} }).recover();
  const store = CheckpointStore.open(opts);
  for (const c of store.listCheckpoints()) store.loadCheckpoint(c.id);
  const m2 = PerCoreWalManager.open(config, { minEpoch: rec.finalEpoch, minSequences: rec.nextSequences });
  m2.close();
}

export interface SweepResult { points: number; failures: number }

/** Fails the 1st, 2nd, … call of the scenario with `code` (and, sticky, every call after it); returns how many points were swept. */
export function faultSweep(
  code: FsFaultCode, check: (message: string) => void, options: { sticky?: boolean; partial?: boolean; checkpoints?: boolean } = {}, limit = 10_000,
): SweepResult {
  let failures = 0;
  for (let n = 1; n <= limit; n++) {
    const disk = new SimDisk({ seed: n });
    disk.mkdirSync('/db');
    // Sticky: the disk stays broken from that call on. Partial: a failing write writes some bytes first.
    const fault = disk.injectFault({ nth: n, code, count: options.sticky ? Infinity : 1, partial: options.partial });
    let thrown: unknown = null;
    try {
      (options.checkpoints ? checkpointScenario : scenario)(disk);
    } catch (e) {
      thrown = e;
    }
    if (fault.fired === 0) return { points: n - 1, failures };
    if (thrown !== null) {
      failures++;
      if (!(thrown instanceof PerCoreWalError) && !(thrown instanceof StorageIoError)) {
        check(`call #${n} failing with ${code}: untyped ${String((thrown as Error)?.stack ?? thrown)}`);
      }
    }
    // Whatever the failure left, a crash and an open must recover.
    disk.clearFaults();
    const after = disk.crash(n);
    if (after.existsSync('/db/wal/wal-0.log') && after.existsSync('/db/wal/wal-1.log')) {
      try {
        const config = new PerCoreWalConfig('/db/wal', 2, { fs: after });
        if (options.checkpoints) new PerCoreRecoveryManager(config, { checkpointDir: '/db/ckpt', fs: after, onWarning: () => {} }).recover();
        PerCoreWalManager.open(config).close();
      } catch (e) {
        check(`call #${n} failing with ${code}: recovery after the crash failed: ${String((e as Error)?.stack ?? e)}`);
      }
    }
  }
  return { points: limit, failures };
}
