import * as nodeFs from 'node:fs';

/**
 * The synchronous file operations corewal's direct path, reader, manager and checkpoint
 * store use. The default is Node's `fs`; tests inject a simulated disk (see
 * `corewal/testing`) that keeps unsynced writes apart and can crash, or a layer that
 * fails chosen calls (EIO, ENOSPC) to prove that failures poison instead of lying.
 */
export interface WalFs {
  openSync(path: string, flags: string | number, mode?: number): number;
  closeSync(fd: number): void;
  readSync(fd: number, buffer: Uint8Array, offset: number, length: number, position: number): number;
  writeSync(fd: number, buffer: Uint8Array, offset: number, length: number, position: number): number;
  writevSync(fd: number, buffers: readonly Uint8Array[], position: number): number;
  fdatasyncSync(fd: number): void;
  fsyncSync(fd: number): void;
  ftruncateSync(fd: number, len: number): void;
  fstatSync(fd: number): { size: number };
  existsSync(path: string): boolean;
  statSync(path: string): { size: number; isDirectory(): boolean; isFile(): boolean };
  mkdirSync(path: string, options?: { recursive?: boolean }): void;
  readdirSync(path: string): string[];
  renameSync(from: string, to: string): void;
  unlinkSync(path: string): void;
  rmSync(path: string, options?: { recursive?: boolean; force?: boolean }): void;
  readFileSync(path: string): Buffer;
  /** fsync of a directory, so that creations, renames and unlinks in it are durable. */
  fsyncDir(path: string): void;
  /**
   * Optional: `fsyncSync` on another thread, for callers that must not stall theirs for
   * the milliseconds an fsync of a large file takes (a pool checkpoint on the event
   * loop). Without it, {@link fsyncOffThread} runs `fsyncSync`.
   */
  fsyncAsync?(fd: number): Promise<void>;
  /**
   * Optional: `fdatasyncSync` on another thread, for a worker that must go on appending
   * while a compaction's copy becomes durable. Without it, {@link fdatasyncOffThread}
   * runs `fdatasyncSync`.
   */
  fdatasyncAsync?(fd: number): Promise<void>;
  /**
   * Optional: `closeSync` on another thread. The last close of an unlinked file frees its
   * blocks (2–3 ms for 8 MB on ext4), which a compaction's finish need not wait for.
   */
  closeAsync?(fd: number): Promise<void>;
}

/** `fs.fsyncAsync` where the layer has it, else `fs.fsyncSync` (settled as a promise either way). */
export async function fsyncOffThread(fs: WalFs, fd: number): Promise<void> {
  if (fs.fsyncAsync !== undefined) return fs.fsyncAsync(fd);
  fs.fsyncSync(fd);
}

/** `fs.fdatasyncAsync` where the layer has it, else `fs.fdatasyncSync` (settled as a promise either way). */
export async function fdatasyncOffThread(fs: WalFs, fd: number): Promise<void> {
  if (fs.fdatasyncAsync !== undefined) return fs.fdatasyncAsync(fd);
  fs.fdatasyncSync(fd);
}

/**
 * Closes `fd` on another thread where the layer can (`fs.closeAsync`), else at once;
 * for a file whose contents nobody needs any more. Errors are ignored: nothing depends on them.
 */
export function closeOffThread(fs: WalFs, fd: number): void {
  if (fs.closeAsync !== undefined) {
    fs.closeAsync(fd).catch(() => {});
    return;
  }
  try { fs.closeSync(fd); } catch { /* nothing depends on it */ }
}

function fsyncDir(path: string): void {
  const fd = nodeFs.openSync(path, 'r');
  try {
    nodeFs.fsyncSync(fd);
  } finally {
    nodeFs.closeSync(fd);
  }
}

/** Node's own `fs`, as corewal uses it by default. */
export const realFs: WalFs = {
  openSync: (p, f, m) => nodeFs.openSync(p, f, m),
  closeSync: (fd) => nodeFs.closeSync(fd),
  readSync: (fd, b, o, l, p) => nodeFs.readSync(fd, b, o, l, p),
  writeSync: (fd, b, o, l, p) => nodeFs.writeSync(fd, b, o, l, p),
  writevSync: (fd, bs, p) => nodeFs.writevSync(fd, bs as Uint8Array[], p),
  fdatasyncSync: (fd) => nodeFs.fdatasyncSync(fd),
  fsyncSync: (fd) => nodeFs.fsyncSync(fd),
  ftruncateSync: (fd, l) => nodeFs.ftruncateSync(fd, l),
  fstatSync: (fd) => nodeFs.fstatSync(fd),
  existsSync: (p) => nodeFs.existsSync(p),
  statSync: (p) => nodeFs.statSync(p),
  mkdirSync: (p, o) => void nodeFs.mkdirSync(p, o),
  readdirSync: (p) => nodeFs.readdirSync(p),
  renameSync: (a, b) => nodeFs.renameSync(a, b),
  unlinkSync: (p) => nodeFs.unlinkSync(p),
  rmSync: (p, o) => nodeFs.rmSync(p, o),
  readFileSync: (p) => nodeFs.readFileSync(p),
  fsyncDir,
  fsyncAsync: (fd) => new Promise<void>((resolve, reject) => nodeFs.fsync(fd, (e) => (e ? reject(e) : resolve()))),
  closeAsync: (fd) => new Promise<void>((resolve, reject) => nodeFs.close(fd, (e) => (e ? reject(e) : resolve()))),
  fdatasyncAsync: (fd) => new Promise<void>((resolve, reject) => nodeFs.fdatasync(fd, (e) => (e ? reject(e) : resolve()))),
};
