import { constants as fsConstants } from 'node:fs';
import { posix } from 'node:path';
import type { WalFs } from '../io/fs.js';
import { FsFaultInjector, type FsFaultHandle, type FsFaultRule, type FsOp } from './faults.js';
import { Rng } from './rng.js';
import { systemError, type FsFaultCode } from './system-error.js';

/** Growable byte contents of one file. */
class Bytes {
  buf: Buffer;
  len: number;
  constructor(buf: Buffer = Buffer.alloc(0), len = buf.length) {
    this.buf = buf;
    this.len = len;
  }
  clone(): Bytes {
    return new Bytes(Buffer.from(this.buf.subarray(0, this.len)));
  }
  private room(n: number): void {
    if (n <= this.buf.length) return;
    const next = Buffer.alloc(Math.max(n, this.buf.length * 2, 256));
    this.buf.copy(next, 0, 0, this.len);
    this.buf = next;
  }
  write(off: number, data: Uint8Array): void {
    const end = off + data.length;
    this.room(end);
    // Bytes between the old end and `off` read as zeros (a hole).
    if (off > this.len) this.buf.fill(0, this.len, off);
    this.buf.set(data, off);
    if (end > this.len) this.len = end;
  }
  truncate(n: number): void {
    if (n > this.len) {
      this.room(n);
      this.buf.fill(0, this.len, n);
    }
    this.len = n;
  }
  view(): Buffer {
    return this.buf.subarray(0, this.len);
  }
}

type FileOp = { kind: 'write'; off: number; data: Buffer } | { kind: 'truncate'; len: number };

function applyOp(b: Bytes, op: FileOp): void {
  if (op.kind === 'write') b.write(op.off, op.data);
  else b.truncate(op.len);
}

class Inode {
  /** What reads see: durable contents plus every pending operation. */
  live: Bytes;
  /** What survives a crash for certain. */
  durable: Bytes;
  /** Operations since the last sync, oldest first. */
  pending: FileOp[] = [];
  constructor(readonly id: number, contents: Bytes) {
    this.live = contents;
    this.durable = contents.clone();
  }
}

type Node = { type: 'file'; ino: number } | { type: 'dir' };

type DirOp =
  | { dir: string; kind: 'set'; name: string; node: Node }
  | { dir: string; kind: 'delete'; name: string }
  | { dir: string; kind: 'rename'; from: string; to: string };

interface OpenFile {
  ino: number;
  path: string;
  read: boolean;
  write: boolean;
  append: boolean;
  /** Directory handle (for fsync of a directory opened with openSync). */
  dir: boolean;
  cursor: number;
}

/** What every call of a {@link SimDisk} throws once its power was cut ({@link SimDisk.powerCut}). */
export class SimPowerLoss extends Error {
  readonly code = 'SIM_POWER_LOSS';
  constructor(readonly op: string, readonly path?: string) {
    super(`simulated power loss at ${op}${path !== undefined ? ` on ${path}` : ''}`);
    this.name = 'SimPowerLoss';
  }
}

/** How a {@link SimDisk} behaves; every field is optional. */
export interface SimDiskOptions {
  /** Seed of the disk's own randomness (partial writes of faults). Default 1. */
  seed?: number;
  /** Total bytes the files may hold; a write past it is short or fails with ENOSPC. Default unlimited. */
  capacity?: number;
  /**
   * What a failed fsync/fdatasync does to the file's unsynced writes. `forget` (default)
   * models Linux: the dirty pages are marked clean and never written, so a later fsync
   * that succeeds does not bring them back. `keep` leaves them pending.
   */
  syncFailure?: 'forget' | 'keep';
  /** When true, `mkdirSync` is a pending entry of the parent like a file creation. Default false: durable at once. */
  volatileMkdir?: boolean;
}

/** Knobs of one {@link SimDisk.crash}; probabilities in [0, 1]. */
export interface CrashOptions {
  /** Chance that the first unsynced write not kept is torn (a prefix of it persisted). Default 0.5. */
  tear?: number;
  /** Chance that, per file, later unsynced writes persist out of order past the kept prefix. Default 0.25. */
  reorder?: number;
  /** Chance that a torn write that extended the file leaves its full length, the unwritten part zeros. Default 0.25. */
  zeroExtend?: number;
  /** Chance per directory that its unsynced entry operations are all kept; otherwise a random prefix. Default 0.5. */
  keepDirOps?: number;
  /**
   * Chance that a torn write keeps a random subset of its pages instead of a prefix, as
   * writeback of one large write can persist its pages in any order. Default 0.3.
   */
  pageTear?: number;
  /** Page size for `pageTear`, in bytes. Default 4096. */
  pageSize?: number;
}

/** What a crash did, for messages when a check fails. */
export interface CrashReport {
  files: { path: string; pending: number; kept: number; torn: boolean; reordered: number }[];
  dirOpsPending: number;
  dirOpsKept: number;
}

/**
 * A disk in memory that implements {@link WalFs}, for crash and fault testing.
 *
 * Every file has durable contents and an ordered list of unsynced writes and truncates;
 * `fdatasyncSync`/`fsyncSync` make a file's list durable. Creations, renames and unlinks
 * are durable only once `fsyncDir` of their directory has run. {@link SimDisk.crash}
 * returns the disk as a power failure could leave it: per file a random prefix of the
 * unsynced operations, perhaps the next write torn at a random byte, perhaps later writes
 * persisted out of order (as page-cache writeback does), and per directory a random
 * prefix of the unsynced entry operations. {@link SimDisk.injectFault} fails chosen calls
 * with errors shaped like Node's `SystemError`. Everything is deterministic given the seeds.
 *
 * @example
 * ```ts
 * import { CoreWalWriter, scanSegment } from 'corewal';
 * import { SimDisk } from 'corewal/testing';
 *
 * const disk = new SimDisk();
 * disk.mkdirSync('/wal', { recursive: true });
 * const w = CoreWalWriter.create(0, '/wal/wal-0.log', { fs: disk, preallocate: 0 });
 * w.appendPut(Buffer.from('k'), Buffer.from('v'));
 * w.sync();
 * w.appendPut(Buffer.from('k2'), Buffer.from('v2'));
 * w.flush();                                          // written, never synced
 * const after = disk.crash(7);                        // one possible post-crash disk
 * const scan = scanSegment(0, '/wal/wal-0.log', { fs: after });
 * // scan.entries is 1 or 2, never 0; the second is whole or absent
 *
 * disk.injectFault({ op: 'fdatasyncSync', code: 'EIO' });  // next fdatasync fails with EIO
 * ```
 */
export class SimDisk implements WalFs {
  private readonly opts: Required<Omit<SimDiskOptions, 'capacity'>> & { capacity: number };
  private readonly rng: Rng;
  private readonly faults = new FsFaultInjector();
  private inodes = new Map<number, Inode>();
  private nextIno = 1;
  /** The namespace as calls see it. */
  private live = new Map<string, Node>([['/', { type: 'dir' }]]);
  /** The namespace a crash starts from. */
  private durableNs = new Map<string, Node>([['/', { type: 'dir' }]]);
  private dirOps: DirOp[] = [];
  private fds = new Map<number, OpenFile>();
  private nextFd = 100;
  private cut: { at: number; rng: Rng; options: CrashOptions; result: SimDisk | null } | null = null;
  /** Report of the crash that produced this disk, if any. */
  lastCrash: CrashReport | null = null;

  constructor(options: SimDiskOptions = {}) {
    this.opts = {
      seed: options.seed ?? 1,
      capacity: options.capacity ?? Infinity,
      syncFailure: options.syncFailure ?? 'forget',
      volatileMkdir: options.volatileMkdir ?? false,
    };
    this.rng = new Rng(this.opts.seed);
  }

  // ---- fault injection ------------------------------------------------------------

  /**
   * Fails calls matching `rule` with an error shaped like Node's SystemError.
   * @example
   * ```ts
   * disk.injectFault({ op: 'writeSync', nth: 3, code: 'ENOSPC' }); // the 3rd write fails
   * disk.injectFault({ op: 'fdatasyncSync', path: /wal-1/, count: Infinity });
   * ```
   */
  injectFault(rule: FsFaultRule): FsFaultHandle {
    return this.faults.inject(rule);
  }

  /** Removes every fault rule. */
  clearFaults(): void {
    this.faults.clear();
  }

  /** Calls made so far (of one method, or all). */
  callCount(op?: FsOp): number {
    return this.faults.callCount(op);
  }

  /**
   * Cuts the power after `calls` more calls: the next call and every later one throw
   * {@link SimPowerLoss}, and {@link SimDisk.afterPowerCut} holds the disk a crash at that
   * moment left. Lets a test crash in the middle of anything (an open, a truncate, a
   * checkpoint) rather than only between its own steps.
   *
   * @example
   * ```ts
   * disk.powerCut(rng.int(200), rng);
   * try { runWorkload(disk); } catch (e) { if (disk.afterPowerCut === null) throw e; }
   * const survivor = disk.afterPowerCut ?? disk.crash(rng);
   * ```
   */
  powerCut(calls: number, rngOrSeed: Rng | number, options: CrashOptions = {}): void {
    const rng = typeof rngOrSeed === 'number' ? new Rng(rngOrSeed) : rngOrSeed;
    this.cut = { at: this.faults.callCount() + Math.max(0, calls), rng, options, result: null };
  }

  /** The post-crash disk once an armed {@link SimDisk.powerCut} has happened, else null. */
  get afterPowerCut(): SimDisk | null {
    return this.cut?.result ?? null;
  }

  private enter(op: FsOp, path: string | undefined, extra?: { length?: number; position?: number }): FsFaultRule | null {
    const cut = this.cut;
    if (cut !== null && this.faults.callCount() >= cut.at) {
      cut.result ??= this.crash(cut.rng, cut.options);
      throw new SimPowerLoss(op, path);
    }
    return this.faults.check(op, path, extra);
  }

  private fault(op: FsOp, path: string | undefined, syscall: string, extra?: { length?: number; position?: number }): FsFaultRule | null {
    const rule = this.enter(op, path, extra);
    if (rule !== null && !(rule.partial && (op === 'writeSync' || op === 'writevSync'))) {
      throw systemError(rule.code ?? 'EIO', syscall, path);
    }
    return rule;
  }

  // ---- crash ----------------------------------------------------------------------

  /**
   * A new disk holding what a power failure at this moment could leave. This disk is not
   * changed, so one moment can be crashed many ways. Open fds do not carry over.
   */
  crash(rngOrSeed: Rng | number, options: CrashOptions = {}): SimDisk {
    const rng = typeof rngOrSeed === 'number' ? new Rng(rngOrSeed) : rngOrSeed;
    const pTear = options.tear ?? 0.5;
    const pReorder = options.reorder ?? 0.25;
    const pZero = options.zeroExtend ?? 0.25;
    const pKeepDir = options.keepDirOps ?? 0.5;
    const pPages = options.pageTear ?? 0.3;
    const pageSize = options.pageSize ?? 4096;
    const report: CrashReport = { files: [], dirOpsPending: this.dirOps.length, dirOpsKept: 0 };

    // Directory entries: per directory, every unsynced operation or a random prefix of them.
    const ns = new Map(this.durableNs);
    const byDir = new Map<string, DirOp[]>();
    for (const op of this.dirOps) {
      let l = byDir.get(op.dir);
      if (l === undefined) byDir.set(op.dir, (l = []));
      l.push(op);
    }
    const kept: DirOp[] = [];
    for (const ops of byDir.values()) {
      const n = rng.bool(pKeepDir) ? ops.length : rng.int(ops.length + 1);
      for (let i = 0; i < n; i++) kept.push(ops[i]!);
    }
    // Apply in the original order (ops of different directories are independent).
    const order = new Map(this.dirOps.map((op, i) => [op, i]));
    kept.sort((a, b) => order.get(a)! - order.get(b)!);
    for (const op of kept) applyDirOp(ns, op);
    report.dirOpsKept = kept.length;
    pruneOrphans(ns);

    const out = new SimDisk({ ...this.opts, capacity: this.opts.capacity, seed: rng.u32() });
    out.durableNs = ns;
    out.live = new Map(ns);
    const pathOf = new Map<number, string>();
    for (const [p, node] of ns) if (node.type === 'file' && !pathOf.has(node.ino)) pathOf.set(node.ino, p);

    for (const [ino, path] of [...pathOf].sort((a, b) => a[0] - b[0])) {
      const src = this.inodes.get(ino)!;
      const data = src.durable.clone();
      const ops = src.pending;
      const n = ops.length === 0 ? 0 : rng.bool(0.2) ? ops.length : rng.bool(0.2) ? 0 : rng.int(ops.length + 1);
      for (let i = 0; i < n; i++) applyOp(data, ops[i]!);
      let torn = false;
      let reordered = 0;
      if (n < ops.length) {
        const next = ops[n]!;
        if (next.kind === 'write' && next.data.length > 0 && rng.bool(pTear)) {
          torn = true;
          const end = next.off + next.data.length;
          if (end > data.len && rng.bool(pZero)) data.truncate(end);
          if (rng.bool(pPages)) {
            // Pages of the write (aligned to file offsets) persist independently.
            for (let p = next.off - (next.off % pageSize); p < end; p += pageSize) {
              if (!rng.bool(0.5)) continue;
              const from = Math.max(p, next.off), to = Math.min(p + pageSize, end);
              data.write(from, next.data.subarray(from - next.off, to - next.off));
            }
          } else {
            data.write(next.off, next.data.subarray(0, rng.int(next.data.length)));
          }
        }
        if (rng.bool(pReorder)) {
          for (let i = n + 1; i < ops.length; i++) {
            const op = ops[i]!;
            if (op.kind !== 'write' || !rng.bool(0.5)) continue;
            reordered++;
            data.write(op.off, rng.bool(0.7) ? op.data : op.data.subarray(0, rng.int(op.data.length)));
          }
        }
      }
      report.files.push({ path, pending: ops.length, kept: n, torn, reordered });
      out.inodes.set(ino, new Inode(ino, data));
    }
    // Keep the numbering apart from the crashed disk's, for readable reports.
    out.nextIno = this.nextIno;
    out.lastCrash = report;
    return out;
  }

  /** True when nothing is waiting for a sync: a crash now could change nothing. */
  isQuiescent(): boolean {
    if (this.dirOps.length > 0) return false;
    for (const i of this.inodes.values()) if (i.pending.length > 0) return false;
    return true;
  }

  // ---- inspection (not part of WalFs) ----------------------------------------------

  /** The live contents of a file, as a copy. */
  fileContents(path: string): Buffer {
    return Buffer.from(this.inodeAt(this.norm(path), 'open').live.view());
  }

  /** Replaces a file's contents durably (for fuzzing and corruption tests). Creates it if needed. */
  setFileContents(path: string, data: Uint8Array): void {
    const p = this.norm(path);
    const node = this.live.get(p);
    if (node === undefined) {
      this.requireParentDir(p, 'open');
      const ino = this.newInode();
      this.live.set(p, { type: 'file', ino });
      this.durableNs.set(p, { type: 'file', ino });
    } else if (node.type !== 'file') {
      throw systemError('EISDIR', 'open', p);
    }
    const inode = this.inodeAt(p, 'open');
    inode.live = new Bytes(Buffer.from(data));
    inode.durable = inode.live.clone();
    inode.pending = [];
  }

  /** Paths of every file, sorted. */
  listFiles(): string[] {
    return [...this.live].filter(([, n]) => n.type === 'file').map(([p]) => p).sort();
  }

  /** Bytes held by all files (live). */
  usedBytes(): number {
    let n = 0;
    for (const i of this.inodes.values()) n += i.live.len;
    return n;
  }

  // ---- WalFs: namespace ------------------------------------------------------------

  private norm(path: string): string {
    if (typeof path !== 'string' || path.length === 0) throw systemError('ENOENT', 'open', String(path));
    return posix.resolve('/', path);
  }

  private newInode(): number {
    const ino = this.nextIno++;
    this.inodes.set(ino, new Inode(ino, new Bytes()));
    return ino;
  }

  private inodeAt(p: string, syscall: string): Inode {
    const node = this.live.get(p);
    if (node === undefined) throw systemError('ENOENT', syscall, p);
    if (node.type !== 'file') throw systemError('EISDIR', syscall, p);
    return this.inodes.get(node.ino)!;
  }

  private requireParentDir(p: string, syscall: string): void {
    const parent = this.live.get(posix.dirname(p));
    if (parent === undefined) throw systemError('ENOENT', syscall, p);
    if (parent.type !== 'dir') throw systemError('ENOTDIR', syscall, p);
  }

  private dirOp(op: DirOp): void {
    applyDirOp(this.live, op);
    this.dirOps.push(op);
  }

  existsSync(path: string): boolean {
    this.enter('existsSync', path);
    try {
      return this.live.has(this.norm(path));
    } catch {
      return false;
    }
  }

  statSync(path: string): { size: number; isDirectory(): boolean; isFile(): boolean } {
    const p = this.norm(path);
    this.fault('statSync', p, 'stat');
    const node = this.live.get(p);
    if (node === undefined) throw systemError('ENOENT', 'stat', p);
    const size = node.type === 'file' ? this.inodes.get(node.ino)!.live.len : 4096;
    const dir = node.type === 'dir';
    return { size, isDirectory: () => dir, isFile: () => !dir };
  }

  mkdirSync(path: string, options: { recursive?: boolean } = {}): void {
    const p = this.norm(path);
    this.fault('mkdirSync', p, 'mkdir');
    const existing = this.live.get(p);
    if (existing !== undefined) {
      if (options.recursive && existing.type === 'dir') return;
      throw systemError('EEXIST', 'mkdir', p);
    }
    const parent = posix.dirname(p);
    if (!this.live.has(parent)) {
      if (!options.recursive) throw systemError('ENOENT', 'mkdir', p);
      this.mkdirSync(parent, options);
    }
    this.requireParentDir(p, 'mkdir');
    const op: DirOp = { dir: parent, kind: 'set', name: p, node: { type: 'dir' } };
    if (this.opts.volatileMkdir) this.dirOp(op);
    else {
      applyDirOp(this.live, op);
      applyDirOp(this.durableNs, op);
    }
  }

  readdirSync(path: string): string[] {
    const p = this.norm(path);
    this.fault('readdirSync', p, 'scandir');
    const node = this.live.get(p);
    if (node === undefined) throw systemError('ENOENT', 'scandir', p);
    if (node.type !== 'dir') throw systemError('ENOTDIR', 'scandir', p);
    return childrenOf(this.live, p).map((c) => posix.basename(c)).sort();
  }

  renameSync(from: string, to: string): void {
    const a = this.norm(from), b = this.norm(to);
    this.fault('renameSync', a, 'rename');
    const node = this.live.get(a);
    if (node === undefined) throw systemError('ENOENT', 'rename', a);
    this.requireParentDir(b, 'rename');
    if (a === b) return;
    const target = this.live.get(b);
    if (target !== undefined) {
      if (target.type === 'dir' && node.type !== 'dir') throw systemError('EISDIR', 'rename', b);
      if (target.type !== 'dir' && node.type === 'dir') throw systemError('ENOTDIR', 'rename', b);
      if (target.type === 'dir' && childrenOf(this.live, b).length > 0) throw systemError('ENOTEMPTY', 'rename', b);
    }
    if (node.type === 'dir' && b.startsWith(a + '/')) throw systemError('EINVAL', 'rename', b);
    const da = posix.dirname(a), db = posix.dirname(b);
    if (da === db) this.dirOp({ dir: da, kind: 'rename', from: a, to: b });
    else {
      // Across directories each side becomes durable with its own directory's fsync.
      applyDirOp(this.live, { dir: db, kind: 'rename', from: a, to: b });
      this.dirOps.push({ dir: db, kind: 'set', name: b, node });
      if (node.type === 'dir') this.copySubtreeOps(a, b);
      this.dirOps.push({ dir: da, kind: 'delete', name: a });
    }
  }

  /** For a cross-directory rename of a directory: its children appear under the new name. */
  private copySubtreeOps(a: string, b: string): void {
    for (const [p, n] of this.durableNs) {
      if (p.startsWith(a + '/')) this.dirOps.push({ dir: posix.dirname(b + p.slice(a.length)), kind: 'set', name: b + p.slice(a.length), node: n });
    }
  }

  unlinkSync(path: string): void {
    const p = this.norm(path);
    this.fault('unlinkSync', p, 'unlink');
    const node = this.live.get(p);
    if (node === undefined) throw systemError('ENOENT', 'unlink', p);
    if (node.type === 'dir') throw systemError('EISDIR', 'unlink', p);
    this.dirOp({ dir: posix.dirname(p), kind: 'delete', name: p });
  }

  rmSync(path: string, options: { recursive?: boolean; force?: boolean } = {}): void {
    const p = this.norm(path);
    this.fault('rmSync', p, 'rm');
    const node = this.live.get(p);
    if (node === undefined) {
      if (options.force) return;
      throw systemError('ENOENT', 'rm', p);
    }
    if (node.type === 'dir') {
      if (!options.recursive) throw systemError('EISDIR', 'rm', p);
      if (p === '/') throw systemError('EINVAL', 'rm', p);
      // Children first, deepest first, as rm -r does.
      const below = [...this.live.keys()].filter((k) => k.startsWith(p + '/')).sort((x, y) => y.length - x.length);
      for (const k of below) this.dirOp({ dir: posix.dirname(k), kind: 'delete', name: k });
    }
    this.dirOp({ dir: posix.dirname(p), kind: 'delete', name: p });
  }

  readFileSync(path: string): Buffer {
    const p = this.norm(path);
    this.fault('readFileSync', p, 'open');
    return Buffer.from(this.inodeAt(p, 'open').live.view());
  }

  fsyncDir(path: string): void {
    const p = this.norm(path);
    this.fault('fsyncDir', p, 'fsync');
    const node = this.live.get(p);
    if (node === undefined) throw systemError('ENOENT', 'open', p);
    if (node.type !== 'dir') throw systemError('ENOTDIR', 'fsync', p);
    this.syncDir(p);
  }

  private syncDir(p: string): void {
    const rest: DirOp[] = [];
    for (const op of this.dirOps) {
      if (op.dir === p) applyDirOp(this.durableNs, op);
      else rest.push(op);
    }
    this.dirOps = rest;
  }

  // ---- WalFs: file descriptors -------------------------------------------------------

  openSync(path: string, flags: string | number, _mode?: number): number {
    const p = this.norm(path);
    this.fault('openSync', p, 'open');
    const f = parseFlags(flags);
    let node = this.live.get(p);
    if (node !== undefined && f.excl && f.create) throw systemError('EEXIST', 'open', p);
    if (node === undefined) {
      if (!f.create) throw systemError('ENOENT', 'open', p);
      this.requireParentDir(p, 'open');
      const ino = this.newInode();
      node = { type: 'file', ino };
      this.dirOp({ dir: posix.dirname(p), kind: 'set', name: p, node });
    }
    if (node.type === 'dir') {
      if (f.write) throw systemError('EISDIR', 'open', p);
      const fd = this.nextFd++;
      this.fds.set(fd, { ino: -1, path: p, read: true, write: false, append: false, dir: true, cursor: 0 });
      return fd;
    }
    const inode = this.inodes.get(node.ino)!;
    if (f.trunc && f.write && inode.live.len > 0) this.fileOp(inode, { kind: 'truncate', len: 0 });
    const fd = this.nextFd++;
    this.fds.set(fd, { ino: node.ino, path: p, read: f.read, write: f.write, append: f.append, dir: false, cursor: 0 });
    return fd;
  }

  private file(fd: number, syscall: string): OpenFile {
    const f = this.fds.get(fd);
    if (f === undefined) throw systemError('EBADF', syscall);
    return f;
  }

  private fileOp(inode: Inode, op: FileOp): void {
    applyOp(inode.live, op);
    inode.pending.push(op);
  }

  closeSync(fd: number): void {
    const f = this.file(fd, 'close');
    this.fault('closeSync', f.path, 'close');
    this.fds.delete(fd);
  }

  readSync(fd: number, buffer: Uint8Array, offset: number, length: number, position: number | null): number {
    const f = this.file(fd, 'read');
    this.fault('readSync', f.path, 'read', { length, position: position ?? f.cursor });
    if (f.dir) throw systemError('EISDIR', 'read', f.path);
    if (!f.read) throw systemError('EBADF', 'read', f.path);
    const data = this.inodes.get(f.ino)!.live;
    const at = position === null || position === undefined || position < 0 ? f.cursor : position;
    const n = Math.max(0, Math.min(length, data.len - at));
    if (n > 0) buffer.set(data.buf.subarray(at, at + n), offset);
    if (position === null || position === undefined || position < 0) f.cursor = at + n;
    return n;
  }

  writeSync(fd: number, buffer: Uint8Array, offset: number, length: number, position: number | null): number {
    return this.writeBytes(fd, 'writeSync', buffer.subarray(offset, offset + length), position);
  }

  writevSync(fd: number, buffers: readonly Uint8Array[], position: number | null): number {
    return this.writeBytes(fd, 'writevSync', Buffer.concat(buffers), position);
  }

  private writeBytes(fd: number, op: 'writeSync' | 'writevSync', data: Uint8Array, position: number | null): number {
    const f = this.file(fd, 'write');
    const inode = this.inodes.get(f.ino);
    const at = f.append && inode !== undefined ? inode.live.len : position === null || position === undefined || position < 0 ? f.cursor : position;
    const rule = this.fault(op, f.path, 'write', { length: data.length, position: at });
    if (f.dir || !f.write || inode === undefined) throw systemError('EBADF', 'write', f.path);
    let n = data.length;
    const growth = Math.max(0, at + n - inode.live.len);
    if (growth > 0 && this.opts.capacity !== Infinity) {
      const free = this.opts.capacity - this.usedBytes();
      if (growth > free) {
        // Linux writes what fits and reports a short count; ENOSPC only when nothing fits.
        n = Math.max(0, inode.live.len + Math.max(0, free) - at);
        if (n <= 0) throw systemError('ENOSPC', 'write', f.path);
      }
    }
    if (rule !== null) {
      const part = this.rng.int(n + 1);
      if (part > 0) this.fileOp(inode, { kind: 'write', off: at, data: Buffer.from(data.subarray(0, part)) });
      throw systemError(rule.code ?? 'EIO', 'write', f.path);
    }
    if (n > 0) this.fileOp(inode, { kind: 'write', off: at, data: Buffer.from(data.subarray(0, n)) });
    if (position === null || position === undefined || position < 0 || f.append) f.cursor = at + n;
    return n;
  }

  fdatasyncSync(fd: number): void {
    this.syncFd(fd, 'fdatasyncSync', 'fdatasync');
  }

  fsyncSync(fd: number): void {
    this.syncFd(fd, 'fsyncSync', 'fsync');
  }

  private syncFd(fd: number, op: 'fdatasyncSync' | 'fsyncSync', syscall: string): void {
    const f = this.file(fd, syscall);
    const rule = this.enter(op, f.path);
    if (rule !== null) {
      // fsyncgate: after a failed sync the kernel has dropped the dirty pages' error state;
      // the data may never reach the disk even if a later sync succeeds.
      if (!f.dir && this.opts.syncFailure === 'forget') this.inodes.get(f.ino)!.pending = [];
      throw systemError(rule.code ?? 'EIO', syscall, f.path);
    }
    if (f.dir) {
      this.syncDir(f.path);
      return;
    }
    const inode = this.inodes.get(f.ino)!;
    for (const o of inode.pending) applyOp(inode.durable, o);
    inode.pending = [];
  }

  ftruncateSync(fd: number, len: number): void {
    const f = this.file(fd, 'ftruncate');
    this.fault('ftruncateSync', f.path, 'ftruncate', { length: len });
    if (f.dir || !f.write) throw systemError('EINVAL', 'ftruncate', f.path);
    const inode = this.inodes.get(f.ino)!;
    if (len > inode.live.len && this.opts.capacity !== Infinity && len - inode.live.len > this.opts.capacity - this.usedBytes()) {
      throw systemError('ENOSPC', 'ftruncate', f.path);
    }
    this.fileOp(inode, { kind: 'truncate', len });
  }

  fstatSync(fd: number): { size: number } {
    const f = this.file(fd, 'fstat');
    this.fault('fstatSync', f.path, 'fstat');
    return { size: f.dir ? 4096 : this.inodes.get(f.ino)!.live.len };
  }
}

function childrenOf(ns: Map<string, Node>, dir: string): string[] {
  const prefix = dir === '/' ? '/' : dir + '/';
  const out: string[] = [];
  for (const k of ns.keys()) {
    if (k !== '/' && k.startsWith(prefix) && !k.slice(prefix.length).includes('/')) out.push(k);
  }
  return out;
}

function applyDirOp(ns: Map<string, Node>, op: DirOp): void {
  switch (op.kind) {
    case 'set':
      ns.set(op.name, op.node);
      return;
    case 'delete':
      ns.delete(op.name);
      for (const k of [...ns.keys()]) if (k.startsWith(op.name + '/')) ns.delete(k);
      return;
    case 'rename': {
      const node = ns.get(op.from);
      if (node === undefined) return;
      for (const k of [...ns.keys()]) if (k === op.to || k.startsWith(op.to + '/')) ns.delete(k);
      ns.delete(op.from);
      ns.set(op.to, node);
      for (const [k, n] of [...ns]) {
        if (k.startsWith(op.from + '/')) {
          ns.delete(k);
          ns.set(op.to + k.slice(op.from.length), n);
        }
      }
    }
  }
}

/** Entries whose directory did not survive are gone with it. */
function pruneOrphans(ns: Map<string, Node>): void {
  const paths = [...ns.keys()].sort((a, b) => a.length - b.length);
  for (const p of paths) {
    if (p === '/') continue;
    const parent = ns.get(posix.dirname(p));
    if (parent === undefined || parent.type !== 'dir') ns.delete(p);
  }
}

interface Flags { read: boolean; write: boolean; create: boolean; excl: boolean; trunc: boolean; append: boolean }

function parseFlags(flags: string | number): Flags {
  if (typeof flags === 'number') {
    const acc = flags & 3;
    return {
      read: acc === fsConstants.O_RDONLY || acc === fsConstants.O_RDWR,
      write: acc === fsConstants.O_WRONLY || acc === fsConstants.O_RDWR,
      create: (flags & fsConstants.O_CREAT) !== 0,
      excl: (flags & fsConstants.O_EXCL) !== 0,
      trunc: (flags & fsConstants.O_TRUNC) !== 0,
      append: (flags & fsConstants.O_APPEND) !== 0,
    };
  }
  const s = flags.replace('s', '');
  const plus = s.includes('+');
  const excl = s.includes('x');
  switch (s[0]) {
    case 'r': return { read: true, write: plus, create: false, excl: false, trunc: false, append: false };
    case 'w': return { read: plus, write: true, create: true, excl, trunc: true, append: false };
    case 'a': return { read: plus, write: true, create: true, excl, trunc: false, append: true };
    default: throw systemError('EINVAL' as FsFaultCode, 'open');
  }
}
