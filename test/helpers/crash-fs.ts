import { realFs, type WalFs } from '../../src/io/fs.js';

/** Thrown by {@link CrashFs} at the crash point and by every call after it. */
export class SimulatedCrash extends Error {
  constructor(readonly call: number, readonly op: string) {
    super(`simulated crash at call ${call} (${op})`);
  }
}

const MUTATING = new Set([
  'openSync', 'writeSync', 'writevSync', 'fdatasyncSync', 'fsyncSync', 'ftruncateSync',
  'mkdirSync', 'renameSync', 'unlinkSync', 'rmSync', 'fsyncDir',
]);

/**
 * A WalFs over the real disk that "crashes" at its `crashAt`-th mutating call: that call
 * does not happen (a write lands half its bytes first, as a torn write would), it and
 * every later call throw {@link SimulatedCrash}, and the files stay as they are for a
 * restart to find. Counting with `crashAt = Infinity` tells how many steps an operation has.
 *
 * Unsynced data survives this crash (the page cache outlives the "process"); the simulated
 * disk of `corewal/testing` also drops it.
 */
export class CrashFs implements WalFs {
  calls = 0;
  crashed: SimulatedCrash | null = null;
  /** Mutating calls, in order, for diagnostics. */
  readonly log: string[] = [];
  private readonly fds = new Set<number>();

  constructor(public crashAt = Infinity, private readonly base: WalFs = realFs) {}

  private step(op: string, detail: string): boolean {
    if (this.crashed !== null) throw this.crashed;
    if (!MUTATING.has(op)) return false;
    this.calls++;
    this.log.push(`${op} ${detail}`);
    if (this.calls >= this.crashAt) {
      this.crashed = new SimulatedCrash(this.calls, `${op} ${detail}`);
      return true;
    }
    return false;
  }

  /** Closes every descriptor the dead "process" left open. */
  closeAll(): void {
    for (const fd of this.fds) { try { this.base.closeSync(fd); } catch { /* already closed */ } }
    this.fds.clear();
  }

  openSync(path: string, flags: string | number, mode?: number): number {
    const mutating = !(flags === 'r' || flags === 0);
    if (mutating ? this.step('openSync', `${path} ${flags}`) : this.step('read', path)) throw this.crashed!;
    const fd = this.base.openSync(path, flags, mode);
    this.fds.add(fd);
    return fd;
  }
  closeSync(fd: number): void {
    if (this.crashed !== null) throw this.crashed;
    this.fds.delete(fd);
    this.base.closeSync(fd);
  }
  readSync(fd: number, buffer: Uint8Array, offset: number, length: number, position: number): number {
    this.step('read', '');
    return this.base.readSync(fd, buffer, offset, length, position);
  }
  writeSync(fd: number, buffer: Uint8Array, offset: number, length: number, position: number): number {
    if (this.step('writeSync', `fd ${fd} @${position} +${length}`)) {
      const half = length >> 1;
      if (half > 0) this.base.writeSync(fd, buffer, offset, half, position);
      throw this.crashed!;
    }
    return this.base.writeSync(fd, buffer, offset, length, position);
  }
  writevSync(fd: number, buffers: readonly Uint8Array[], position: number): number {
    if (this.step('writevSync', `fd ${fd} @${position}`)) {
      const first = buffers[0];
      if (first !== undefined && first.length > 1) this.base.writeSync(fd, first, 0, first.length >> 1, position);
      throw this.crashed!;
    }
    return this.base.writevSync(fd, buffers, position);
  }
  fdatasyncSync(fd: number): void { if (this.step('fdatasyncSync', `fd ${fd}`)) throw this.crashed!; this.base.fdatasyncSync(fd); }
  fsyncSync(fd: number): void { if (this.step('fsyncSync', `fd ${fd}`)) throw this.crashed!; this.base.fsyncSync(fd); }
  ftruncateSync(fd: number, len: number): void { if (this.step('ftruncateSync', `fd ${fd} ${len}`)) throw this.crashed!; this.base.ftruncateSync(fd, len); }
  fstatSync(fd: number): { size: number } { this.step('stat', ''); return this.base.fstatSync(fd); }
  existsSync(path: string): boolean { this.step('stat', path); return this.base.existsSync(path); }
  statSync(path: string): { size: number; isDirectory(): boolean; isFile(): boolean } { this.step('stat', path); return this.base.statSync(path); }
  mkdirSync(path: string, options?: { recursive?: boolean }): void { if (this.step('mkdirSync', path)) throw this.crashed!; this.base.mkdirSync(path, options); }
  readdirSync(path: string): string[] { this.step('readdir', path); return this.base.readdirSync(path); }
  renameSync(from: string, to: string): void { if (this.step('renameSync', `${from} -> ${to}`)) throw this.crashed!; this.base.renameSync(from, to); }
  unlinkSync(path: string): void { if (this.step('unlinkSync', path)) throw this.crashed!; this.base.unlinkSync(path); }
  rmSync(path: string, options?: { recursive?: boolean; force?: boolean }): void { if (this.step('rmSync', path)) throw this.crashed!; this.base.rmSync(path, options); }
  readFileSync(path: string): Buffer { this.step('read', path); return this.base.readFileSync(path); }
  fsyncDir(path: string): void { if (this.step('fsyncDir', path)) throw this.crashed!; this.base.fsyncDir(path); }
}
