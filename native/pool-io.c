// One thread-pool job for a group commit's round: write a run of buffers at a position,
// then fdatasync, back to back on the same libuv pool thread. ThreadPoolStorageIo otherwise
// needs two jobs (Node's fs.writev, then fs.fdatasync from its callback), and each trip
// between the pool and the event loop costs two thread wake-ups (10–20 µs on a small VM) on
// every round of a workload whose round is one fdatasync (~100 µs).
//
// writevDatasync(fd, buffers, position, callback(writeErrno, written, syncErrno)):
// short writes are continued until everything is written or the kernel reports an error
// (writeErrno, with `written` the bytes that did land); the fdatasync runs only when the
// write completed in full (syncErrno -1 otherwise), so it never covers a hole.

#define _GNU_SOURCE
#include <node_api.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/uio.h>
#include <unistd.h>

#include "pool-io.h"

#ifndef IOV_MAX
#define IOV_MAX 1024
#endif

typedef struct {
  napi_async_work work;
  napi_ref callback;
  napi_ref buffers;  // keeps the buffers alive (and unmoved) while the pool thread reads them
  int fd;
  int64_t position;
  int iovcnt;
  struct iovec* iov;
  size_t total;
  size_t written;
  int write_errno;
  int sync_errno;
} job_t;

// Writes `total` bytes of `iov` at `position` (continuing short writes), then fdatasyncs when
// `sync` and the write completed. Returns the bytes written; errnos go to *write_errno and
// *sync_errno (-1: the datasync did not run).
size_t write_then_sync(int fd, struct iovec* iov, int cnt, int64_t position, size_t total, int sync, int* write_errno, int* sync_errno) {
  size_t done = 0;
  *write_errno = 0;
  *sync_errno = -1;
  while (done < total) {
    ssize_t r = pwritev(fd, iov, cnt > IOV_MAX ? IOV_MAX : cnt, (off_t)(position + (int64_t)done));
    if (r < 0) {
      if (errno == EINTR) continue;
      *write_errno = errno;
      return done;
    }
    if (r == 0) {
      *write_errno = EIO;  // no progress with bytes left: as the fs path reports it
      return done;
    }
    done += (size_t)r;
    size_t skip = (size_t)r;
    while (cnt > 0 && skip >= iov->iov_len) {
      skip -= iov->iov_len;
      iov++;
      cnt--;
    }
    if (cnt > 0 && skip > 0) {
      iov->iov_base = (char*)iov->iov_base + skip;
      iov->iov_len -= skip;
    }
  }
  if (!sync) return done;
  int r;
  do {
    r = fdatasync(fd);
  } while (r < 0 && errno == EINTR);
  *sync_errno = r < 0 ? errno : 0;
  return done;
}

static void execute(napi_env env, void* data) {
  job_t* j = (job_t*)data;
  j->written = write_then_sync(j->fd, j->iov, j->iovcnt, j->position, j->total, 1, &j->write_errno, &j->sync_errno);
}

static void complete(napi_env env, napi_status status, void* data) {
  job_t* j = (job_t*)data;
  napi_value cb, undefined, argv[3];
  napi_get_reference_value(env, j->callback, &cb);
  napi_get_undefined(env, &undefined);
  int werr = status == napi_ok ? j->write_errno : ECANCELED;
  napi_create_int32(env, werr, &argv[0]);
  napi_create_double(env, (double)j->written, &argv[1]);
  napi_create_int32(env, status == napi_ok ? j->sync_errno : -1, &argv[2]);
  napi_delete_reference(env, j->callback);
  napi_delete_reference(env, j->buffers);
  napi_delete_async_work(env, j->work);
  free(j->iov);
  free(j);
  napi_value ignored;
  napi_call_function(env, undefined, cb, 3, argv, &ignored);
}

int iov_from_array(napi_env env, napi_value array, uint32_t n, struct iovec* iov, size_t* total) {
  size_t sum = 0;
  for (uint32_t i = 0; i < n; i++) {
    napi_value el;
    bool is_ta = false;
    napi_typedarray_type type;
    size_t length;
    void* ptr;
    napi_value ab;
    size_t off;
    if (napi_get_element(env, array, i, &el) != napi_ok || napi_is_typedarray(env, el, &is_ta) != napi_ok || !is_ta ||
        napi_get_typedarray_info(env, el, &type, &length, &ptr, &ab, &off) != napi_ok || type != napi_uint8_array) {
      napi_throw_type_error(env, NULL, "corewal: every buffer must be a Uint8Array");
      return -1;
    }
    iov[i].iov_base = ptr;
    iov[i].iov_len = length;
    sum += length;
  }
  *total = sum;
  return 0;
}

bool write_args(napi_env env, const napi_value* args, int32_t* fd, uint32_t* n, double* position) {
  bool is_array = false;
  return napi_get_value_int32(env, args[0], fd) == napi_ok && napi_is_array(env, args[1], &is_array) == napi_ok && is_array &&
         napi_get_array_length(env, args[1], n) == napi_ok && napi_get_value_double(env, args[2], position) == napi_ok && *position >= 0;
}

static napi_value writev_datasync(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t fd;
  double position;
  uint32_t n = 0;
  napi_valuetype cbtype = napi_undefined;
  if (argc < 4 || !write_args(env, argv, &fd, &n, &position) || n == 0 || napi_typeof(env, argv[3], &cbtype) != napi_ok ||
      cbtype != napi_function) {
    napi_throw_type_error(env, NULL, "writevDatasync(fd: number, buffers: Uint8Array[] (not empty), position: number >= 0, callback)");
    return NULL;
  }
  job_t* j = (job_t*)calloc(1, sizeof(job_t));
  struct iovec* iov = (struct iovec*)calloc(n, sizeof(struct iovec));
  if (j == NULL || iov == NULL) {
    free(j);
    free(iov);
    napi_throw_error(env, NULL, "writevDatasync: out of memory");
    return NULL;
  }
  size_t total = 0;
  if (iov_from_array(env, argv[1], n, iov, &total) != 0) {
    free(j);
    free(iov);
    return NULL;
  }
  j->fd = fd;
  j->position = (int64_t)position;
  j->iov = iov;
  j->iovcnt = (int)n;
  j->total = total;
  napi_value name;
  napi_create_string_utf8(env, "corewal.writevDatasync", NAPI_AUTO_LENGTH, &name);
  napi_create_reference(env, argv[3], 1, &j->callback);
  napi_create_reference(env, argv[1], 1, &j->buffers);
  if (napi_create_async_work(env, NULL, name, execute, complete, j, &j->work) != napi_ok || napi_queue_async_work(env, j->work) != napi_ok) {
    napi_delete_reference(env, j->callback);
    napi_delete_reference(env, j->buffers);
    free(iov);
    free(j);
    napi_throw_error(env, NULL, "writevDatasync: could not queue the job");
    return NULL;
  }
  return NULL;
}

void pool_io_init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"writevDatasync", NULL, writev_datasync, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props);
}
