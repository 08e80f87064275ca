import { PerCoreWalConfig } from '../../../src/manager/config.js';
import { PerCoreWalManager } from '../../../src/manager/manager.js';
import type { PeerSystem, ReadBack, Store } from '../types.js';
import { TurnGroupCommit } from './turn-group.js';

/**
 * corewal on its direct path: appends go to the writer's buffer, a durable commit is
 * `sync()` (write + fdatasync), a non-durable one `flush()` (write only). Concurrent
 * producers share one `sync()` per event-loop turn through the bench's own
 * {@link TurnGroupCommit}, until the library's group commit lands on main.
 */
export const corewal: PeerSystem = {
  name: 'corewal',
  notes: 'direct path, one core; durable commit = sync() (write + fdatasync, preallocated segment); '
    + 'concurrent producers: bench group commit (one sync() per event-loop turn, blocks the loop while it runs)',
  open(dir, durable): Store {
    const wal = PerCoreWalManager.create(new PerCoreWalConfig(dir, 1));
    const w = wal.writer(0);
    const group = new TurnGroupCommit(() => w.sync());
    return {
      commit(keys, value) {
        for (const k of keys) w.appendPut(k, value);
        if (durable) w.sync(); else w.flush();
      },
      put(key, value) {
        w.appendPut(key, value);
        return group.enqueue();
      },
      close() {
        if (durable) w.sync(); else w.flush();
        wal.close();
      },
    };
  },
  readBack(dir): ReadBack {
    // Recovery of the log itself: open scans the segment (cuts a torn tail), the merge reads it in order.
    const wal = PerCoreWalManager.open(new PerCoreWalConfig(dir, 1));
    let records = 0, bytes = 0;
    for (const e of wal.mergeIter()) {
      const v = e.value();
      const k = e.key();
      if (v === undefined || k === undefined) continue;
      records++;
      bytes += k.length + v.length;
    }
    wal.close();
    return { records, bytes };
  },
};
