import { availableParallelism } from 'node:os';
import { CoreWalPool } from '../../../src/worker/pool.js';
import type { PeerSystem, Store } from '../types.js';

const workers = availableParallelism();

/**
 * corewal's worker pool: one worker thread and one segment per core, appends routed by key
 * hash through shared-memory rings, each worker group-committing its own segment. Every
 * `put` resolves once durable, so the pool runs in the durable table only; a commit of N
 * records is N puts awaited together.
 */
export const corewalPool: PeerSystem = {
  name: `corewal pool (${workers} worker${workers > 1 ? 's' : ''})`,
  notes: `CoreWalPool.start({ dir, workers: ${workers} }) (os.availableParallelism()), default options; put(k, v) routed by key hash, `
    + 'resolved once durable (group commit inside each worker); a commit of N records = N puts awaited together; durable table only',
  tables: ['durable'],
  async open(dir): Promise<Store> {
    const pool = await CoreWalPool.start({ dir, workers });
    const put = (key: Buffer, value: Buffer): Promise<number> => pool.put(key, value);
    return {
      async commit(keys, value) {
        if (keys.length === 1) await put(keys[0]!, value);
        else await Promise.all(keys.map((k) => put(k, value)));
      },
      put,
      close: () => pool.close(),
    };
  },
  readBack() {
    throw new Error('the pool runs in the durable table only');
  },
};
