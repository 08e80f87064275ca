import { join } from 'node:path';
import { GroupCommitLog } from '../../../src/group-commit/group-commit-log.js';
import { PerCoreWalConfig } from '../../../src/manager/config.js';
import { PerCoreWalManager } from '../../../src/manager/manager.js';
import { PerCoreRecoveryManager } from '../../../src/recovery/recovery.js';
import type { PeerSystem, ReadBack, Store } from '../types.js';

/**
 * corewal, one core. A single producer uses the direct path: appends go to the writer's
 * buffer, a durable commit is `sync()` (write + fdatasync), a non-durable one `flush()`.
 * Concurrent producers use {@link GroupCommitLog} on the same writer: each `await
 * log.put()` resolves once a datasync covering its record completed, on
 * ThreadPoolStorageIo (the event loop never blocks on the disk).
 */
export const corewal: PeerSystem = {
  name: 'corewal',
  notes: 'one core (PerCoreWalManager, 1 segment, preallocated). One producer: direct path, durable commit = sync() '
    + '(write + fdatasync), non-durable = flush() (write). Concurrent producers: GroupCommitLog.forWriter(writer) on '
    + 'ThreadPoolStorageIo, default policy; each producer awaits put(), resolved once a datasync covers its record. '
    + 'Read-back: PerCoreRecoveryManager.recover() (no checkpoint: the whole WAL replayed into a state view), then every entry of the state',
  open(dir, durable): Store {
    const wal = PerCoreWalManager.create(new PerCoreWalConfig(dir, 1));
    const w = wal.writer(0);
    // Only the concurrent workloads use it: once the StorageIo path is in use, the writer's direct sync waits on it.
    let log: GroupCommitLog | null = null;
    return {
      commit(keys, value) {
        for (const k of keys) w.appendPut(k, value);
        if (durable) w.sync(); else w.flush();
      },
      put(key, value) {
        log ??= GroupCommitLog.forWriter(w);
        return log.put(key, value);
      },
      async close() {
        if (log) await log.close();
        else if (durable) w.sync();
        else w.flush();
        wal.close();
      },
    };
  },
  readBack(dir): ReadBack {
    // What a restart does: recovery (no checkpoint yet) replays the WAL into a state view; then read all of it.
    const r = new PerCoreRecoveryManager(new PerCoreWalConfig(dir, 1), { checkpointDir: join(dir, 'checkpoints'), collectStateChanges: false }).recover();
    let records = 0, bytes = 0;
    for (const [k, v] of r.state.entries()) {
      records++;
      bytes += k.length + v.length;
    }
    return { records, bytes };
  },
};

/**
 * The log without the state: `PerCoreWalManager.open` (scans the segment, cuts a torn tail)
 * and the k-way merge over every entry — what a consumer that keeps its own state reads.
 * Only in the read-back table, beside the full recovery above.
 */
export const corewalMerge: PeerSystem = {
  name: 'corewal (open + merge)',
  notes: 'read-back only: PerCoreWalManager.open() (scan, torn-tail cut) then every entry of mergeIter(), no state built',
  tables: ['read-back'],
  open: (dir, durable) => corewal.open(dir, durable),
  readBack(dir): ReadBack {
    const wal = PerCoreWalManager.open(new PerCoreWalConfig(dir, 1));
    let records = 0, bytes = 0;
    for (const e of wal.mergeIter()) {
      const k = e.key();
      const v = e.value();
      if (k === undefined || v === undefined) continue;
      records++;
      bytes += k.length + v.length;
    }
    wal.close();
    return { records, bytes };
  },
};
