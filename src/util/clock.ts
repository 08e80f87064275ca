/**
 * One clock anchor per thread, with sub-microsecond precision: wall time from
 * `performance.timeOrigin` (high resolution, unlike Date.now's milliseconds) plus the
 * monotonic `performance.now()`. Writers of different cores then agree on time to within
 * microseconds, so the merge's (epoch, timestampNs) order across cores is the real order,
 * and time never steps back within a process.
 */
export const CLOCK_ANCHOR_PERF = performance.now();
export const CLOCK_ANCHOR_WALL_NS =
  BigInt(Math.round(performance.timeOrigin * 1000)) * 1000n + BigInt(Math.round(CLOCK_ANCHOR_PERF * 1e6));

/** Wall-clock nanoseconds since the Unix epoch, monotonic within this thread. */
export function wallNowNs(): bigint {
  return CLOCK_ANCHOR_WALL_NS + BigInt(Math.floor((performance.now() - CLOCK_ANCHOR_PERF) * 1e6));
}
