import {
  CheckpointStore, PerCoreCheckpointCoordinator, PerCoreRecoveryManager, PerCoreWalConfig, PerCoreWalError, PerCoreWalManager,
  RECOVERY_MODES,
} from '../../src/index.js';
import { Rng, SimDisk } from '../../src/testing/index.js';
import { mutate } from './fuzz.js';
import { TortureFailure, type SeedResult, type TortureSuite } from './harness.js';

const WAL = '/wal';
const CKPT = '/ckpt';

/**
 * Mutation fuzzing of recovery's own segment reading (the recovery cursor, with its
 * resynchronisation in `skipAnyCorrupted`): a real two-core WAL, sometimes behind a
 * checkpoint that did not reset it, has one or both segments mutated, then
 * `PerCoreRecoveryManager.recover()` runs in every mode. Each run must end in a state or
 * a `PerCoreWalError` (no other exception, no hang), and every change it replays must be a
 * put or delete that was really written (a mutated record never becomes a change).
 */
export function runRecoveryFuzz(options: { seed: number; inputs: number }): { inputs: number; recovered: number } {
  const rng = new Rng(options.seed);
  const disk = new SimDisk();
  const config = new PerCoreWalConfig(WAL, 2, { fs: disk, preallocate: rng.pick([0, 128]), bufferSize: 4096 });
  const m = PerCoreWalManager.create(config);
  const written = new Set<string>();
  const put = (c: number, key: Buffer, value: Buffer | null): void => {
    if (value === null) m.writer(c).appendDelete(key);
    else m.writer(c).appendPut(key, value);
    written.add(`${c}/${key.toString('hex')}/${value === null ? '-' : value.toString('hex')}`);
  };
  const withCheckpoint = rng.bool(0.5);
  const coord = withCheckpoint ? PerCoreCheckpointCoordinator.create(m, CheckpointStore.open({ checkpointDir: CKPT, fs: disk })) : null;
  for (let i = rng.range(3, 12); i > 0; i--) {
    const c = rng.int(2);
    put(c, rng.bytes(rng.range(1, 4)), rng.bool(0.8) ? rng.bytes(rng.int(40)) : null);
    if (rng.bool(0.2)) m.advanceEpoch();
    if (coord !== null && i === 4) coord.createCheckpointNoTruncate(1n);
  }
  m.syncAll();
  m.close();
  const originals = [0, 1].map((c) => disk.fileContents(`${WAL}/wal-${c}.log`));
  let recovered = 0;
  for (let i = 0; i < options.inputs; i++) {
    const which = rng.int(3);
    let fixed = false;
    const inputs = originals.map((o, c) => {
      if (which !== 2 && which !== c) return o;
      const r = mutate(rng, o, originals, true);
      fixed ||= r.fixed;
      return r.out;
    });
    inputs.forEach((b, c) => disk.setFileContents(`${WAL}/wal-${c}.log`, b));
    const mode = rng.pick(RECOVERY_MODES);
    const fail = (msg: string): never => {
      throw new TortureFailure('recovery-fuzz', options.seed,
        `input #${i} (${mode}): ${msg}\n  wal-0 (${inputs[0]!.length} B): ${inputs[0]!.toString('hex')}\n  wal-1 (${inputs[1]!.length} B): ${inputs[1]!.toString('hex')}`);
    };
    const t0 = performance.now();
    try {
      const rec = new PerCoreRecoveryManager(config, { checkpointDir: CKPT, fs: disk, mode, onWarning: () => {} }).recover();
      recovered++;
      // A CRC fix-up makes a mutated record valid: then only typed results are required.
      for (const ch of fixed ? [] : rec.stateChanges) {
        const id = `${ch.coreId}/${Buffer.from(ch.key).toString('hex')}/${ch.value === null ? '-' : Buffer.from(ch.value).toString('hex')}`;
        if (!written.has(id)) fail(`replayed a change that was never written: ${id}`);
      }
    } catch (e) {
      if (e instanceof TortureFailure) throw e;
      if (!(e instanceof PerCoreWalError)) fail(`threw ${String((e as Error)?.stack ?? e)}`);
    }
    const took = performance.now() - t0;
    if (took > 1000) fail(`took ${took.toFixed(0)} ms`);
  }
  return { inputs: options.inputs, recovered };
}

export const recoveryFuzzSuite: TortureSuite = {
  name: 'recovery-fuzz',
  run: (seed): SeedResult => ({ iterations: runRecoveryFuzz({ seed, inputs: 1000 }).inputs, crashes: 0 }),
};
