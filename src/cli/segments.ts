import { readdirSync, statSync, type Stats } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { CliError } from './errors.js';

export const DEFAULT_PATTERN = 'wal-{core_id}.log';
const PLACEHOLDER = '{core_id}';

/** One segment file found on disk. */
export interface SegmentRef {
  coreId: number;
  path: string;
  /** Size when it was listed; progress totals are computed from it. */
  size: number;
}

/** Compiles a segment pattern such as `wal-{core_id}.log` into a file-name matcher. */
export function patternMatcher(pattern: string): (name: string) => number | null {
  const at = pattern.indexOf(PLACEHOLDER);
  if (at < 0 || pattern.indexOf(PLACEHOLDER, at + 1) >= 0) {
    throw new CliError('USAGE', `--pattern must contain ${PLACEHOLDER} exactly once, got "${pattern}"`);
  }
  if (pattern.includes('/') || pattern.includes('\\')) {
    throw new CliError('USAGE', `--pattern names a file inside the directory and cannot contain a path separator, got "${pattern}"`);
  }
  const esc = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  // Core ids are written without leading zeros by PerCoreWalConfig, so "01" is not core 1.
  const re = new RegExp(`^${esc(pattern.slice(0, at))}(0|[1-9][0-9]{0,4})${esc(pattern.slice(at + PLACEHOLDER.length))}$`);
  return (name) => {
    const m = re.exec(name);
    if (m === null) return null;
    const id = Number(m[1]);
    return id <= 0xffff ? id : null;
  };
}

function statOrThrow(path: string): Stats {
  try {
    return statSync(path);
  } catch (e) {
    if ((e as { code?: string }).code === 'ENOENT') throw new CliError('NOT_FOUND', `${path} does not exist`, { path, cause: e });
    throw e;
  }
}

/** Every segment of `dir` matching `pattern`, by core id. */
export function findSegments(dir: string, pattern: string): SegmentRef[] {
  const match = patternMatcher(pattern);
  const abs = resolve(dir);
  if (!statOrThrow(abs).isDirectory()) throw new CliError('NOT_A_DIRECTORY', `${dir} is not a directory`, { path: dir });
  const out: SegmentRef[] = [];
  for (const name of readdirSync(abs)) {
    const coreId = match(name);
    if (coreId === null) continue;
    const path = join(abs, name);
    const st = statSync(path);
    if (st.isFile()) out.push({ coreId, path, size: st.size });
  }
  return out.sort((a, b) => a.coreId - b.coreId);
}

/** A directory's segments, or the one segment a file path names (its core id comes from its name). */
export function resolveTarget(target: string, pattern: string): { dir: string; segments: SegmentRef[] } {
  const abs = resolve(target);
  const st = statOrThrow(abs);
  if (st.isDirectory()) return { dir: abs, segments: findSegments(abs, pattern) };
  const coreId = patternMatcher(pattern)(basename(abs));
  if (coreId === null) {
    throw new CliError('USAGE', `cannot tell the core of ${target} from its name: it does not match the pattern "${pattern}" (pass --pattern)`, { path: target });
  }
  return { dir: dirname(abs), segments: [{ coreId, path: abs, size: st.size }] };
}
