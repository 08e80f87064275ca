import {
  CoreWalWriter, GroupCommitLog, PerCoreWalError, registerWriterSegment, scanSegment, SyncStorageIo, type PerCoreWalEntry,
} from '../../src/index.js';
import { FaultInjectingStorageIo, Rng, SimDisk } from '../../src/testing/index.js';
import { randomCrashOptions, sameBytes, TortureFailure, type SeedResult, type TortureSuite } from './harness.js';
import { killValue } from './kill-values.js';

const SEG = '/wal/wal-0.log';
const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/**
 * Group commit through crashes: many concurrent `put`s on a {@link GroupCommitLog} over a
 * {@link SyncStorageIo} on a {@link SimDisk}, behind a {@link FaultInjectingStorageIo}
 * that reorders and holds completions and (in fault mode) fails writes and datasyncs.
 * At random turns of the event loop the disk is crashed: every put whose promise had
 * resolved must be in the crashed segment with its value, and a put whose promise
 * rejected was never reported durable. After a failure every later call rejects.
 */
export async function runGroupCommitSeed(seed: number, options: { faults?: boolean } = {}): Promise<SeedResult> {
  const suite = options.faults ? 'group-commit-faults' : 'group-commit';
  const rng = new Rng(seed);
  const disk = new SimDisk({ seed });
  disk.mkdirSync('/wal');
  // 64 KiB buffers: a turn's flush can pass 16 KiB, and the writer then lends its buffer to the backend.
  const w = CoreWalWriter.create(0, SEG, { fs: disk, preallocate: rng.pick([0, 4096]), bufferSize: rng.pick([4096, 65536]) });
  const sio = new FaultInjectingStorageIo(new SyncStorageIo({ fs: disk }), { reorder: rng.pick(['none', 'reverse', 'shuffle'] as const), seed });
  const fd = registerWriterSegment(w, sio, { fs: disk });
  const log = GroupCommitLog.forWriter(w, { storageIo: sio, fd, maxGroupBytes: rng.pick([512, 8192, 1 << 20]), maxSyncsInFlight: rng.pick([1, 2, 3]) });
  const acked = new Set<bigint>();
  const fail = (m: string): never => { throw new TortureFailure(suite, seed, m); };
  let crashes = 0, puts = 0, failed: unknown = null;

  const verify = (): void => {
    const snapshot = new Set(acked);
    const after = disk.crash(rng.fork(), randomCrashOptions(rng));
    crashes++;
    const found = new Map<bigint, PerCoreWalEntry>();
    const scan = scanSegment(0, SEG, { fs: after, onEntry: (e) => found.set(e.sequence, e) });
    if (scan.tail === 'damaged') fail(`damaged tail at ${scan.bad?.position} after an ordinary crash`);
    for (const seq of snapshot) {
      const e = found.get(seq);
      if (e === undefined) return fail(`put ${seq} was acknowledged durable and is gone after a crash`);
      if (!sameBytes(e.value(), killValue(seq))) fail(`put ${seq} came back with another value`);
    }
  };

  const rounds = rng.range(3, 8);
  for (let r = 0; r < rounds; r++) {
    if (options.faults && rng.bool(0.3)) {
      if (rng.bool(0.5)) sio.failNext('datasync', 'EIO');
      else sio.failNext('write', rng.pick(['EIO', 'ENOSPC'] as const));
    }
    const hold = rng.bool(0.2) ? sio.hold({ op: 'datasync', times: 1 }) : null;
    const n = rng.range(1, 60);
    const ps: Promise<void>[] = [];
    for (let i = 0; i < n; i++) {
      const seq = BigInt(puts++);
      ps.push(log.put(Buffer.from(`k${seq}`), killValue(seq)).then(
        () => { if (failed !== null) fail(`put ${seq} resolved after the log failed`); acked.add(seq); },
        (e: unknown) => {
          if (!(e instanceof PerCoreWalError) || (e.code !== 'IO' && e.code !== 'POISONED')) fail(`put ${seq} rejected with ${String(e)}`);
          if (!options.faults) fail(`put ${seq} rejected without a fault: ${String(e)}`);
          failed ??= e;
        },
      ));
    }
    // Crash at random turns while the groups are in flight, and once they have settled.
    for (let t = rng.int(6); t > 0; t--) {
      await turn();
      if (rng.bool(0.5)) verify();
    }
    hold?.release();
    await Promise.all(ps);
    verify();
    if (failed !== null) break;
  }
  if (failed !== null) {
    let code = '';
    try { await log.put(Buffer.from('x'), Buffer.from('y')); } catch (e) { code = (e as PerCoreWalError).code; }
    if (code !== 'POISONED') fail(`a put after the failure gave ${code || 'success'}, expected POISONED`);
  }
  await log.close().catch(() => {});
  sio.close();
  w.close();
  return { iterations: puts, crashes };
}

export const groupCommitSuite: TortureSuite = { name: 'group-commit', run: (seed) => runGroupCommitSeed(seed) };
export const groupCommitFaultSuite: TortureSuite = { name: 'group-commit-faults', run: (seed) => runGroupCommitSeed(seed, { faults: true }) };
