import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { tempDir } from './tmp.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Runs `fn` with a directory on a freshly mounted tmpfs of `size` (e.g. '64k'), so that
 * writes run out of space; skips the test where mounting is not allowed (needs root).
 */
export async function withSmallTmpfs(t: TestContext, size: string, fn: (mnt: string) => Promise<void>): Promise<void> {
  const mnt = join(tempDir(), 'small');
  execFileSync('mkdir', [mnt]);
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', mnt], { stdio: 'ignore' });
  } catch {
    t.skip('cannot mount a small tmpfs here (needs root)');
    return;
  }
  try {
    await fn(mnt);
  } finally {
    // The kernel drops a closed ring's file references asynchronously.
    let unmounted = false;
    for (let i = 0; i < 50 && !unmounted; i++) {
      try { execFileSync('umount', [mnt], { stdio: 'ignore' }); unmounted = true; } catch { await sleep(20); }
    }
    if (!unmounted) execFileSync('umount', ['-l', mnt]);
  }
}
