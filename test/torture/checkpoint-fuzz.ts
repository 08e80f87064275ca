import { crc32c, CheckpointStore, PerCoreWalError } from '../../src/index.js';
import { decodeCheckpointFile } from '../../src/checkpoint/files.js';
import { CHECKPOINT_HEADER_SIZE } from '../../src/checkpoint/format.js';
import { KvState } from '../../src/checkpoint/state.js';
import { Rng, SimDisk } from '../../src/testing/index.js';
import { AllocMeter, mutate } from './fuzz.js';
import { TortureFailure, type SeedResult, type TortureSuite } from './harness.js';

/**
 * Mutation fuzzing of checkpoint files: real full and incremental checkpoints written by
 * {@link CheckpointStore}, mutated (and sometimes with both CRCs recomputed so the
 * mutation reaches the meta and body decoders), fed to `decodeCheckpointFile`. Every
 * input must give metadata or a `CHECKPOINT_INVALID` error, allocate no more than the
 * file, and never a wrong state: a file that decodes without a CRC fix-up is byte for
 * byte one that was written, and its state is the one written.
 */

interface Seed { bytes: Buffer; state: Map<string, string> }

function buildSeeds(rng: Rng): Seed[] {
  const disk = new SimDisk();
  const store = CheckpointStore.open({ checkpointDir: '/ck', fs: disk, fullEvery: rng.range(1, 3), maxRetained: Infinity });
  const seeds: Seed[] = [];
  for (let id = 1n; id <= 8n; id++) {
    for (let i = rng.int(6); i > 0; i--) {
      if (rng.bool(0.75)) store.put(rng.bytes(rng.range(0, 6)), rng.bytes(rng.int(24)));
      else store.delete(rng.bytes(rng.range(0, 6)));
    }
    if (rng.bool(0.5)) store.setSourceOffset(rng.pick(['a', 'orders-0', 'é']), BigInt(rng.u32()) - 9n);
    if (rng.bool(0.3)) store.setWatermark(rng.bool(0.8) ? BigInt(rng.u32()) : null);
    const meta = store.createCheckpoint(id, { epoch: id * 2n, walPositions: [rng.int(999), rng.int(999)], nextSequences: [id, id + 1n] });
    const bytes = disk.readFileSync(meta.path);
    const state = new KvState();
    decodeCheckpointFile(bytes, meta.path, state);
    seeds.push({ bytes, state: dump(state) });
  }
  return seeds;
}

function dump(s: KvState): Map<string, string> {
  return new Map([...s.map].map(([k, v]) => [k, Buffer.from(v).toString('hex')]));
}

/** Recomputes the body CRC and the header CRC (header bytes 0..36, then the meta section). */
function fixCrcs(b: Buffer): boolean {
  if (b.length < CHECKPOINT_HEADER_SIZE) return false;
  const metaLen = b.readUInt32LE(12);
  const start = CHECKPOINT_HEADER_SIZE + metaLen;
  if (start > b.length) return false;
  b.writeUInt32LE(crc32c(b, start, b.length), 32);
  b.writeUInt32LE(crc32c(b, CHECKPOINT_HEADER_SIZE, start, crc32c(b, 0, 36)), 36);
  return true;
}

export function runCheckpointFuzz(options: { seed: number; inputs: number }): { inputs: number; decoded: number } {
  const rng = new Rng(options.seed);
  const seeds = buildSeeds(rng);
  const all = seeds.map((s) => s.bytes);
  const meter = new AllocMeter();
  let decoded = 0;
  meter.install();
  try {
    for (let i = 0; i < options.inputs; i++) {
      const seed = rng.pick(seeds);
      const { out } = mutate(rng, seed.bytes, all, false);
      const fixed = rng.bool(0.3) && fixCrcs(out);
      const fail = (m: string): never => {
        throw new TortureFailure('checkpoint-fuzz', options.seed, `input #${i}${fixed ? ' (CRCs fixed up)' : ''}: ${m}\n  input (${out.length} bytes): ${out.subarray(0, 512).toString('hex')}`);
      };
      const state = new KvState();
      meter.reset();
      try {
        decodeCheckpointFile(out, '/ck/fuzz', state);
      } catch (e) {
        if (!(e instanceof PerCoreWalError) || e.code !== 'CHECKPOINT_INVALID') fail(`threw ${String((e as Error)?.stack ?? e)}`);
        continue;
      } finally {
        if (meter.largest > out.length || meter.total > 4 * out.length + 4096) fail(`allocated ${meter.total} bytes (largest ${meter.largest}) for ${out.length}`);
      }
      decoded++;
      if (!fixed) {
        const same = seeds.find((s) => s.bytes.equals(out));
        if (same === undefined) return fail('a mutated file decoded although its CRCs were not fixed up');
        const got = dump(state);
        if (got.size !== same.state.size || [...got].some(([k, v]) => same.state.get(k) !== v)) fail('a written checkpoint decoded to another state');
      }
    }
  } finally {
    meter.uninstall();
  }
  return { inputs: options.inputs, decoded };
}

export const checkpointFuzzSuite: TortureSuite = {
  name: 'checkpoint-fuzz',
  run: (seed): SeedResult => ({ iterations: runCheckpointFuzz({ seed, inputs: 5000 }).inputs, crashes: 0 }),
};
