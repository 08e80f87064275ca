import type { PerCoreWalEntry, WalOperation } from '../../src/index.js';
import type { CrashOptions, Rng, SimDisk } from '../../src/testing/index.js';

/** A violated invariant, carrying the seed that replays it. */
export class TortureFailure extends Error {
  constructor(readonly suite: string, readonly seed: number, message: string, readonly trail: readonly string[] = []) {
    super(`[${suite} seed=${seed}] ${message}\n  replay: npm run torture -- --suite ${suite} --seed ${seed}` +
      (trail.length > 0 ? `\n  last steps:\n    ${trail.slice(-25).join('\n    ')}` : ''));
    this.name = 'TortureFailure';
  }
}

/** Unwinds a crash driver's run whose simulated power was cut; never escapes its `run()`. */
export class PowerCutSignal extends Error {}

/**
 * A crash driver's failed check. After a power cut the process is dead: what it notices
 * afterwards does not matter, so it unwinds with a {@link PowerCutSignal}; otherwise the
 * check failed for real and throws a {@link TortureFailure} for `suite` and `seed`.
 */
export function failCrashRun(disk: SimDisk, suite: string, seed: number, message: string, trail: Trail): never {
  if (disk.afterPowerCut !== null) throw new PowerCutSignal();
  throw new TortureFailure(suite, seed, message, trail.all);
}

/** What one seed of a suite did. */
export interface SeedResult {
  /** Operations, inputs or kills performed. */
  iterations: number;
  /** Crashes (simulated or real) recovered from and verified. */
  crashes: number;
}

/** A randomized test that runs one seed at a time; `torture` runs them for minutes, `npm test` briefly. */
export interface TortureSuite {
  name: string;
  run(seed: number): SeedResult | Promise<SeedResult>;
}

/** A bounded log of recent steps, printed when a seed fails. */
export class Trail {
  private readonly lines: string[] = [];
  constructor(private readonly max = 200) {}
  add(line: string): void {
    this.lines.push(line);
    if (this.lines.length > this.max) this.lines.splice(0, this.lines.length - this.max);
  }
  get all(): readonly string[] { return this.lines; }
}

export function sameBytes(a: Uint8Array | undefined, b: Uint8Array | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

export function sameOp(a: WalOperation, b: WalOperation): boolean {
  if (a.type !== b.type) return false;
  switch (a.type) {
    case 'put': return b.type === 'put' && sameBytes(a.key, b.key) && sameBytes(a.value, b.value);
    case 'delete': return b.type === 'delete' && sameBytes(a.key, b.key);
    case 'checkpoint': return b.type === 'checkpoint' && a.id === b.id;
    case 'epochBarrier': return b.type === 'epochBarrier' && a.epoch === b.epoch;
    case 'commit': {
      if (b.type !== 'commit' || a.watermark !== b.watermark || a.offsets.size !== b.offsets.size) return false;
      for (const [k, v] of a.offsets) if (b.offsets.get(k) !== v) return false;
      return true;
    }
  }
}

export function describeEntry(e: PerCoreWalEntry): string {
  const op = e.operation;
  const body = op.type === 'put' ? `${Buffer.from(op.key).toString('hex')}=${op.value.length}B`
    : op.type === 'delete' ? Buffer.from(op.key).toString('hex')
      : op.type === 'checkpoint' ? String(op.id)
        : op.type === 'epochBarrier' ? String(op.epoch)
          : `${op.offsets.size} offsets wm=${op.watermark}`;
  return `core ${e.coreId} seq ${e.sequence} epoch ${e.epoch} ts ${e.timestampNs} ${op.type}(${body})`;
}

/**
 * Crash options drawn per crash: mostly the defaults, sometimes an extreme (every write
 * torn, everything reordered, directory entries always dropped), so that rare shapes of
 * crash states come up often enough.
 */
export function randomCrashOptions(rng: Rng): CrashOptions {
  if (rng.bool(0.5)) return {};
  return {
    tear: rng.pick([0, 0.5, 1]),
    reorder: rng.pick([0, 0.25, 1]),
    zeroExtend: rng.pick([0, 0.25, 1]),
    keepDirOps: rng.pick([0, 0.5, 1]),
    pageTear: rng.pick([0, 0.3, 1]),
    pageSize: rng.pick([512, 4096]),
  };
}
