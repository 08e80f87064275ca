import { CoreWalWriter, PerCoreWalReader } from '../../src/index.js';
import { BARRIER_RECORD_SIZE } from '../../src/checkpoint/resume.js';
import type { WalFs } from '../../src/io/fs.js';
import { b } from './tmp.js';

/** Keys of the Put entries of core 0's segment at `path` from `from`, in order. */
export function putKeysFrom(path: string, from: number, fsys?: WalFs): string[] {
  const r = PerCoreWalReader.openFrom(0, path, from, fsys ? { fs: fsys } : {});
  const out: string[] = [];
  try {
    for (let e = r.readNext(); e.kind === 'entry'; e = r.readNext()) {
      const op = e.entry.operation;
      if (op.type === 'put') out.push(Buffer.from(op.key).toString());
    }
  } finally {
    r.close();
  }
  return out;
}

/**
 * Appends `before` Puts (`a0`…), an epoch barrier, syncs, appends `after` Puts (`b0`…), and
 * syncs again if `syncAfter`: returns the barrier's end, where a compaction would start.
 */
export function fillAroundBarrier(w: CoreWalWriter, before: number, after: number, value = b('value'), syncAfter = false): number {
  for (let i = 0; i < before; i++) w.appendPut(b(`a${i}`), value);
  const end = w.appendEpochBarrier() + BARRIER_RECORD_SIZE;
  w.sync();
  for (let i = 0; i < after; i++) w.appendPut(b(`b${i}`), value);
  if (syncAfter) w.sync();
  return end;
}
