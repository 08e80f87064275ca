import { closeSync, fsyncSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { CheckpointStore } from '../../src/checkpoint/store.js';
import { PerCoreCheckpointCoordinator } from '../../src/checkpoint/coordinator.js';
import { PerCoreWalConfig } from '../../src/manager/config.js';
import { PerCoreWalManager } from '../../src/manager/manager.js';
import { PerCoreRecoveryManager } from '../../src/recovery/recovery.js';
import type { RecoveryMode } from '../../src/recovery/cursor.js';
import { cpuMs, type BenchCase, type BenchContext, type Metric } from '../harness.js';
import { rawReadCrc } from '../raw-read.js';

/**
 * Recovery: a WAL of 2 segments totalling 1 GiB (COREWAL_BENCH_RECOVERY_MB to change it;
 * smoke mode: 2 MiB) recovered into a key/value state, against reading and CRC-checking
 * the same files raw, record by record, in the same run. Puts over 64k distinct keys, so
 * the state stays small and the figure is the WAL's. Replayed changes are not collected
 * (`collectStateChanges: false`, the replay-table path), as a process recovering a large
 * WAL would do. Ratios are given in wall time and in CPU time (steadier when other
 * processes share the machine).
 *
 * Checkpoints: creating one of 1 M keys (smoke: 2k) in full, then an incremental one
 * after 1% of the keys changed, against writing and fsyncing the same bytes raw; loading
 * the chain back; and the coordinator folding 1 M WAL puts into a checkpoint.
 */
const KEY = 16;
const KEYSPACE = 65536;
const BLOCK = 1 << 20;
const MB = 1e6;
const MiB = 1024 * 1024;

function walBytes(ctx: BenchContext): number {
  const mb = Number(process.env['COREWAL_BENCH_RECOVERY_MB'] ?? (ctx.smoke ? 2 : 1024));
  if (!Number.isFinite(mb) || mb <= 0) throw new Error(`COREWAL_BENCH_RECOVERY_MB must be a positive number, got ${process.env['COREWAL_BENCH_RECOVERY_MB']}`);
  return Math.floor(mb * MiB);
}

function fill(m: PerCoreWalManager, bytes: number, valueSize: number): number {
  const k = m.numCores();
  const key = Buffer.alloc(KEY, 0x6b);
  const value = Buffer.alloc(valueSize, 0x76);
  let n = 0;
  while (m.totalSize() < bytes) {
    for (let c = 0; c < k; c++) {
      key.writeUInt32LE(n % KEYSPACE, 0);
      value.writeUInt32LE(n, 0);
      m.writer(c).appendPut(key, value);
      n++;
    }
    if ((n & 0xffff) < k) m.advanceEpoch();
  }
  m.syncAll();
  return n;
}

function recoveryCase(valueSize: number, modes: RecoveryMode[]): BenchCase {
  return {
    group: 'recovery',
    name: `2 cores, ${valueSize} B values`,
    repeat: 1,
    run(ctx: BenchContext): Metric[] {
      const size = walBytes(ctx);
      const config = new PerCoreWalConfig(join(ctx.dir, 'wal'), 2, { preallocate: 0, bufferSize: 1 << 20 });
      const m = PerCoreWalManager.create(config);
      let written: number;
      try {
        written = fill(m, size, valueSize);
      } finally {
        m.close();
      }
      const paths = [config.segmentPath(0), config.segmentPath(1)];
      let t = performance.now();
      let u = cpuMs();
      const raw = rawReadCrc(paths);
      const rawSecs = (performance.now() - t) / 1000;
      const rawCpu = cpuMs() - u;
      if (raw.records !== written) throw new Error(`raw read found ${raw.records} records, ${written} written`);
      const out: Metric[] = [
        { name: 'WAL size', value: raw.bytes / MiB, unit: 'MiB' },
        { name: 'entries', value: written, unit: 'entries' },
        { name: 'raw read+CRC', value: raw.bytes / MB / rawSecs, unit: 'MB/s' },
      ];
      for (const mode of modes) {
        const rssBefore = process.memoryUsage.rss();
        let peak = rssBefore;
        let reports = 0;
        const rm = new PerCoreRecoveryManager(config, {
          checkpointDir: join(ctx.dir, 'no-checkpoints'), mode, collectStateChanges: false,
          onProgress: () => { if ((++reports & 15) === 0) peak = Math.max(peak, process.memoryUsage.rss()); },
        });
        t = performance.now();
        u = cpuMs();
        const r = rm.recover();
        const secs = (performance.now() - t) / 1000;
        const cpu = cpuMs() - u;
        peak = Math.max(peak, process.memoryUsage.rss());
        if (r.entriesReplayed !== written) throw new Error(`${mode}: recovery replayed ${r.entriesReplayed} entries, ${written} written`);
        if (r.state.size !== Math.min(KEYSPACE, written)) throw new Error(`${mode}: recovered ${r.state.size} keys`);
        out.push(
          { name: `recover (${mode})`, value: raw.bytes / MB / secs, unit: 'MB/s' },
          { name: `recover (${mode}) / raw read+CRC`, value: rawSecs / secs, unit: 'x' },
          { name: `recover (${mode}) / raw read+CRC, CPU time`, value: rawCpu / cpu, unit: 'x' },
          { name: `recover (${mode}) entries/s`, value: written / secs, unit: 'entries/s' },
          { name: `RSS growth during recover (${mode})`, value: (peak - rssBefore) / MiB, unit: 'MiB' },
        );
      }
      return out;
    },
  };
}

/** Writes `bytes` in 1 MiB chunks and fsyncs: what a checkpoint file costs the disk, at least. */
function rawWrite(path: string, bytes: number): number {
  const chunk = Buffer.alloc(BLOCK, 0x5a);
  const t = performance.now();
  const fd = openSync(path, 'w');
  try {
    for (let at = 0; at < bytes; at += BLOCK) writeSync(fd, chunk, 0, Math.min(BLOCK, bytes - at), at);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  return (performance.now() - t) / 1000;
}

const checkpointCase: BenchCase = {
  group: 'checkpoint',
  name: '1 M keys (16 B keys, 100 B values)',
  repeat: 1,
  run(ctx: BenchContext): Metric[] {
    const keys = ctx.smoke ? 2000 : 1_000_000;
    const dir = join(ctx.dir, 'cp');
    const store = CheckpointStore.open({ checkpointDir: dir, fullEvery: 8, maxRetained: Infinity });
    const key = Buffer.alloc(KEY, 0x6b);
    for (let i = 0; i < keys; i++) {
      key.writeUInt32LE(i, 0);
      const v = Buffer.alloc(100, 0x76);
      v.writeUInt32LE(i, 0);
      store.putOwned(key, v);
    }
    let t = performance.now();
    const full = store.createCheckpoint(1);
    const fullSecs = (performance.now() - t) / 1000;
    const rawFullSecs = rawWrite(join(ctx.dir, 'raw-full'), full.sizeBytes);

    const changed = Math.max(1, Math.floor(keys / 100));
    for (let i = 0; i < changed; i++) {
      key.writeUInt32LE((i * 97) % keys, 0);
      if (i % 10 === 0) store.deleteBytes(key); else store.putOwned(Buffer.from(key), Buffer.alloc(100, i));
    }
    t = performance.now();
    const inc = store.createCheckpoint(2);
    const incSecs = (performance.now() - t) / 1000;
    if (!inc.isIncremental || inc.changeCount !== changed) throw new Error(`incremental checkpoint holds ${inc.changeCount} changes, ${changed} made`);
    const rawIncSecs = rawWrite(join(ctx.dir, 'raw-inc'), inc.sizeBytes);

    t = performance.now();
    const loaded = CheckpointStore.open({ checkpointDir: dir });
    const loadSecs = (performance.now() - t) / 1000;
    if (loaded.size !== store.size) throw new Error(`loaded ${loaded.size} keys, expected ${store.size}`);

    // The coordinator: the same number of puts in a 2-core WAL, merged, applied, checkpointed, reset.
    const config = new PerCoreWalConfig(join(ctx.dir, 'wal'), 2, { preallocate: 0, bufferSize: 1 << 20 });
    const wal = PerCoreWalManager.create(config);
    const coord = PerCoreCheckpointCoordinator.create(wal, CheckpointStore.open({ checkpointDir: join(ctx.dir, 'cp2') }));
    const value = Buffer.alloc(100, 0x76);
    for (let i = 0; i < keys; i++) {
      key.writeUInt32LE(i, 0);
      wal.writer(i & 1).appendPut(key, value);
    }
    wal.syncAll();
    t = performance.now();
    const cm = coord.createCheckpoint(1);
    const coordSecs = (performance.now() - t) / 1000;
    wal.close();
    if (cm.checkpoint.keyCount !== keys) throw new Error(`coordinator checkpoint holds ${cm.checkpoint.keyCount} keys`);

    return [
      { name: 'full: time', value: fullSecs * 1000, unit: 'ms' },
      { name: 'full: size', value: full.sizeBytes / MiB, unit: 'MiB' },
      { name: 'full: MB/s', value: full.sizeBytes / MB / fullSecs, unit: 'MB/s' },
      { name: 'full / raw write+fsync', value: rawFullSecs / fullSecs, unit: 'x' },
      { name: 'incremental (1% changed): time', value: incSecs * 1000, unit: 'ms' },
      { name: 'incremental: size', value: inc.sizeBytes / MiB, unit: 'MiB' },
      { name: 'incremental / raw write+fsync', value: rawIncSecs / incSecs, unit: 'x' },
      { name: 'open (load full + incremental)', value: loadSecs * 1000, unit: 'ms' },
      { name: 'coordinator: WAL puts → checkpoint', value: coordSecs * 1000, unit: 'ms' },
      { name: 'coordinator entries/s', value: cm.entriesMerged / coordSecs, unit: 'entries/s' },
    ];
  },
};

export const cases: BenchCase[] = [
  recoveryCase(100, ['tolerateCorruptedTail', 'pointInTime']),
  recoveryCase(1000, ['tolerateCorruptedTail']),
  checkpointCase,
];
