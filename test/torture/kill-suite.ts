import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Rng } from '../../src/testing/index.js';
import type { TortureSuite } from './harness.js';
import { killRound, type KillTarget } from './kill.js';

const MODES = ['writer', 'manager', 'checkpoint', 'group', 'pool'] as const;
const BACKENDS = ['sync', 'threadpool', 'uring'] as const;

/**
 * Real SIGKILLs for the long torture run: each seed is one kill, the kinds of child taking
 * turns (bare writer, manager, manager with checkpoints, group commit, worker pool). Each
 * kind resumes the log its previous kill left; every 40 kills of a kind it starts a fresh
 * one (with other cores, preallocation or backend), which keeps scans short. Kill timing
 * is real time, so a seed fixes the workload and the delay but not the exact byte the
 * child had reached.
 */
export function killSuite(): TortureSuite & { cleanup(): void } {
  // Made on first use, so that a run without kills leaves nothing behind.
  let root: string | null = null;
  let rounds = 0;
  return {
    name: 'kill',
    async run(seed: number) {
      root ??= mkdtempSync(join(tmpdir(), 'corewal-torture-kill-'));
      const mode = MODES[rounds % MODES.length]!;
      const gen = Math.floor(rounds / MODES.length / 40);
      rounds++;
      const d = join(root, `${mode}-${gen}`);
      mkdirSync(d, { recursive: true });
      const target: KillTarget = mode === 'writer' ? { mode, segment: join(d, 'wal-0.log') }
        : mode === 'manager' ? { mode, dir: join(d, 'wal'), cores: 1 + (gen % 4) }
          : mode === 'checkpoint' ? { mode, dir: d, cores: 1 + (gen % 3) }
            : mode === 'group' ? { mode, segment: join(d, 'wal-0.log'), backend: BACKENDS[gen % 3]! }
              : { mode, dir: d, workers: 1 + (gen % 3) };
      const rng = new Rng(seed);
      await killRound(target, seed, rng.range(50, 400), [0, 65536, 4 << 20][gen % 3]!);
      return { iterations: 1, crashes: 1 };
    },
    cleanup: () => { if (root !== null) rmSync(root, { recursive: true, force: true }); },
  };
}
