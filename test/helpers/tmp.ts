import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';

/** A fresh temporary directory on the real filesystem, removed when the test file ends. */
export function tempDir(prefix = 'corewal-test-'): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  after(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

export const b = (s: string): Buffer => Buffer.from(s, 'utf8');
