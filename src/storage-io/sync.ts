import { StorageIoError } from '../errors/errors.js';
import { realFs, type WalFs } from '../io/fs.js';
import {
  badFd, checkData, checkLimit, checkOffset, checkOsFd, closedError, DEFAULT_MAX_QUEUED, drainCompletions, ECANCELED, EIO, negErrno, queueFull,
  registeredFdSize, ZERO_BLOCK_SIZE, zeroSlice,
} from './common.js';
import type { IoCompletion, IoFd, StorageIo } from './types.js';

export interface SyncStorageIoOptions {
  /** File layer (a simulated disk in tests); defaults to Node's fs. */
  fs?: WalFs;
  /** Operations submitted and not yet polled before `submit*` fails with `QUEUE_FULL`. Default 65536. */
  maxQueued?: number;
}

interface SyncFd {
  os: number;
  appendAt: number;
  /** errno of the first failed operation; later operations are cancelled, never run. */
  failed: number;
}

const RESOLVED = Promise.resolve();

/** A write that moved no bytes would retry forever: report it as the I/O error it is. */
function progress(n: number): number {
  if (n > 0) return n;
  throw Object.assign(new Error('write made no progress'), { errno: EIO });
}

/**
 * The simplest {@link StorageIo}: every `submit*` does its I/O at once on the calling
 * thread and stages the completion for the next `pollCompletions`. It blocks like the
 * direct path does, so it suits tools, tests and threads that own nothing else; it is
 * also the reference the other backends are measured against.
 *
 * @example
 * ```ts
 * const sio = new SyncStorageIo();
 * const fd = sio.registerFd(fs.openSync('/data/wal-0.log', 'r+'));
 * sio.submitAppend(fd, Buffer.from('hello'));
 * sio.submitDatasync(fd);
 * const done: IoCompletion[] = [];
 * sio.pollCompletions(done);     // two completions: 5 bytes, then 0
 * sio.close();
 * ```
 */
export class SyncStorageIo implements StorageIo {
  private readonly fs: WalFs;
  private readonly maxQueued: number;
  private readonly fds: (SyncFd | undefined)[] = [];
  private cTok: number[] = [];
  private cRes: number[] = [];
  private nextToken = 1;
  private outstanding = 0;
  private closed = false;

  constructor(options: SyncStorageIoOptions = {}) {
    this.fs = options.fs ?? realFs;
    this.maxQueued = checkLimit(options.maxQueued ?? DEFAULT_MAX_QUEUED, 'maxQueued', 1);
  }

  registerFd(fd: number): IoFd {
    this.checkOpen();
    checkOsFd(fd);
    const size = registeredFdSize(this.fs, fd);
    this.fds.push({ os: fd, appendAt: size, failed: 0 });
    return (this.fds.length - 1) as IoFd;
  }

  deregisterFd(fd: IoFd): void {
    this.checkOpen();
    const f = this.fdState(fd);
    this.fds[fd] = undefined;
    try {
      this.fs.closeSync(f.os);
    } catch (e) {
      throw new StorageIoError('IO', `closing fd ${f.os} failed: ${(e as Error).message}`, { cause: e });
    }
  }

  submitWrite(fd: IoFd, data: Uint8Array, offset: number): number {
    checkData(data);
    checkOffset(offset);
    return this.write(this.admit(fd), data, offset);
  }

  submitAppend(fd: IoFd, data: Uint8Array): number {
    checkData(data);
    const f = this.admit(fd);
    const at = f.appendAt;
    f.appendAt += data.length;
    return this.write(f, data, at);
  }

  submitZeros(fd: IoFd, offset: number, length: number): number {
    checkOffset(offset);
    checkOffset(length, 'length');
    const f = this.admit(fd);
    const token = this.nextToken++;
    let result = length;
    if (f.failed !== 0) {
      result = -ECANCELED;
    } else {
      try {
        for (let done = 0; done < length; ) {
          const n = Math.min(ZERO_BLOCK_SIZE, length - done);
          done += progress(this.fs.writeSync(f.os, zeroSlice(n), 0, n, offset + done));
        }
      } catch (e) {
        result = negErrno(e);
        f.failed = -result;
      }
    }
    this.stage(token, result);
    return token;
  }

  submitDatasync(fd: IoFd): number {
    const f = this.admit(fd);
    const token = this.nextToken++;
    let result = 0;
    if (f.failed !== 0) {
      result = -ECANCELED;
    } else {
      try {
        this.fs.fdatasyncSync(f.os);
      } catch (e) {
        result = negErrno(e);
        f.failed = -result;
      }
    }
    this.stage(token, result);
    return token;
  }

  /** Everything already ran inside `submit*`, so there is nothing to start. */
  flush(): number {
    this.checkOpen();
    return 0;
  }

  pollCompletions(out: IoCompletion[]): void {
    this.checkOpen();
    this.outstanding -= drainCompletions(this.cTok, this.cRes, out);
  }

  pendingCount(): number { return this.outstanding; }

  /** Completions are staged inside `submit*`, so there is never anything to wait for. */
  waitForCompletions(): Promise<void> {
    this.checkOpen();
    return RESOLVED;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    let first: unknown = null;
    for (let i = 0; i < this.fds.length; i++) {
      const f = this.fds[i];
      if (f === undefined) continue;
      this.fds[i] = undefined;
      try { this.fs.closeSync(f.os); } catch (e) { first ??= e; }
    }
    if (first !== null) throw new StorageIoError('IO', `closing a registered fd failed: ${(first as Error).message}`, { cause: first });
  }

  private write(f: SyncFd, data: Uint8Array, at: number): number {
    const token = this.nextToken++;
    let result = data.length;
    if (f.failed !== 0) {
      result = -ECANCELED;
    } else {
      try {
        // A short write is not an error: retry the rest, as the kernel reports the real one then.
        for (let done = 0; done < data.length; ) done += progress(this.fs.writeSync(f.os, data, done, data.length - done, at + done));
      } catch (e) {
        result = negErrno(e);
        f.failed = -result;
      }
    }
    this.stage(token, result);
    return token;
  }

  private stage(token: number, result: number): void {
    this.cTok.push(token);
    this.cRes.push(result);
  }

  private admit(fd: IoFd): SyncFd {
    this.checkOpen();
    const f = this.fdState(fd);
    if (this.outstanding >= this.maxQueued) throw queueFull('SyncStorageIo', this.maxQueued);
    this.outstanding++;
    return f;
  }

  private fdState(fd: IoFd): SyncFd {
    const f = typeof fd === 'number' ? this.fds[fd] : undefined;
    if (f === undefined) throw badFd(fd);
    return f;
  }

  private checkOpen(): void {
    if (this.closed) throw closedError('SyncStorageIo');
  }
}
