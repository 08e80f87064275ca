import type { Workload } from './types.js';

const SIZES = [100, 4096] as const;
export const sizeLabel = (n: number): string => (n >= 1024 ? `${n / 1024} KiB` : `${n} B`);

/** Durable: 1, 100 and 1000 records per commit from one producer; 64 and 256 concurrent producers. */
export function durableWorkloads(): Workload[] {
  const out: Workload[] = [];
  for (const v of SIZES) {
    for (const per of [1, 100, 1000]) {
      out.push({
        table: 'durable', id: `durable/${v}/per${per}`, valueSize: v, perCommit: per, producers: 1,
        label: `${per === 1 ? '1 record' : `${per} records`}/commit, ${sizeLabel(v)}`,
      });
    }
    for (const p of [64, 256]) {
      out.push({ table: 'durable', id: `durable/${v}/x${p}`, valueSize: v, perCommit: 1, producers: p, label: `${p} producers, ${sizeLabel(v)}` });
    }
  }
  return out;
}

/** No sync: a commit is handed to the OS (it survives the process, not the machine). */
export function nonDurableWorkloads(): Workload[] {
  const out: Workload[] = [];
  for (const v of SIZES) {
    for (const per of [1, 1000]) {
      out.push({
        table: 'non-durable', id: `non-durable/${v}/per${per}`, valueSize: v, perCommit: per, producers: 1,
        label: `${per === 1 ? '1 record' : `${per} records`}/commit, ${sizeLabel(v)}`,
      });
    }
  }
  return out;
}

/** lmdb-js's two ways of awaiting a write, with many producers (see {@link TableId}). */
export function lmdbFlushWorkloads(): Workload[] {
  return [64, 256].map((p) => ({
    table: 'lmdb-flush', id: `lmdb-flush/100/x${p}`, valueSize: 100, perCommit: 1, producers: p, label: `${p} producers, 100 B`,
  }));
}

/** Write N records durably (untimed), close, then time opening and reading all of them back. */
export function readBackWorkloads(smoke: boolean): Workload[] {
  return SIZES.map((v) => {
    const records = smoke ? 2000 : v >= 1024 ? 50_000 : 500_000;
    return {
      table: 'read-back', id: `read-back/${v}`, valueSize: v, perCommit: 1000, producers: 1, records,
      label: `${records.toLocaleString('en-US')} records, ${sizeLabel(v)}`,
    };
  });
}
