/**
 * The submission/completion I/O model every backend implements. A caller submits
 * writes and datasyncs, each returning a token, and later polls completions
 * `{ token, result }` where result is bytes transferred or `-errno`.
 *
 * Ordering contract (SPEC invariant 2): on one fd, a datasync completes only after
 * every write submitted before it on that fd has completed.
 *
 * Further rules every corewal backend keeps (the shared behavioural suite in
 * `test/helpers/storage-io-suite.ts` checks them):
 * - tokens are positive safe integers that increase in submission order (the writer
 *   finds its writes by binary search);
 * - per fd, writes run in submission order; after an operation on an fd fails, every
 *   later operation on that fd completes with a negative result (`-ECANCELED`) without
 *   running, so the file never holds a record after a hole;
 * - a short write is retried for the remainder; a write's completion reports its full
 *   length or a negative errno.
 */
export type IoFd = number & { readonly __ioFd: unique symbol };

/** One finished operation: `result` is bytes transferred (0 for a datasync) or a negative errno. */
export interface IoCompletion {
  token: number;
  result: number;
}

export interface StorageIo {
  /** Takes ownership of an open OS file descriptor; the backend closes it on deregister/close. */
  registerFd(fd: number): IoFd;
  /** Closes the fd; operations still in flight on it complete first. */
  deregisterFd(fd: IoFd): void;
  /** Writes `data` at `offset`. The backend may copy `data`; the caller may reuse its buffer once this returns. */
  submitWrite(fd: IoFd, data: Uint8Array, offset: number): number;
  /**
   * Optional: as `submitWrite`, but the backend writes from `data` itself instead of a
   * copy, so the caller must not modify those bytes until this operation's completion has
   * been polled. The writer lends its append buffer this way (and appends into another
   * meanwhile) when a flush is large enough for the copy to cost more than the swap.
   */
  submitWriteOwned?(fd: IoFd, data: Uint8Array, offset: number): number;
  /** Writes `data` at the fd's append cursor (its size when registered, advanced by each append). */
  submitAppend(fd: IoFd, data: Uint8Array): number;
  /**
   * Optional: writes `length` zero bytes at `offset` without the caller supplying (or the
   * backend copying) a buffer. The writer uses it to preallocate the segment ahead of its
   * records; a backend without it gets zeros through `submitWrite`.
   */
  submitZeros?(fd: IoFd, offset: number, length: number): number;
  /** fdatasync, ordered after every write submitted before it on the same fd. */
  submitDatasync(fd: IoFd): number;
  /** Starts everything submitted so far; returns how many operations it started. */
  flush(): number;
  /** Moves finished completions into `out` (appending). */
  pollCompletions(out: IoCompletion[]): void;
  /** Operations submitted and not yet handed out by `pollCompletions`. */
  pendingCount(): number;
  /** Resolves once `pollCompletions` has something to return (at once if it already has). */
  waitForCompletions(): Promise<void>;
  /** Closes every registered fd. Later calls fail with `CLOSED`. */
  close(): void;
}
