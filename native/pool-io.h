#ifndef COREWAL_POOL_IO_H
#define COREWAL_POOL_IO_H
#include <node_api.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>
// Adds writevDatasync to the addon's exports (Linux and other POSIX systems).
void pool_io_init(napi_env env, napi_value exports);
// Adds the sticky pool lanes (createLane, laneSubmit, laneClose, laneStats): Linux only.
void pool_lane_init(napi_env env, napi_value exports);
// Writes `total` bytes of `iov` at `position`, continuing short writes, then fdatasyncs when
// `sync` is set and everything was written. Returns the bytes written; the write's errno goes
// to *write_errno (0: none), the datasync's to *sync_errno (-1: it did not run).
size_t write_then_sync(int fd, struct iovec* iov, int cnt, int64_t position, size_t total, int sync, int* write_errno, int* sync_errno);
// Reads the (fd: int32, buffers: array, position: number >= 0) at args[0..3) of a write call;
// false if any is not that (the caller throws its own TypeError).
bool write_args(napi_env env, const napi_value* args, int32_t* fd, uint32_t* n, double* position);
// Points iov[0..n) at the Uint8Arrays of `array`; throws a TypeError and returns -1 on anything else.
int iov_from_array(napi_env env, napi_value array, uint32_t n, struct iovec* iov, size_t* total);
#endif
