import { join } from 'node:path';
import { loadPeer } from '../load.js';
import type { PeerSystem, ReadBack, Store } from '../types.js';

// The little of better-sqlite3 the bench uses (no @types package: it is not a dependency).
interface Statement {
  run(...params: unknown[]): unknown;
  raw(on: boolean): Statement;
  iterate(): IterableIterator<[Buffer, Buffer]>;
}
interface Database {
  pragma(source: string): unknown;
  exec(sql: string): void;
  prepare(sql: string): Statement;
  transaction<A extends unknown[]>(fn: (...args: A) => void): (...args: A) => void;
  close(): void;
}
type DatabaseCtor = new (file: string) => Database;

function openDb(dir: string, durable: boolean): Database {
  const Db = loadPeer<DatabaseCtor>('better-sqlite3');
  const db = new Db(join(dir, 'db.sqlite'));
  db.pragma('journal_mode = WAL');
  db.pragma(`synchronous = ${durable ? 'FULL' : 'OFF'}`);
  // A log table: rowid order is insertion order, no index to maintain.
  db.exec('CREATE TABLE IF NOT EXISTS log (k BLOB NOT NULL, v BLOB NOT NULL)');
  return db;
}

/**
 * better-sqlite3 in WAL mode with `synchronous=FULL`: every transaction fsyncs the WAL.
 * Its API is synchronous, so concurrent producers take turns: each insert is its own
 * transaction, and the event loop is blocked while it commits.
 */
export const sqlite: PeerSystem = {
  name: 'better-sqlite3',
  notes: 'journal_mode=WAL, synchronous=FULL (non-durable: OFF), table log(k BLOB, v BLOB); '
    + 'one insert per transaction or N inserts in db.transaction(); synchronous API, so concurrent producers commit one at a time',
  open(dir, durable): Store {
    const db = openDb(dir, durable);
    const insert = db.prepare('INSERT INTO log (k, v) VALUES (?, ?)');
    const many = db.transaction((keys: readonly Buffer[], value: Buffer) => {
      for (const k of keys) insert.run(k, value);
    });
    return {
      commit(keys, value) {
        if (keys.length === 1) insert.run(keys[0], value);
        else many(keys, value);
      },
      put(key, value) {
        insert.run(key, value);
      },
      close: () => db.close(),
    };
  },
  readBack(dir): ReadBack {
    const db = openDb(dir, true);
    let records = 0, bytes = 0;
    for (const [k, v] of db.prepare('SELECT k, v FROM log').raw(true).iterate()) {
      records++;
      bytes += k.length + v.length;
    }
    db.close();
    return { records, bytes };
  },
};
