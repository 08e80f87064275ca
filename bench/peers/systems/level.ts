import { loadPeer } from '../load.js';
import type { PeerSystem, ReadBack, Store } from '../types.js';

// The little of classic-level the bench uses (no @types package: it is not a dependency).
interface LevelDb {
  open(): Promise<void>;
  put(key: Uint8Array, value: Uint8Array, options: { sync: boolean }): Promise<void>;
  batch(ops: { type: 'put'; key: Uint8Array; value: Uint8Array }[], options: { sync: boolean }): Promise<void>;
  iterator(): AsyncIterable<[Uint8Array, Uint8Array]>;
  close(): Promise<void>;
}
interface LevelModule {
  ClassicLevel: new (location: string, options: { keyEncoding: 'view'; valueEncoding: 'view' }) => LevelDb;
}

async function openLevel(dir: string): Promise<LevelDb> {
  const { ClassicLevel } = loadPeer<LevelModule>('classic-level');
  // 'view' is LevelDB's native encoding: Buffers go through without transcoding.
  const db = new ClassicLevel(dir, { keyEncoding: 'view', valueEncoding: 'view' });
  await db.open();
  return db;
}

/** classic-level (LevelDB): `put`/`batch` with `{ sync: true }` fsync LevelDB's log. */
export const level: PeerSystem = {
  name: 'classic-level',
  notes: 'LevelDB defaults; durable = put(k, v, { sync: true }) / batch(ops, { sync: true }); non-durable: sync: false',
  async open(dir, durable): Promise<Store> {
    const db = await openLevel(dir);
    const sync = { sync: durable };
    return {
      commit(keys, value) {
        if (keys.length === 1) return db.put(keys[0]!, value, sync);
        return db.batch(keys.map((key) => ({ type: 'put' as const, key, value })), sync);
      },
      put: (key, value) => db.put(key, value, sync),
      close: () => db.close(),
    };
  },
  async readBack(dir): Promise<ReadBack> {
    const db = await openLevel(dir);
    let records = 0, bytes = 0;
    for await (const [key, value] of db.iterator()) {
      records++;
      bytes += key.length + value.length;
    }
    await db.close();
    return { records, bytes };
  },
};
