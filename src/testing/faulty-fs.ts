import { realFs, type WalFs } from '../io/fs.js';
import { FsFaultInjector, type FsFaultHandle, type FsFaultRule, type FsOp } from './faults.js';
import { Rng } from './rng.js';
import { systemError } from './system-error.js';

/**
 * A {@link WalFs} that passes every call to another one (Node's fs by default) except
 * the calls its fault rules select, which fail with an error shaped like Node's
 * `SystemError` (`code`, negative `errno`, `syscall`). For testing the direct write path
 * against real files: EIO on fdatasync, ENOSPC on write, and so on.
 *
 * @example
 * ```ts
 * import { CoreWalWriter } from 'corewal';
 * import { FaultyFs } from 'corewal/testing';
 *
 * const fs = new FaultyFs();
 * fs.injectFault({ op: 'fdatasyncSync', code: 'EIO' });
 * const w = CoreWalWriter.create(0, '/tmp/wal-0.log', { fs });   // create's own fsyncs are not fdatasyncs
 * w.appendPut(Buffer.from('k'), Buffer.from('v'));
 * w.sync();   // throws PerCoreWalError { code: 'IO', errno: 5 }; later appends throw POISONED
 * ```
 */
export class FaultyFs implements WalFs {
  private readonly inner: WalFs;
  private readonly faults = new FsFaultInjector();
  private readonly paths = new Map<number, string>();
  private readonly rng: Rng;

  constructor(inner: WalFs = realFs, options: { seed?: number } = {}) {
    this.inner = inner;
    this.rng = new Rng(options.seed ?? 1);
  }

  /** Fails calls matching `rule`; see {@link FsFaultRule}. */
  injectFault(rule: FsFaultRule): FsFaultHandle {
    return this.faults.inject(rule);
  }

  clearFaults(): void {
    this.faults.clear();
  }

  /** Calls made so far (of one method, or all), failed ones included. */
  callCount(op?: FsOp): number {
    return this.faults.callCount(op);
  }

  private check(op: FsOp, path: string | undefined, syscall: string, extra?: { length?: number; position?: number }): void {
    const rule = this.faults.check(op, path, extra);
    if (rule !== null) throw systemError(rule.code ?? 'EIO', syscall, path);
  }

  openSync(path: string, flags: string | number, mode?: number): number {
    this.check('openSync', path, 'open');
    const fd = this.inner.openSync(path, flags, mode);
    this.paths.set(fd, path);
    return fd;
  }
  closeSync(fd: number): void {
    this.check('closeSync', this.paths.get(fd), 'close');
    this.paths.delete(fd);
    this.inner.closeSync(fd);
  }
  readSync(fd: number, buffer: Uint8Array, offset: number, length: number, position: number): number {
    this.check('readSync', this.paths.get(fd), 'read', { length, position });
    return this.inner.readSync(fd, buffer, offset, length, position);
  }
  writeSync(fd: number, buffer: Uint8Array, offset: number, length: number, position: number): number {
    const rule = this.faults.check('writeSync', this.paths.get(fd), { length, position });
    if (rule !== null) {
      if (rule.partial) {
        const part = this.rng.int(length + 1);
        if (part > 0) this.inner.writeSync(fd, buffer, offset, part, position);
      }
      throw systemError(rule.code ?? 'EIO', 'write', this.paths.get(fd));
    }
    return this.inner.writeSync(fd, buffer, offset, length, position);
  }
  writevSync(fd: number, buffers: readonly Uint8Array[], position: number): number {
    let length = 0;
    for (const b of buffers) length += b.length;
    const rule = this.faults.check('writevSync', this.paths.get(fd), { length, position });
    if (rule !== null) {
      if (rule.partial) {
        const all = Buffer.concat(buffers);
        const part = this.rng.int(length + 1);
        if (part > 0) this.inner.writeSync(fd, all, 0, part, position);
      }
      throw systemError(rule.code ?? 'EIO', 'write', this.paths.get(fd));
    }
    return this.inner.writevSync(fd, buffers, position);
  }
  fdatasyncSync(fd: number): void {
    this.check('fdatasyncSync', this.paths.get(fd), 'fdatasync');
    this.inner.fdatasyncSync(fd);
  }
  fsyncSync(fd: number): void {
    this.check('fsyncSync', this.paths.get(fd), 'fsync');
    this.inner.fsyncSync(fd);
  }
  ftruncateSync(fd: number, len: number): void {
    this.check('ftruncateSync', this.paths.get(fd), 'ftruncate', { length: len });
    this.inner.ftruncateSync(fd, len);
  }
  fstatSync(fd: number): { size: number } {
    this.check('fstatSync', this.paths.get(fd), 'fstat');
    return this.inner.fstatSync(fd);
  }
  existsSync(path: string): boolean {
    this.faults.check('existsSync', path);
    return this.inner.existsSync(path);
  }
  statSync(path: string): { size: number; isDirectory(): boolean; isFile(): boolean } {
    this.check('statSync', path, 'stat');
    return this.inner.statSync(path);
  }
  mkdirSync(path: string, options?: { recursive?: boolean }): void {
    this.check('mkdirSync', path, 'mkdir');
    this.inner.mkdirSync(path, options);
  }
  readdirSync(path: string): string[] {
    this.check('readdirSync', path, 'scandir');
    return this.inner.readdirSync(path);
  }
  renameSync(from: string, to: string): void {
    this.check('renameSync', from, 'rename');
    this.inner.renameSync(from, to);
  }
  unlinkSync(path: string): void {
    this.check('unlinkSync', path, 'unlink');
    this.inner.unlinkSync(path);
  }
  rmSync(path: string, options?: { recursive?: boolean; force?: boolean }): void {
    this.check('rmSync', path, 'rm');
    this.inner.rmSync(path, options);
  }
  readFileSync(path: string): Buffer {
    this.check('readFileSync', path, 'open');
    return this.inner.readFileSync(path);
  }
  fsyncDir(path: string): void {
    this.check('fsyncDir', path, 'fsync');
    this.inner.fsyncDir(path);
  }
}
