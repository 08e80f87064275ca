import { mkdirSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CheckpointStore, PerCoreCheckpointCoordinator, PerCoreWalConfig, PerCoreWalManager } from '../../src/index.js';
import { seg } from './wal-dirs.js';

/**
 * A WAL of 2 cores with checkpoints, written through the real manager, store and
 * coordinator, then left healthy or damaged after the last checkpoint:
 * - checkpoint 1 (full): key-0 … key-19, a commit kafka=100 watermark 50;
 * - checkpoint 2 (incremental on 1): key-20 … key-39, key-3 deleted;
 * - then, in the WAL only: key-40 … key-59 (core 1 synced after each record), a commit
 *   kafka=300 watermark 250, and for `torn` one more put on core 1 cut short.
 * `expected` is the state full recovery must rebuild (tolerateCorruptedTail on `torn`).
 */
export interface CheckpointedWal {
  walDir: string;
  cpDir: string;
  expected: Map<string, string>;
  /** Keys and values the newest checkpoint (2) holds. */
  inCheckpoint: Map<string, string>;
  /** `damaged`: byte position in wal-1.log of the record whose byte was flipped, and its key. */
  bad?: { position: number; key: string };
  /** `torn`: core 1's valid end and its size after the cut. */
  torn?: { validEnd: number; size: number };
}

export function checkpointedWal(root: string, after: 'healthy' | 'torn' | 'damaged' = 'healthy'): CheckpointedWal {
  mkdirSync(root, { recursive: true });
  const walDir = join(root, 'wal');
  const cpDir = join(root, 'checkpoints');
  const wal = PerCoreWalManager.create(new PerCoreWalConfig(walDir, 2, { preallocate: 0 }));
  const store = CheckpointStore.open({ checkpointDir: cpDir });
  const coord = PerCoreCheckpointCoordinator.create(wal, store);
  const state = new Map<string, string>();
  const put = (i: number): number => {
    const k = `key-${i}`, v = `value ${i} of round ${Math.floor(i / 20) + 1}`;
    state.set(k, v);
    return wal.writer(i % 2).appendPut(Buffer.from(k), Buffer.from(v));
  };
  for (let i = 0; i < 20; i++) put(i);
  wal.writer(0).appendCommit({ kafka: 100 }, 50);
  coord.createCheckpoint(1);
  for (let i = 20; i < 40; i++) put(i);
  wal.writer(1).appendDelete(Buffer.from('key-3'));
  state.delete('key-3');
  coord.createCheckpoint(2);
  const inCheckpoint = new Map(state);
  const starts = new Map<number, number>();
  for (let i = 40; i < 60; i++) {
    starts.set(i, put(i));
    if (i % 2 === 1) wal.writer(1).sync();
  }
  wal.writer(1).appendCommit({ kafka: 300 }, 250);
  wal.syncAll();
  const out: CheckpointedWal = { walDir, cpDir, expected: state, inCheckpoint };
  if (after === 'torn') {
    const w = wal.writer(1);
    const validEnd = w.position();
    w.appendPut(Buffer.from('torn-key'), Buffer.alloc(100, 0x61));
    w.sync();
    const full = w.position();
    wal.close();
    truncateSync(seg(walDir, 1), full - 30);
    out.torn = { validEnd, size: full - 30 };
    return out;
  }
  wal.close();
  if (after === 'damaged') {
    // key-45 is on core 1, in the middle of what was synced record by record: damage.
    const position = starts.get(45)!;
    const path = seg(walDir, 1);
    const buf = readFileSync(path);
    buf[position + 20] = buf[position + 20]! ^ 0x5a;
    writeFileSync(path, buf);
    out.bad = { position, key: 'key-45' };
  }
  return out;
}

/** Flips a byte in the body of checkpoint `id`: its CRC no longer matches. */
export function breakCheckpoint(cpDir: string, id: number): string {
  const path = join(cpDir, `checkpoint-${String(id).padStart(20, '0')}.cwc`);
  const buf = readFileSync(path);
  buf[buf.length - 3] = buf[buf.length - 3]! ^ 0xff;
  writeFileSync(path, buf);
  return path;
}
