import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Rng } from '../../src/testing/index.js';
import type { TortureSuite } from './harness.js';
import { killRound, type KillTarget } from './kill.js';

/**
 * Real SIGKILLs for the long torture run: each seed is one kill of a child resuming a
 * segment that earlier kills left (a fresh segment every 40 kills keeps scans short).
 * Kill timing is real time, so a seed fixes the workload and the delay but not the exact
 * byte the child had reached.
 */
export function killSuite(): TortureSuite & { cleanup(): void } {
  // Made on first use, so that a run without kills leaves nothing behind.
  let root: string | null = null;
  let lane = 0;
  let rounds = 0;
  return {
    name: 'kill',
    async run(seed: number) {
      root ??= mkdtempSync(join(tmpdir(), 'corewal-torture-kill-'));
      if (rounds++ % 40 === 0) mkdirSync(join(root, String(++lane)));
      const rng = new Rng(seed);
      const preallocate = [0, 65536, 4 << 20][lane % 3]!;
      const d = join(root, String(lane));
      const backends = ['sync', 'threadpool', 'uring'] as const;
      const target: KillTarget = lane % 5 === 0 ? { mode: 'writer', segment: join(d, 'wal-0.log') }
        : lane % 5 === 1 ? { mode: 'manager', dir: join(d, 'wal'), cores: 1 + (lane % 4) }
          : lane % 5 === 2 ? { mode: 'checkpoint', dir: d, cores: 1 + (lane % 3) }
            : lane % 5 === 3 ? { mode: 'group', segment: join(d, 'wal-0.log'), backend: backends[lane % 3]! }
              : { mode: 'pool', dir: d, workers: 1 + (lane % 3) };
      await killRound(target, seed, rng.range(50, 400), preallocate);
      return { iterations: 1, crashes: 1 };
    },
    cleanup: () => { if (root !== null) rmSync(root, { recursive: true, force: true }); },
  };
}
