import { ioError } from '../errors/errors.js';
import { realFs, type WalFs } from '../io/fs.js';
import type { CoreWalWriter } from '../writer/writer.js';
import type { IoFd, StorageIo } from './types.js';

/**
 * Opens `writer`'s segment (read-write, never truncating) and registers the new file
 * descriptor with `sio`, which owns it from then on (`sio.deregisterFd(fd)` closes it).
 * The writer keeps its own descriptor for the direct path; both reach the same file, so
 * a datasync through either covers writes made through the other.
 *
 * The writer submits with explicit offsets (`submitWrite`), so the fd's append cursor,
 * which starts at the file size including preallocated zeros, is not used for records.
 *
 * @example
 * ```ts
 * const writer = CoreWalWriter.create(0, '/data/wal/wal-0.log');
 * const sio = new ThreadPoolStorageIo();
 * const fd = registerWriterSegment(writer, sio);
 * writer.appendPutViaStorageIo(Buffer.from('k'), Buffer.from('v'), sio, fd);
 * ```
 */
export function registerWriterSegment(writer: CoreWalWriter, sio: StorageIo, options: { fs?: WalFs } = {}): IoFd {
  const fs = options.fs ?? realFs;
  const path = writer.path();
  let os: number;
  try {
    os = fs.openSync(path, 'r+');
  } catch (e) {
    throw ioError('open (for StorageIo)', e, path, undefined, writer.coreId());
  }
  try {
    return sio.registerFd(os);
  } catch (e) {
    try { fs.closeSync(os); } catch { /* the registration error is the one to report */ }
    throw e;
  }
}
