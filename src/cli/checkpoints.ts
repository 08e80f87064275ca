import { readdirSync, statSync } from 'node:fs';
import { basename, resolve } from 'node:path';
import { inspectCheckpointDir } from '../checkpoint/files.js';
import { CliError } from './errors.js';
import { formatBytes, table } from './format.js';

/**
 * A checkpoint directory as `inspect` and `verify` show it: every checkpoint file,
 * validated with its whole chain by the library's own `inspectCheckpointDir` (what
 * recovery would load), plus the temporary files a crash left behind.
 */

/** One checkpoint, JSON-ready: u64 values are decimal strings, sizes numbers. */
export interface CheckpointRow {
  id: string;
  file: string;
  path: string;
  /** True when the checkpoint loads: its file and every file it depends on validate. */
  valid: boolean;
  /** Why it does not load (naming the file and byte where the library knows them), or null. */
  error: string | null;
  /** The rest is null when even the header does not validate. */
  epoch: string | null;
  incremental: boolean | null;
  parentId: string | null;
  keys: number | null;
  changes: number | null;
  sizeBytes: number;
  created: string | null;
  walPositions: number[] | null;
}

export interface CheckpointListing {
  dir: string;
  exists: boolean;
  checkpoints: CheckpointRow[];
  /** `checkpoint-*.tmp` files: checkpoints a crash interrupted before their rename; recovery ignores them. */
  tempFiles: string[];
}

/** True for a directory, false when nothing is there; a file there is a usage error. */
export function checkpointDirExists(dir: string): boolean {
  const st = statSync(resolve(dir), { throwIfNoEntry: false });
  if (st !== undefined && !st.isDirectory()) throw new CliError('NOT_A_DIRECTORY', `${dir} is not a directory`, { path: dir });
  return st !== undefined;
}

/**
 * Lists and validates `dir`. A file where a directory should be is a usage error; so is a
 * missing directory with `mustExist` (a mistyped path must not pass a verification),
 * else it holds no checkpoints (as for recovery).
 */
export function listCheckpoints(dir: string, options: { mustExist?: boolean } = {}): CheckpointListing {
  const abs = resolve(dir);
  const exists = checkpointDirExists(dir);
  if (!exists && options.mustExist) throw new CliError('NOT_FOUND', `${dir} does not exist`, { path: dir });
  if (!exists) return { dir: abs, exists, checkpoints: [], tempFiles: [] };
  const checkpoints = inspectCheckpointDir(abs).map((r): CheckpointRow => {
    const m = r.metadata;
    let sizeBytes = m?.sizeBytes ?? 0;
    if (m === null) {
      try { sizeBytes = statSync(r.path).size; } catch { /* removed meanwhile: size 0 */ }
    }
    return {
      id: String(r.id), file: basename(r.path), path: r.path, valid: r.valid, error: r.error,
      epoch: m === null ? null : String(m.epoch),
      incremental: m?.isIncremental ?? null,
      parentId: m === null || m.parentId === null ? null : String(m.parentId),
      keys: m?.keyCount ?? null,
      changes: m?.changeCount ?? null,
      sizeBytes,
      created: m === null ? null : new Date(Number(m.timestamp)).toISOString(),
      walPositions: m?.walPositions ?? null,
    };
  });
  const tempFiles = readdirSync(abs).filter((n) => n.startsWith('checkpoint-') && n.endsWith('.tmp')).sort();
  return { dir: abs, exists, checkpoints, tempFiles };
}

/** The newest checkpoint recovery would start from: the newest valid one. */
export function newestValid(listing: CheckpointListing): CheckpointRow | null {
  for (let i = listing.checkpoints.length - 1; i >= 0; i--) if (listing.checkpoints[i]!.valid) return listing.checkpoints[i]!;
  return null;
}

/** Text lines: a table of checkpoints, then each invalid one's reason and the leftovers. */
export function checkpointText(listing: CheckpointListing): string[] {
  if (!listing.exists) return [`checkpoints: ${listing.dir} does not exist (no checkpoints)`];
  const n = listing.checkpoints.length;
  const lines = [`checkpoints in ${listing.dir}: ${n === 0 ? 'none' : n}`];
  if (n > 0) {
    const rows = listing.checkpoints.map((c) => [
      c.id, c.file, c.epoch ?? '-', c.incremental === null ? '-' : c.incremental ? `incremental on ${c.parentId}` : 'full',
      c.keys === null ? '-' : String(c.keys), formatBytes(c.sizeBytes), c.valid ? 'valid' : 'INVALID',
    ]);
    lines.push('', table(['id', 'file', 'epoch', 'kind', 'keys', 'size', 'status'], rows,
      ['right', 'left', 'right', 'left', 'right', 'right', 'left']));
    const recoveryUses = newestValid(listing);
    lines.push('', recoveryUses === null ? 'recovery would use no checkpoint (none is valid)' : `recovery would start from checkpoint ${recoveryUses.id}`);
  }
  for (const c of listing.checkpoints) if (!c.valid) lines.push(`${c.file}: invalid: ${c.error}`);
  for (const t of listing.tempFiles) lines.push(`${t}: temporary file of a checkpoint a crash interrupted (ignored by recovery)`);
  return lines;
}
