import { join } from 'node:path';
import { ioError, PerCoreWalError } from '../errors/errors.js';
import { realFs, type WalFs } from '../io/fs.js';
import {
  CHECKPOINT_HEADER_SIZE, decodeBody, decodeHeader, decodeMeta, FLAG_INCREMENTAL, type CheckpointMetadata,
} from './format.js';
import { KvState } from './state.js';

/**
 * Reading a checkpoint directory: naming, listing, validating and resolving incremental
 * chains. Shared by the store (which writes) and recovery (which only reads).
 */

const NAME_RE = /^checkpoint-(\d{20})\.cwc$/;
export const TMP_SUFFIX = '.tmp';

export function checkpointFileName(id: bigint): string {
  return `checkpoint-${id.toString().padStart(20, '0')}.cwc`;
}

export interface CheckpointFile {
  id: bigint;
  path: string;
}

/** Checkpoint files in `dir`, oldest id first. A missing directory holds none. */
export function listCheckpointFiles(dir: string, fs: WalFs): CheckpointFile[] {
  let names: string[];
  try {
    if (!fs.existsSync(dir)) return [];
    names = fs.readdirSync(dir);
  } catch (e) {
    throw ioError('readdir', e, dir);
  }
  const out: CheckpointFile[] = [];
  for (const n of names) {
    const m = NAME_RE.exec(n);
    if (m !== null) out.push({ id: BigInt(m[1]!), path: join(dir, n) });
  }
  return out.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

/** Leftover temporary files of checkpoints a crash interrupted. */
export function listTempFiles(dir: string, fs: WalFs): string[] {
  try {
    if (!fs.existsSync(dir)) return [];
    return fs.readdirSync(dir).filter((n) => n.startsWith('checkpoint-') && n.endsWith(TMP_SUFFIX)).map((n) => join(dir, n));
  } catch (e) {
    throw ioError('readdir', e, dir);
  }
}

function readAt(fs: WalFs, fd: number, buf: Uint8Array, at: number, path: string): number {
  let got = 0;
  while (got < buf.length) {
    let n: number;
    try {
      n = fs.readSync(fd, buf, got, buf.length - got, at + got);
    } catch (e) {
      throw ioError('read', e, path, at + got);
    }
    if (n <= 0) break;
    got += n;
  }
  return got;
}

/** Header and meta of one file, without reading its body. Throws `CHECKPOINT_INVALID` or `IO`. */
export function readCheckpointMeta(path: string, fs: WalFs): CheckpointMetadata {
  let fd: number;
  try {
    fd = fs.openSync(path, 'r');
  } catch (e) {
    if ((e as { code?: string }).code === 'ENOENT') {
      throw new PerCoreWalError('CHECKPOINT_NOT_FOUND', `checkpoint file ${path} does not exist`, { path, cause: e });
    }
    throw ioError('open', e, path);
  }
  try {
    let fileLen: number;
    try {
      fileLen = fs.fstatSync(fd).size;
    } catch (e) {
      throw ioError('fstat', e, path);
    }
    const head = Buffer.alloc(Math.min(CHECKPOINT_HEADER_SIZE, fileLen));
    readAt(fs, fd, head, 0, path);
    const h = decodeHeader(head, fileLen, path);
    // decodeHeader checked metaLength against the file's length: this allocation is bounded by it.
    const meta = Buffer.alloc(h.metaLength);
    if (readAt(fs, fd, meta, CHECKPOINT_HEADER_SIZE, path) !== h.metaLength) {
      throw new PerCoreWalError('CHECKPOINT_INVALID', `checkpoint file ${path} ended while reading its meta section`, { path, position: CHECKPOINT_HEADER_SIZE });
    }
    return decodeMeta(meta, 0, h, head, path, fileLen);
  } finally {
    try { fs.closeSync(fd); } catch { /* read-only descriptor: nothing was promised through it */ }
  }
}

/**
 * Reads and fully validates one file, feeding its records to `state`: a full checkpoint's
 * puts go straight in, an incremental one's puts and deletes apply on top.
 */
export function readCheckpointInto(path: string, fs: WalFs, state: KvState | null): CheckpointMetadata {
  let buf: Buffer;
  try {
    buf = fs.readFileSync(path);
  } catch (e) {
    if ((e as { code?: string }).code === 'ENOENT') {
      throw new PerCoreWalError('CHECKPOINT_NOT_FOUND', `checkpoint file ${path} does not exist`, { path, cause: e });
    }
    throw ioError('read', e, path);
  }
  return decodeCheckpointFile(buf, path, state);
}

/**
 * Validates a whole checkpoint file held in `buf` and feeds its records to `state` (null:
 * validate only). Any byte string yields metadata or a `CHECKPOINT_INVALID` error, and
 * nothing larger than the file is allocated.
 */
export function decodeCheckpointFile(buf: Buffer, path = '<buffer>', state: KvState | null = null): CheckpointMetadata {
  const h = decodeHeader(buf, buf.length, path);
  const meta = decodeMeta(buf, CHECKPOINT_HEADER_SIZE, h, buf, path, buf.length);
  const start = CHECKPOINT_HEADER_SIZE + h.metaLength;
  const map = state?.map;
  const sink = map === undefined
    ? { put(): void {}, delete(): void {} }
    : { put(k: string, v: Uint8Array): void { map.set(k, v); }, delete(k: string): void { map.delete(k); } };
  decodeBody(buf, start, buf.length, h, path, sink, (h.flags & FLAG_INCREMENTAL) !== 0);
  return meta;
}

export interface ResolvedCheckpoint {
  metadata: CheckpointMetadata;
  /** The chain from its full checkpoint to `metadata`, oldest first. */
  chain: CheckpointMetadata[];
  state: KvState;
}

/**
 * Loads checkpoint `id` with every checkpoint it depends on. Throws
 * `CHECKPOINT_INVALID` naming the broken link (bad file, missing parent, wrong key count).
 */
export function resolveCheckpoint(dir: string, fs: WalFs, id: bigint, files?: CheckpointFile[]): ResolvedCheckpoint {
  const byId = new Map((files ?? listCheckpointFiles(dir, fs)).map((f) => [f.id, f.path]));
  const path = byId.get(id);
  if (path === undefined) throw new PerCoreWalError('CHECKPOINT_NOT_FOUND', `checkpoint ${id} not found in ${dir}`, { path: dir });
  // Walk parents through headers first, so that a broken chain costs no body reads.
  const chain: CheckpointMetadata[] = [readCheckpointMeta(path, fs)];
  for (let m = chain[0]!; m.parentId !== null;) {
    const pp = byId.get(m.parentId);
    if (pp === undefined) {
      throw new PerCoreWalError('CHECKPOINT_INVALID', `checkpoint ${id} needs checkpoint ${m.parentId}, which is missing from ${dir}`, { path: m.path });
    }
    let parent: CheckpointMetadata;
    try {
      parent = readCheckpointMeta(pp, fs);
    } catch (e) {
      throw chained(e, id, m.parentId);
    }
    if (parent.epoch > m.epoch) {
      throw new PerCoreWalError('CHECKPOINT_INVALID', `checkpoint ${m.id} has a lower epoch (${m.epoch}) than its parent ${parent.id} (${parent.epoch})`, { path: m.path });
    }
    chain.unshift(parent);
    m = parent;
  }
  const state = new KvState();
  for (const m of chain) {
    try {
      readCheckpointInto(m.path, fs, state);
    } catch (e) {
      throw m.id === id ? e : chained(e, id, m.id);
    }
    if (state.size !== m.keyCount) {
      throw new PerCoreWalError('CHECKPOINT_INVALID',
        `checkpoint ${m.id} resolves to ${state.size} keys, its header says ${m.keyCount} (a parent was replaced?)`, { path: m.path });
    }
  }
  return { metadata: chain[chain.length - 1]!, chain, state };
}

function chained(e: unknown, id: bigint, parent: bigint): unknown {
  if (e instanceof PerCoreWalError && (e.code === 'CHECKPOINT_INVALID' || e.code === 'CHECKPOINT_NOT_FOUND')) {
    return new PerCoreWalError('CHECKPOINT_INVALID', `checkpoint ${id} depends on checkpoint ${parent}, which is invalid: ${e.message}`,
      { path: e.path, position: e.position, cause: e });
  }
  return e;
}

/**
 * The newest checkpoint that loads, skipping (and reporting through `warn`) every newer
 * one that fails validation. Null when there is none. I/O errors are thrown, not skipped:
 * a disk that fails to read is not a checkpoint that is invalid.
 */
export function loadNewestValid(dir: string, fs: WalFs, warn: (message: string) => void): ResolvedCheckpoint | null {
  const files = listCheckpointFiles(dir, fs);
  for (let i = files.length - 1; i >= 0; i--) {
    try {
      return resolveCheckpoint(dir, fs, files[i]!.id, files);
    } catch (e) {
      if (!(e instanceof PerCoreWalError) || (e.code !== 'CHECKPOINT_INVALID' && e.code !== 'CHECKPOINT_NOT_FOUND')) throw e;
      warn(`skipping checkpoint ${files[i]!.id}: ${e.message}${i > 0 ? '; falling back to an older one' : '; no older checkpoint'}`);
    }
  }
  return null;
}

/** One checkpoint file as {@link inspectCheckpointDir} found it. */
export interface CheckpointFileReport {
  id: bigint;
  path: string;
  /** Its metadata, when the header and meta section validate. */
  metadata: CheckpointMetadata | null;
  /** True when the checkpoint loads: its file and every file of its chain validate in full. */
  valid: boolean;
  /** Why it does not load, or null. */
  error: string | null;
}

/**
 * Every checkpoint file in `dir`, oldest first, each fully validated with its chain —
 * read-only (unlike `CheckpointStore.open`, which creates the directory and removes a
 * crash's temporary files). For tools: `corewal inspect` / `verify`.
 *
 * @example
 * ```ts
 * for (const c of inspectCheckpointDir('/data/checkpoints')) console.log(c.id, c.valid ? 'ok' : c.error);
 * ```
 */
export function inspectCheckpointDir(dir: string, fs: WalFs = realFs): CheckpointFileReport[] {
  const files = listCheckpointFiles(dir, fs);
  return files.map((f) => {
    let metadata: CheckpointMetadata | null = null;
    try {
      metadata = readCheckpointMeta(f.path, fs);
      resolveCheckpoint(dir, fs, f.id, files);
      return { id: f.id, path: f.path, metadata, valid: true, error: null };
    } catch (e) {
      if (!(e instanceof PerCoreWalError) || (e.code !== 'CHECKPOINT_INVALID' && e.code !== 'CHECKPOINT_NOT_FOUND')) throw e;
      return { id: f.id, path: f.path, metadata, valid: false, error: e.message };
    }
  });
}
