import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { machine } from './machine.js';
import { fill, KEY_SIZE, run, settle, timeReadBack } from './measure.js';
import { FS_LOOP, LMDB } from './names.js';
import { systems as allSystems } from './systems/index.js';
import { MAIN_TABLES, type PeerRow, type PeersDoc, type PeerSystem, type Workload } from './types.js';
import { durableWorkloads, lmdbFlushWorkloads, nonDurableWorkloads, readBackWorkloads } from './workloads.js';

export interface PeersOptions {
  /** Seconds per measured run (default 1.5, two runs per figure; smoke 0.02). */
  seconds?: number;
  /** Repetitions per figure, each in a rotated system order; median reported (default 2; smoke 1). */
  repeat?: number;
  smoke?: boolean;
  /** Regular expression over 'table workload system'. */
  filter?: string;
  /** Progress lines (default: stderr). */
  log?: (line: string) => void;
  command?: string;
  systems?: readonly PeerSystem[];
}

interface Sample {
  recordsPerSec: number;
  commitsPerSec: number;
  p50Ms: number | null;
  p99Ms: number | null;
  records: number;
  secs: number;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

async function measureOnce(sys: PeerSystem, w: Workload, value: Buffer, seconds: number, warm: number): Promise<Sample> {
  const dir = mkdtempSync(join(tmpdir(), 'corewal-peers-'));
  try {
    if (w.table === 'read-back') {
      const store = await sys.open(dir, true);
      await fill(store, w, value);
      await store.close();
      settle(dir);
      const r = await timeReadBack(() => sys.readBack(dir));
      if (r.records !== w.records) throw new Error(`${sys.name} read back ${r.records} of ${w.records} records`);
      return { recordsPerSec: r.records / r.secs, commitsPerSec: r.records / r.secs, p50Ms: null, p99Ms: null, records: r.records, secs: r.secs };
    }
    const store = await sys.open(dir, w.table !== 'non-durable');
    // Warm-up on the same store, with keys of its own: JIT, file growth, the store's caches.
    if (warm > 0) await run(store, w, value, warm, 1 << 20);
    const m = await run(store, w, value, seconds, 1);
    await store.close();
    settle(dir);
    return {
      recordsPerSec: m.records / m.secs, commitsPerSec: m.commits / m.secs,
      p50Ms: m.latency.percentile(50), p99Ms: m.latency.percentile(99), records: m.records, secs: m.secs,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Runs every workload against every system in one process; rows come back with their ratios. */
export async function runPeers(opts: PeersOptions = {}): Promise<PeersDoc> {
  const started = performance.now();
  const smoke = opts.smoke ?? false;
  const seconds = opts.seconds ?? (smoke ? 0.02 : 1.5);
  const warm = smoke ? 0 : Math.min(0.25, seconds / 4);
  const repeat = Math.max(1, opts.repeat ?? (smoke ? 1 : 2));
  const log = opts.log ?? ((l: string) => process.stderr.write(l + '\n'));
  const systems = opts.systems ?? allSystems;
  const re = opts.filter ? new RegExp(opts.filter, 'i') : null;
  const workloads = [...durableWorkloads(), ...nonDurableWorkloads(), ...readBackWorkloads(smoke), ...lmdbFlushWorkloads()];
  const rows: PeerRow[] = [];
  for (const [wi, w] of workloads.entries()) {
    const value = randomBytes(w.valueSize);
    const chosen = systems.filter((s) => (s.tables ?? MAIN_TABLES).includes(w.table) && (!re || re.test(`${w.table} ${w.label} ${s.name}`)));
    if (chosen.length === 0) continue;
    const samples = new Map<string, Sample[]>(chosen.map((s) => [s.name, []]));
    for (let rep = 0; rep < repeat; rep++) {
      // Rotate the order per workload and repetition, so no system always runs first (or last) on a warmer machine.
      const shift = (wi + rep) % chosen.length;
      for (const sys of [...chosen.slice(shift), ...chosen.slice(0, shift)]) {
        samples.get(sys.name)!.push(await measureOnce(sys, w, value, seconds, warm));
      }
    }
    const wRows = chosen.map((sys) => toRow(w, sys.name, samples.get(sys.name)!));
    const base = (name: string) => wRows.find((r) => r.system === name)?.recordsPerSec;
    for (const r of wRows) {
      const l = base(LMDB), f = base(FS_LOOP);
      r.vsLmdb = l ? r.recordsPerSec / l : null;
      r.vsFs = f ? r.recordsPerSec / f : null;
      log(`${w.table} | ${w.label} | ${r.system}: ${Math.round(r.recordsPerSec)} records/s`
        + (r.p99Ms === null ? '' : `, p50 ${r.p50Ms!.toFixed(3)} ms, p99 ${r.p99Ms.toFixed(3)} ms`));
    }
    rows.push(...wRows);
  }
  return {
    date: new Date().toISOString(), machine: machine(), command: opts.command ?? 'npm run bench:peers',
    seconds, repeat, smoke, filter: opts.filter ?? null, elapsedSecs: (performance.now() - started) / 1000,
    systems: systems.map((s) => ({ name: s.name, notes: s.notes, tables: [...(s.tables ?? MAIN_TABLES)] })), rows,
  };
}

function toRow(w: Workload, system: string, ss: Sample[]): PeerRow {
  const rps = median(ss.map((s) => s.recordsPerSec));
  const lat = (f: (s: Sample) => number | null) => (ss[0] && f(ss[0]) === null ? null : median(ss.map((s) => f(s)!)));
  const last = ss[ss.length - 1]!;
  return {
    table: w.table, workloadId: w.id, workload: w.label, system, valueSize: w.valueSize, perCommit: w.perCommit, producers: w.producers,
    recordsPerSec: rps, mibPerSec: (rps * (KEY_SIZE + w.valueSize)) / 2 ** 20,
    commitsPerSec: median(ss.map((s) => s.commitsPerSec)), p50Ms: lat((s) => s.p50Ms), p99Ms: lat((s) => s.p99Ms),
    vsLmdb: null, vsFs: null, runs: ss.map((s) => s.recordsPerSec), records: last.records, secs: last.secs,
  };
}
