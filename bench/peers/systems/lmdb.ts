import { loadPeer } from '../load.js';
import { LMDB } from '../names.js';
import type { PeerSystem, ReadBack, Store } from '../types.js';

// The little of lmdb-js the bench uses (no @types package: it is not a dependency).
interface PutPromise extends Promise<boolean> {
  /** With `separateFlushed`: resolves once the commit is flushed to disk. */
  flushed?: PromiseLike<void>;
}
interface LmdbDb {
  put(key: Buffer, value: Buffer): PutPromise;
  transaction<T>(fn: () => T): Promise<T>;
  getRange(): Iterable<{ key: Buffer; value: Buffer }>;
  /** Resolves once every earlier write is committed and flushed. */
  readonly flushed: PromiseLike<void>;
  close(): Promise<void>;
}
interface LmdbModule {
  open(options: Record<string, unknown>): LmdbDb;
}

const lmdbOptions = (path: string, durable: boolean) => ({
  path, keyEncoding: 'binary', encoding: 'binary', noSync: !durable,
  // On Linux lmdb-js defaults to overlappingSync: a put's promise resolves when its
  // transaction commits, before the flush. `flushed` is what makes the write durable.
  separateFlushed: durable,
});

/**
 * lmdb-js with its default durable commits (`noSync: false`; overlappingSync, the Linux
 * default). Every durable write awaits its commit's `flushed` promise: the put promise
 * alone resolves at commit, before the data is on disk.
 */
export const lmdb: PeerSystem = {
  name: LMDB,
  tables: ['durable', 'non-durable', 'read-back', 'lmdb-flush'],
  notes: 'open({ noSync: false, separateFlushed: true }) (overlappingSync, the Linux default); '
    + 'durable = await put(...).flushed; batches: await transaction(() => puts), then await db.flushed; non-durable: noSync: true, await put',
  open(dir, durable): Store {
    const db = loadPeer<LmdbModule>('lmdb').open(lmdbOptions(dir, durable));
    const put = async (key: Buffer, value: Buffer): Promise<void> => {
      const p = db.put(key, value);
      await p;
      if (durable) await p.flushed;
    };
    return {
      async commit(keys, value) {
        if (keys.length === 1) return put(keys[0]!, value);
        await db.transaction(() => {
          for (const k of keys) void db.put(k, value);
        });
        if (durable) await db.flushed;
      },
      put,
      close: () => db.close(),
    };
  },
  async readBack(dir): Promise<ReadBack> {
    const db = loadPeer<LmdbModule>('lmdb').open(lmdbOptions(dir, true));
    let records = 0, bytes = 0;
    for (const { key, value } of db.getRange()) {
      records++;
      bytes += key.length + value.length;
    }
    await db.close();
    return { records, bytes };
  },
};

/**
 * lmdb-js awaiting only the put promise: with overlappingSync it resolves when the
 * transaction commits, before the flush — a measure of what a benchmark that awaits `put`
 * reports, not of durable writes. Only in the 'lmdb-flush' aside.
 */
export const lmdbCommitOnly: PeerSystem = {
  name: `${LMDB} (put promise only)`,
  notes: 'lmdb-js defaults (overlappingSync), await put(...) alone: resolved at commit, before the flush; aside table only',
  tables: ['lmdb-flush'],
  open(dir, durable): Store {
    const db = loadPeer<LmdbModule>('lmdb').open({ path: dir, keyEncoding: 'binary', encoding: 'binary', noSync: !durable });
    return {
      commit: async (keys, value) => {
        // Puts of one event turn share a transaction: the last one's promise is the commit's.
        let last: Promise<boolean> | null = null;
        for (const k of keys) last = db.put(k, value);
        await last;
      },
      put: (key, value) => db.put(key, value),
      close: () => db.close(),
    };
  },
  readBack: (dir) => lmdb.readBack(dir),
};
