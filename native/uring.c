/*
 * corewal's io_uring binding: a thin layer over the raw io_uring syscalls and the
 * mmap'd rings, built against the kernel UAPI header alone (no liburing), so that it
 * compiles wherever the kernel headers and a C compiler exist.
 *
 * The policy (tokens, buffer pool, write coalescing, ordering flags, fd bookkeeping)
 * lives in TypeScript (src/storage-io/uring.ts). This file only:
 *   - sets a ring up (SQPOLL when permitted), registers the buffer pool, a sparse
 *     fixed-file table and an eventfd;
 *   - copies batches of operation descriptors into SQEs and submits them;
 *   - drains CQEs from the shared ring without a syscall;
 *   - watches the eventfd with a libuv poll handle so JavaScript is woken on completion.
 */
#define _GNU_SOURCE
#define NAPI_VERSION 8
#include <node_api.h>
#include <uv.h>

#include <errno.h>
#include <linux/fs.h>
#include <linux/io_uring.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

/* Operation kinds and flags in the descriptors that JavaScript passes to submit(). */
#define OPK_WRITE_FIXED 0
#define OPK_DATASYNC 1
/* A write from a JS-owned buffer (too large for the registered pool): IORING_OP_WRITE. */
#define OPK_WRITE 2
#define OPF_LINK 1
/* IOSQE_CQE_SKIP_SUCCESS: no CQE unless the SQE fails (a write in a chain whose datasync's
 * success then stands for it), so the event loop is not woken mid-chain. */
#define OPF_SKIP 2
/* rw_flags = RWF_DSYNC: the write is durable (for its own range) when it completes. */
#define OPF_DSYNC 4
/* Doubles per operation descriptor: kind, slot, buffer (registered index, or index into
 * the `large` array for OPK_WRITE), offset in that buffer, len, fileOffset, userData, flags. */
#define OP_STRIDE 8
#ifndef IOSQE_CQE_SKIP_SUCCESS
#define IOSQE_CQE_SKIP_SUCCESS (1U << 6)
#endif
#ifndef IORING_FEAT_CQE_SKIP
#define IORING_FEAT_CQE_SKIP (1U << 11)
#endif
#ifndef RWF_DSYNC
#define RWF_DSYNC 0x00000002
#endif

typedef struct ring ring_t;

/* The poll handle outlives the ring struct when the ring is closed: uv_close is asynchronous. */
typedef struct {
  uv_poll_t handle;
  ring_t *ring;
  napi_async_cleanup_hook_handle hook;
} poll_box_t;

struct ring {
  int fd;
  int efd;
  int closed;
  int sqpoll;
  /* IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG: completions of work the kernel ran
   * in io-wq are posted at this thread's next kernel entry instead of by an IPI that
   * interrupts it; IORING_SQ_TASKRUN says when such an entry is due. */
  int coop;
  unsigned features;
  unsigned sq_entries, cq_entries;
  unsigned *sq_khead, *sq_ktail, *sq_kflags, *sq_array;
  unsigned sq_mask;
  struct io_uring_sqe *sqes;
  unsigned sq_local_tail;
  /* SQEs published but not yet handed to the kernel by io_uring_enter (no-SQPOLL mode). */
  unsigned to_submit;
  unsigned *cq_khead, *cq_ktail;
  unsigned cq_mask;
  struct io_uring_cqe *cqes;
  void *sq_map, *cq_map;
  /* The registered pool: buf_count buffers of buf_size bytes from pool_base. Its memory
   * belongs to the ArrayBuffer handed to JS (unmapped by that buffer's finalizer). */
  char *pool_base;
  uint32_t buf_size, buf_count;
  /* One more registered buffer, index buf_count, that stays all zeros: preallocation
   * writes come from it without a copy. Owned by the ring. */
  char *zero_base;
  uint32_t zero_size;
  size_t sq_map_len, cq_map_len, sqes_len;
  /* libuv wake-up */
  napi_env env;
  poll_box_t *poll;
  /* The poll handle is referenced (a wait is pending). */
  int polling;
  napi_ref callback;
  napi_async_context actx;
  napi_async_cleanup_hook_handle cleanup;
  int in_callback;
};

static int sys_setup(unsigned entries, struct io_uring_params *p) {
  return (int)syscall(__NR_io_uring_setup, entries, p);
}
static int sys_enter(int fd, unsigned to_submit, unsigned min_complete, unsigned flags) {
  return (int)syscall(__NR_io_uring_enter, fd, to_submit, min_complete, flags, NULL, 0);
}
static int sys_register(int fd, unsigned op, const void *arg, unsigned nr) {
  return (int)syscall(__NR_io_uring_register, fd, op, arg, nr);
}

/* ---- N-API helpers ---------------------------------------------------------------- */

#define CHECK(call)                                                        \
  do {                                                                     \
    if ((call) != napi_ok) {                                               \
      napi_throw_error(env, "EINTERNAL", "corewal uring: N-API call failed: " #call); \
      return NULL;                                                         \
    }                                                                      \
  } while (0)

/* Throws an Error carrying `errno` (positive) and `syscall`, which uring.ts turns into StorageIoError. */
static napi_value throw_errno(napi_env env, const char *syscall_name, int err) {
  char msg[256];
  snprintf(msg, sizeof msg, "%s failed: %s (errno %d)", syscall_name, strerror(err), err);
  napi_value m, e, n, s;
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &m);
  napi_create_error(env, NULL, m, &e);
  napi_create_int32(env, err, &n);
  napi_set_named_property(env, e, "errno", n);
  napi_create_string_utf8(env, syscall_name, NAPI_AUTO_LENGTH, &s);
  napi_set_named_property(env, e, "syscall", s);
  napi_throw(env, e);
  return NULL;
}

static int get_u32(napi_env env, napi_value v, uint32_t *out) {
  return napi_get_value_uint32(env, v, out) == napi_ok;
}

static ring_t *get_ring(napi_env env, napi_value v) {
  void *p = NULL;
  if (napi_get_value_external(env, v, &p) != napi_ok || p == NULL) {
    napi_throw_type_error(env, "EINVAL", "corewal uring: expected a ring handle");
    return NULL;
  }
  ring_t *r = (ring_t *)p;
  if (r->closed) {
    napi_throw_error(env, "ECLOSED", "corewal uring: ring is closed");
    return NULL;
  }
  return r;
}

static int get_f64_array(napi_env env, napi_value v, double **data, size_t *len) {
  napi_typedarray_type t;
  void *d;
  napi_value ab;
  size_t off;
  if (napi_get_typedarray_info(env, v, &t, len, &d, &ab, &off) != napi_ok || t != napi_float64_array) {
    napi_throw_type_error(env, "EINVAL", "corewal uring: expected a Float64Array");
    return 0;
  }
  *data = (double *)d;
  return 1;
}

/* ---- ring lifetime ------------------------------------------------------------------ */

static void unmap_ring(ring_t *r) {
  if (r->sqes != NULL && r->sqes != MAP_FAILED) munmap(r->sqes, r->sqes_len);
  if (r->cq_map != NULL && r->cq_map != MAP_FAILED && r->cq_map != r->sq_map) munmap(r->cq_map, r->cq_map_len);
  if (r->sq_map != NULL && r->sq_map != MAP_FAILED) munmap(r->sq_map, r->sq_map_len);
  r->sqes = NULL;
  r->sq_map = r->cq_map = NULL;
}

static void release_js(ring_t *r) {
  if (r->callback != NULL) {
    napi_delete_reference(r->env, r->callback);
    r->callback = NULL;
  }
  if (r->actx != NULL) {
    napi_async_destroy(r->env, r->actx);
    r->actx = NULL;
  }
}

static void poll_closed_cb(uv_handle_t *h) {
  poll_box_t *box = (poll_box_t *)h->data;
  napi_async_cleanup_hook_handle hook = box->hook;
  free(box);
  /* Node-API requires the async cleanup hook to be removed once its work is done. */
  if (hook != NULL) napi_remove_async_cleanup_hook(hook);
}

/*
 * Releases everything the kernel holds for this ring. The poll handle is stopped before
 * the eventfd is closed (libuv must not watch a closed fd), then closed asynchronously.
 * `hook` is set when the environment is going away (worker exit, process exit): it is
 * removed only after the handle has closed.
 */
static void ring_shutdown(ring_t *r, napi_async_cleanup_hook_handle hook) {
  if (r->closed) {
    if (hook != NULL) napi_remove_async_cleanup_hook(hook);
    return;
  }
  r->closed = 1;
  if (hook == NULL && r->cleanup != NULL) napi_remove_async_cleanup_hook(r->cleanup);
  r->cleanup = NULL;
  if (r->poll != NULL) {
    poll_box_t *box = r->poll;
    r->poll = NULL;
    r->polling = 0;
    uv_poll_stop(&box->handle);
    box->ring = NULL;
    box->hook = hook;
    uv_close((uv_handle_t *)&box->handle, poll_closed_cb);
  } else if (hook != NULL) {
    napi_remove_async_cleanup_hook(hook);
  }
  /* Inside the wake-up callback napi_make_callback still uses them; on_readable releases them after. */
  if (!r->in_callback) release_js(r);
  unmap_ring(r);
  /* Closing the ring fd unregisters files and buffers and drops the eventfd registration. */
  if (r->fd >= 0) close(r->fd);
  if (r->efd >= 0) close(r->efd);
  r->fd = r->efd = -1;
  /* The kernel keeps its own references to pinned pages until it has torn the ring down. */
  if (r->zero_base != NULL) munmap(r->zero_base, r->zero_size);
  r->zero_base = NULL;
}

static void cleanup_hook(napi_async_cleanup_hook_handle hook, void *arg) {
  ring_t *r = (ring_t *)arg;
  r->cleanup = NULL;
  ring_shutdown(r, hook);
}

static void ring_finalize(napi_env env, void *data, void *hint) {
  (void)env; (void)hint;
  ring_t *r = (ring_t *)data;
  /* Unreachable without close(): the JS side lost it. Kernel resources go with it. */
  if (!r->closed) ring_shutdown(r, NULL);
  free(r);
}

static void buffers_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  munmap(data, (size_t)(uintptr_t)hint);
}

static int map_rings(ring_t *r, struct io_uring_params *p) {
  r->sq_map_len = p->sq_off.array + p->sq_entries * sizeof(unsigned);
  r->cq_map_len = p->cq_off.cqes + p->cq_entries * sizeof(struct io_uring_cqe);
  int single = (p->features & IORING_FEAT_SINGLE_MMAP) != 0;
  if (single) {
    if (r->cq_map_len > r->sq_map_len) r->sq_map_len = r->cq_map_len;
    r->cq_map_len = r->sq_map_len;
  }
  r->sq_map = mmap(NULL, r->sq_map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_SQ_RING);
  if (r->sq_map == MAP_FAILED) { r->sq_map = NULL; return errno; }
  if (single) {
    r->cq_map = r->sq_map;
  } else {
    r->cq_map = mmap(NULL, r->cq_map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_CQ_RING);
    if (r->cq_map == MAP_FAILED) { r->cq_map = NULL; return errno; }
  }
  r->sqes_len = p->sq_entries * sizeof(struct io_uring_sqe);
  r->sqes = mmap(NULL, r->sqes_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_SQES);
  if (r->sqes == MAP_FAILED) { r->sqes = NULL; return errno; }
  char *sq = (char *)r->sq_map, *cq = (char *)r->cq_map;
  r->sq_khead = (unsigned *)(sq + p->sq_off.head);
  r->sq_ktail = (unsigned *)(sq + p->sq_off.tail);
  r->sq_kflags = (unsigned *)(sq + p->sq_off.flags);
  r->sq_array = (unsigned *)(sq + p->sq_off.array);
  r->sq_mask = *(unsigned *)(sq + p->sq_off.ring_mask);
  r->cq_khead = (unsigned *)(cq + p->cq_off.head);
  r->cq_ktail = (unsigned *)(cq + p->cq_off.tail);
  r->cq_mask = *(unsigned *)(cq + p->cq_off.ring_mask);
  r->cqes = (struct io_uring_cqe *)(cq + p->cq_off.cqes);
  r->sq_entries = p->sq_entries;
  r->cq_entries = p->cq_entries;
  r->sq_local_tail = *r->sq_ktail;
  return 0;
}

/* ---- probe() ------------------------------------------------------------------------- */

static void set_str(napi_env env, napi_value obj, const char *k, const char *v) {
  napi_value s;
  if (v == NULL) napi_get_null(env, &s);
  else napi_create_string_utf8(env, v, NAPI_AUTO_LENGTH, &s);
  napi_set_named_property(env, obj, k, s);
}
static void set_num(napi_env env, napi_value obj, const char *k, double v) {
  napi_value n;
  napi_create_double(env, v, &n);
  napi_set_named_property(env, obj, k, n);
}
static void set_bool(napi_env env, napi_value obj, const char *k, int v) {
  napi_value b;
  napi_get_boolean(env, v != 0, &b);
  napi_set_named_property(env, obj, k, b);
}

/*
 * Tries a small ring and checks every feature corewal relies on, so that isSupported()
 * answers from the running kernel rather than from the header it was built against.
 * Returns { supported, errno, reason, features }.
 */
static napi_value js_probe(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value out;
  CHECK(napi_create_object(env, &out));
  struct io_uring_params p;
  memset(&p, 0, sizeof p);
  int fd = sys_setup(4, &p);
  char reason[256];
  if (fd < 0) {
    int e = errno;
    if (e == ENOSYS) snprintf(reason, sizeof reason, "io_uring_setup: ENOSYS (kernel without io_uring)");
    else if (e == EPERM) snprintf(reason, sizeof reason, "io_uring_setup: EPERM (refused by a seccomp policy or kernel.io_uring_disabled)");
    else snprintf(reason, sizeof reason, "io_uring_setup failed: %s (errno %d)", strerror(e), e);
    set_bool(env, out, "supported", 0);
    set_num(env, out, "errno", e);
    set_str(env, out, "reason", reason);
    return out;
  }
  const char *missing = NULL;
  unsigned need = IORING_FEAT_NODROP | IORING_FEAT_SUBMIT_STABLE;
  if ((p.features & need) != need) missing = "kernel lacks IORING_FEAT_NODROP/SUBMIT_STABLE (needs Linux >= 5.6)";
  if (missing == NULL) {
    size_t len = sizeof(struct io_uring_probe) + 256 * sizeof(struct io_uring_probe_op);
    struct io_uring_probe *pr = calloc(1, len);
    if (pr == NULL) missing = "out of memory";
    else {
      if (sys_register(fd, IORING_REGISTER_PROBE, pr, 256) < 0) {
        missing = "IORING_REGISTER_PROBE refused (needs Linux >= 5.6)";
      } else {
        if (pr->last_op < IORING_OP_WRITE_FIXED || !(pr->ops[IORING_OP_WRITE_FIXED].flags & IO_URING_OP_SUPPORTED))
          missing = "IORING_OP_WRITE_FIXED not supported";
        else if (pr->last_op < IORING_OP_FSYNC || !(pr->ops[IORING_OP_FSYNC].flags & IO_URING_OP_SUPPORTED))
          missing = "IORING_OP_FSYNC not supported";
        else if (pr->last_op < IORING_OP_WRITE || !(pr->ops[IORING_OP_WRITE].flags & IO_URING_OP_SUPPORTED))
          missing = "IORING_OP_WRITE not supported";
      }
      free(pr);
    }
  }
  close(fd);
  set_bool(env, out, "supported", missing == NULL);
  set_num(env, out, "errno", 0);
  set_str(env, out, "reason", missing);
  set_num(env, out, "features", p.features);
  return out;
}

/* ---- create(sqEntries, bufCount, bufSize, fileSlots, trySqpoll, sqIdleMs, zeroSize) ---- */

static napi_value js_create(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  uint32_t entries, buf_count, buf_size, slots, idle, zero_size;
  bool try_sqpoll = false;
  if (argc < 7 || !get_u32(env, argv[0], &entries) || !get_u32(env, argv[1], &buf_count) ||
      !get_u32(env, argv[2], &buf_size) || !get_u32(env, argv[3], &slots) ||
      napi_get_value_bool(env, argv[4], &try_sqpoll) != napi_ok || !get_u32(env, argv[5], &idle) ||
      !get_u32(env, argv[6], &zero_size)) {
    napi_throw_type_error(env, "EINVAL", "create(sqEntries, bufCount, bufSize, fileSlots, trySqpoll, sqIdleMs, zeroSize)");
    return NULL;
  }
  /* bufCount 0: no registered buffers at all (RLIMIT_MEMLOCK left no room for them). */
  if (buf_count >= 65535 || (buf_count > 0 && (buf_size == 0 || zero_size == 0)) || slots == 0) {
    napi_throw_range_error(env, "EINVAL", "bufCount must be < 65535, bufSize and zeroSize positive with a pool, fileSlots positive");
    return NULL;
  }
  ring_t *r = calloc(1, sizeof *r);
  if (r == NULL) return throw_errno(env, "calloc", ENOMEM);
  r->fd = r->efd = -1;
  r->env = env;

  struct io_uring_params p;
  int fd = -1, err = 0, sqpoll_errno = 0;
  void *mem = NULL; /* the pool, until an ArrayBuffer owns it */
  size_t total = 0;
  if (try_sqpoll) {
    memset(&p, 0, sizeof p);
    p.flags = IORING_SETUP_SQPOLL;
    p.sq_thread_idle = idle;
    fd = sys_setup(entries, &p);
    if (fd >= 0) r->sqpoll = 1;
    /* EPERM: SQPOLL needs privileges before 5.11 or is denied by policy; fall back. */
    else sqpoll_errno = errno;
  }
#if defined(IORING_SETUP_COOP_TASKRUN) && defined(IORING_SETUP_TASKRUN_FLAG)
  if (fd < 0) {
    /* Linux >= 5.19; not with SQPOLL (whose thread runs the completions itself). */
    memset(&p, 0, sizeof p);
    p.flags = IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG;
    fd = sys_setup(entries, &p);
    /* EINVAL: a kernel without these flags. Any other refusal is retried without them. */
    if (fd >= 0) r->coop = 1;
  }
#endif
  if (fd < 0) {
    memset(&p, 0, sizeof p);
    fd = sys_setup(entries, &p);
    if (fd < 0) { err = errno; free(r); return throw_errno(env, "io_uring_setup", err); }
  }
  r->fd = fd;
  r->features = p.features;
  const char *failed = NULL;
  if ((err = map_rings(r, &p)) != 0) { failed = "mmap(io_uring rings)"; goto fail; }

  total = (size_t)buf_count * buf_size;
  int rc;
  if (buf_count > 0) {
    mem = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (mem == MAP_FAILED) { mem = NULL; err = errno; failed = "mmap(buffer pool)"; goto fail; }
    r->zero_base = mmap(NULL, zero_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (r->zero_base == MAP_FAILED) { r->zero_base = NULL; err = errno; failed = "mmap(zero buffer)"; goto fail; }
    r->zero_size = zero_size;
    struct iovec *iov = calloc(buf_count + 1, sizeof *iov);
    if (iov == NULL) { err = ENOMEM; failed = "calloc"; goto fail; }
    for (uint32_t i = 0; i < buf_count; i++) {
      iov[i].iov_base = (char *)mem + (size_t)i * buf_size;
      iov[i].iov_len = buf_size;
    }
    iov[buf_count].iov_base = r->zero_base;
    iov[buf_count].iov_len = zero_size;
    rc = sys_register(fd, IORING_REGISTER_BUFFERS, iov, buf_count + 1);
    free(iov);
    if (rc < 0) { err = errno; failed = "io_uring_register(IORING_REGISTER_BUFFERS)"; goto fail; }
  }

  int *fds = malloc(slots * sizeof(int));
  if (fds == NULL) { err = ENOMEM; failed = "malloc"; goto fail; }
  for (uint32_t i = 0; i < slots; i++) fds[i] = -1; /* sparse: slots are filled by updateFile */
  rc = sys_register(fd, IORING_REGISTER_FILES, fds, slots);
  free(fds);
  if (rc < 0) { err = errno; failed = "io_uring_register(IORING_REGISTER_FILES)"; goto fail; }

  r->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (r->efd < 0) { err = errno; failed = "eventfd"; goto fail; }
  rc = sys_register(fd, IORING_REGISTER_EVENTFD, &r->efd, 1);
  if (rc < 0) { err = errno; failed = "io_uring_register(IORING_REGISTER_EVENTFD)"; goto fail; }

  r->pool_base = (char *)mem;
  r->buf_size = buf_size;
  r->buf_count = buf_count;
  napi_value out, handle, ab;
  CHECK(napi_create_object(env, &out));
  CHECK(napi_create_external(env, r, ring_finalize, NULL, &handle));
  /* The pool memory belongs to the ArrayBuffer, so JS can never touch unmapped memory. */
  if (mem == NULL) {
    CHECK(napi_create_arraybuffer(env, 0, NULL, &ab));
  } else if (napi_create_external_arraybuffer(env, mem, total, buffers_finalize, (void *)(uintptr_t)total, &ab) != napi_ok) {
    munmap(mem, total);
    /* The handle's finalizer releases the ring. */
    napi_throw_error(env, "EINTERNAL", "corewal uring: external ArrayBuffers are not available in this runtime");
    return NULL;
  }
  napi_set_named_property(env, out, "handle", handle);
  napi_set_named_property(env, out, "buffers", ab);
  set_num(env, out, "sqEntries", r->sq_entries);
  set_num(env, out, "cqEntries", r->cq_entries);
  set_bool(env, out, "sqpoll", r->sqpoll);
  set_bool(env, out, "coopTaskrun", r->coop);
  set_num(env, out, "sqpollErrno", sqpoll_errno);
  set_num(env, out, "features", r->features);
  return out;

fail:
  if (mem != NULL) munmap(mem, total);
  ring_shutdown(r, NULL);
  free(r);
  return throw_errno(env, failed, err);
}

/* ---- submission --------------------------------------------------------------------- */

/* Hands published SQEs to the kernel: a wake-up for a sleeping SQPOLL thread, else io_uring_enter. */
static int kick(ring_t *r) {
  if (r->sqpoll) {
    /* Full barrier: the tail store must be visible before reading NEED_WAKEUP (see io_uring(7)). */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (__atomic_load_n(r->sq_kflags, __ATOMIC_RELAXED) & IORING_SQ_NEED_WAKEUP) {
      if (sys_enter(r->fd, 0, 0, IORING_ENTER_SQ_WAKEUP) < 0 && errno != EINTR) return -errno;
    }
    r->to_submit = 0;
    return 0;
  }
  while (r->to_submit > 0) {
    int n = sys_enter(r->fd, r->to_submit, 0, 0);
    if (n < 0) {
      int e = errno;
      if (e == EINTR) continue;
      /* EAGAIN/EBUSY: the kernel is short of resources; the SQEs stay queued for the next flush. */
      if (e == EAGAIN || e == EBUSY) return 0;
      return -e;
    }
    if (n == 0) break;
    r->to_submit -= (unsigned)n;
  }
  return 0;
}

/*
 * submit(handle, Float64Array ops, count, large) -> SQEs published. `large` holds the
 * Uint8Arrays OPK_WRITE descriptors point into; JS keeps each alive until its completion
 * (V8 never moves an ArrayBuffer's backing store).
 */
static napi_value js_submit(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 4) { napi_throw_type_error(env, "EINVAL", "submit(handle, ops, count, large)"); return NULL; }
  ring_t *r = get_ring(env, argv[0]);
  if (r == NULL) return NULL;
  double *ops;
  size_t len;
  uint32_t count;
  if (!get_f64_array(env, argv[1], &ops, &len)) return NULL;
  if (!get_u32(env, argv[2], &count) || (size_t)count * OP_STRIDE > len) {
    napi_throw_range_error(env, "EINVAL", "submit: count exceeds the descriptor array");
    return NULL;
  }
  unsigned head = __atomic_load_n(r->sq_khead, __ATOMIC_ACQUIRE);
  unsigned space = r->sq_entries - (r->sq_local_tail - head);
  if (count > space) count = space;
  for (uint32_t i = 0; i < count; i++) {
    const double *d = ops + (size_t)i * OP_STRIDE;
    unsigned idx = r->sq_local_tail & r->sq_mask;
    struct io_uring_sqe *sqe = &r->sqes[idx];
    memset(sqe, 0, sizeof *sqe);
    int kind = (int)d[0];
    unsigned flags = (unsigned)d[7];
    sqe->fd = (int)d[1]; /* index into the registered file table */
    sqe->flags = IOSQE_FIXED_FILE;
    if (flags & OPF_LINK) sqe->flags |= IOSQE_IO_LINK;
    /* JS sets it only where the ring reported IORING_FEAT_CQE_SKIP. */
    if (flags & OPF_SKIP) sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    sqe->user_data = (uint64_t)d[6];
    if (kind == OPK_WRITE) {
      napi_value el;
      void *data = NULL;
      size_t blen = 0;
      uint32_t bo = (uint32_t)d[3], bl = (uint32_t)d[4];
      if (napi_get_element(env, argv[3], (uint32_t)d[2], &el) != napi_ok ||
          napi_get_buffer_info(env, el, &data, &blen) != napi_ok || bo > blen || bl > blen - bo) {
        r->sq_local_tail -= i;
        napi_throw_range_error(env, "EINVAL", "submit: write outside its buffer");
        return NULL;
      }
      sqe->opcode = IORING_OP_WRITE;
      sqe->addr = (uint64_t)(uintptr_t)((char *)data + bo);
      sqe->len = bl;
      sqe->off = (uint64_t)d[5];
      if (flags & OPF_DSYNC) sqe->rw_flags = RWF_DSYNC;
    } else if (kind == OPK_WRITE_FIXED) {
      sqe->opcode = IORING_OP_WRITE_FIXED;
      uint32_t bi = (uint32_t)d[2], bo = (uint32_t)d[3], bl = (uint32_t)d[4];
      char *base = bi == r->buf_count ? r->zero_base : r->pool_base + (size_t)bi * r->buf_size;
      uint32_t cap = bi == r->buf_count ? r->zero_size : r->buf_size;
      if (bi > r->buf_count || bo > cap || bl > cap - bo) {
        /* Nothing of this batch is published yet: the SQ tail only moves below. */
        r->sq_local_tail -= i;
        napi_throw_range_error(env, "EINVAL", "submit: write outside its registered buffer");
        return NULL;
      }
      sqe->addr = (uint64_t)(uintptr_t)(base + bo);
      sqe->len = bl;
      sqe->off = (uint64_t)d[5];
      sqe->buf_index = (uint16_t)bi;
      if (flags & OPF_DSYNC) sqe->rw_flags = RWF_DSYNC;
    } else {
      sqe->opcode = IORING_OP_FSYNC;
      sqe->fsync_flags = IORING_FSYNC_DATASYNC;
    }
    r->sq_array[idx] = idx;
    r->sq_local_tail++;
  }
  __atomic_store_n(r->sq_ktail, r->sq_local_tail, __ATOMIC_RELEASE);
  r->to_submit += count;
  int rc = kick(r);
  if (rc < 0) return throw_errno(env, "io_uring_enter", -rc);
  napi_value n;
  CHECK(napi_create_uint32(env, count, &n));
  return n;
}

/* ---- completion --------------------------------------------------------------------- */

/*
 * With COOP_TASKRUN, completions the kernel finished elsewhere wait for this thread's next
 * syscall; IORING_SQ_TASKRUN flags them. Enter the kernel only then, so that polling still
 * makes no syscall while nothing waits. Returns 0 or -errno.
 */
static int run_task_work(ring_t *r) {
#ifdef IORING_SQ_TASKRUN
  if (r->coop && (__atomic_load_n(r->sq_kflags, __ATOMIC_ACQUIRE) & IORING_SQ_TASKRUN)) {
    if (sys_enter(r->fd, 0, 0, IORING_ENTER_GETEVENTS) < 0 && errno != EINTR && errno != EAGAIN && errno != EBUSY) return -errno;
  }
#else
  (void)r;
#endif
  return 0;
}

static unsigned cq_ready(ring_t *r) {
  return __atomic_load_n(r->cq_ktail, __ATOMIC_ACQUIRE) - *r->cq_khead;
}

/* reap(handle, Float64Array out) -> CQEs copied as (userData, res) pairs. No syscall
 * unless the kernel flagged completions waiting for this thread (COOP_TASKRUN) or a CQ
 * overflow, which io_uring_enter(GETEVENTS) flushes. */
static napi_value js_reap(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  ring_t *r = get_ring(env, argv[0]);
  if (r == NULL) return NULL;
  double *out;
  size_t len;
  if (!get_f64_array(env, argv[1], &out, &len)) return NULL;
  size_t max = len / 2;
  int rc = run_task_work(r);
  if (rc < 0) return throw_errno(env, "io_uring_enter(GETEVENTS)", -rc);
  unsigned head = *r->cq_khead;
  unsigned tail = __atomic_load_n(r->cq_ktail, __ATOMIC_ACQUIRE);
  if (head == tail && (__atomic_load_n(r->sq_kflags, __ATOMIC_RELAXED) & IORING_SQ_CQ_OVERFLOW)) {
    if (sys_enter(r->fd, 0, 0, IORING_ENTER_GETEVENTS) < 0 && errno != EINTR && errno != EAGAIN && errno != EBUSY)
      return throw_errno(env, "io_uring_enter(GETEVENTS)", errno);
    tail = __atomic_load_n(r->cq_ktail, __ATOMIC_ACQUIRE);
  }
  size_t n = 0;
  while (head != tail && n < max) {
    const struct io_uring_cqe *c = &r->cqes[head & r->cq_mask];
    out[2 * n] = (double)c->user_data;
    out[2 * n + 1] = (double)c->res;
    n++;
    head++;
  }
  __atomic_store_n(r->cq_khead, head, __ATOMIC_RELEASE);
  napi_value v;
  CHECK(napi_create_uint32(env, (uint32_t)n, &v));
  return v;
}

static napi_value js_cq_ready(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  ring_t *r = get_ring(env, argv[0]);
  if (r == NULL) return NULL;
  int rc = run_task_work(r);
  if (rc < 0) return throw_errno(env, "io_uring_enter(GETEVENTS)", -rc);
  napi_value v;
  CHECK(napi_create_uint32(env, cq_ready(r), &v));
  return v;
}

/* wait(handle, minComplete): blocks in io_uring_enter until that many CQEs are ready.
 * Only for close/deregister, which must not return while I/O on the fd is in flight. */
static napi_value js_wait(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  ring_t *r = get_ring(env, argv[0]);
  if (r == NULL) return NULL;
  uint32_t min;
  if (!get_u32(env, argv[1], &min)) { napi_throw_type_error(env, "EINVAL", "wait(handle, min)"); return NULL; }
  int rc = kick(r);
  if (rc < 0) return throw_errno(env, "io_uring_enter", -rc);
  while (cq_ready(r) < min) {
    if (sys_enter(r->fd, 0, min, IORING_ENTER_GETEVENTS) < 0 && errno != EINTR) return throw_errno(env, "io_uring_enter", errno);
  }
  return NULL;
}

/* updateFile(handle, slot, fd): installs (fd >= 0) or clears (fd = -1) a registered file slot. */
static napi_value js_update_file(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  ring_t *r = get_ring(env, argv[0]);
  if (r == NULL) return NULL;
  uint32_t slot;
  int32_t fd;
  if (!get_u32(env, argv[1], &slot) || napi_get_value_int32(env, argv[2], &fd) != napi_ok) {
    napi_throw_type_error(env, "EINVAL", "updateFile(handle, slot, fd)");
    return NULL;
  }
  struct io_uring_files_update up;
  memset(&up, 0, sizeof up);
  up.offset = slot;
  up.fds = (uint64_t)(uintptr_t)&fd;
  int rc;
  do rc = sys_register(r->fd, IORING_REGISTER_FILES_UPDATE, &up, 1);
  while (rc < 0 && errno == EINTR);
  if (rc < 0) return throw_errno(env, "io_uring_register(IORING_REGISTER_FILES_UPDATE)", errno);
  return NULL;
}

/* ---- libuv wake-up ------------------------------------------------------------------ */

static void on_readable(uv_poll_t *h, int status, int events) {
  (void)events;
  poll_box_t *box = (poll_box_t *)h->data;
  ring_t *r = box->ring;
  if (r == NULL || r->closed) return;
  uint64_t v;
  /* Reset the counter so the level-triggered poll quiets until the next CQE. */
  while (read(r->efd, &v, sizeof v) < 0 && errno == EINTR) {}
  (void)status;
  /* Called whether or not JS is waiting: taking CQEs starts chains queued behind them. */
  if (r->callback == NULL) return;
  napi_env env = r->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value fn, recv, result;
  if (napi_get_reference_value(env, r->callback, &fn) == napi_ok && fn != NULL) {
    napi_get_global(env, &recv);
    /* make_callback, not call_function: it drains the microtask queue, so promises resolved here settle now. */
    r->in_callback = 1;
    napi_status st = napi_make_callback(env, r->actx, recv, fn, 0, NULL, &result);
    r->in_callback = 0;
    if (r->closed) release_js(r);
    if (st == napi_pending_exception) {
      napi_value exc;
      napi_get_and_clear_last_exception(env, &exc);
      napi_fatal_exception(env, exc);
    }
  }
  napi_close_handle_scope(env, scope);
}

/*
 * watch(handle, callback): polls the eventfd for the ring's lifetime, calling back on every
 * wake-up. The handle starts unreferenced — it does not keep the event loop alive — and
 * setWaiting(true) references it while a waitForCompletions() promise is pending.
 * (Starting and stopping it per wait would cost two epoll_ctl calls each time.)
 */
static napi_value js_watch(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  ring_t *r = get_ring(env, argv[0]);
  if (r == NULL) return NULL;
  if (r->poll != NULL) { napi_throw_error(env, "EINVAL", "watch: already watching"); return NULL; }
  uv_loop_t *loop;
  CHECK(napi_get_uv_event_loop(env, &loop));
  poll_box_t *box = calloc(1, sizeof *box);
  if (box == NULL) return throw_errno(env, "calloc", ENOMEM);
  int rc = uv_poll_init(loop, &box->handle, r->efd);
  if (rc != 0) { free(box); return throw_errno(env, "uv_poll_init", -rc); }
  box->ring = r;
  box->handle.data = box;
  r->poll = box;
  rc = uv_poll_start(&box->handle, UV_READABLE, on_readable);
  if (rc != 0) return throw_errno(env, "uv_poll_start", -rc);
  uv_unref((uv_handle_t *)&box->handle);
  CHECK(napi_create_reference(env, argv[1], 1, &r->callback));
  napi_value name;
  CHECK(napi_create_string_utf8(env, "corewal:UringStorageIo", NAPI_AUTO_LENGTH, &name));
  CHECK(napi_async_init(env, NULL, name, &r->actx));
  CHECK(napi_add_async_cleanup_hook(env, cleanup_hook, r, &r->cleanup));
  return NULL;
}

/* setWaiting(handle, bool): a pending wait keeps the event loop alive; an idle ring does not. */
static napi_value js_set_waiting(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  ring_t *r = get_ring(env, argv[0]);
  if (r == NULL) return NULL;
  bool on;
  CHECK(napi_get_value_bool(env, argv[1], &on));
  if (r->poll == NULL) { napi_throw_error(env, "EINVAL", "setWaiting: not watching"); return NULL; }
  if (on && !r->polling) {
    uv_ref((uv_handle_t *)&r->poll->handle);
    r->polling = 1;
  } else if (!on && r->polling) {
    uv_unref((uv_handle_t *)&r->poll->handle);
    r->polling = 0;
  }
  return NULL;
}

static napi_value js_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  void *p = NULL;
  if (napi_get_value_external(env, argv[0], &p) != napi_ok || p == NULL) {
    napi_throw_type_error(env, "EINVAL", "close(handle)");
    return NULL;
  }
  ring_shutdown((ring_t *)p, NULL);
  return NULL;
}

NAPI_MODULE_INIT() {
  napi_property_descriptor props[] = {
    {"probe", NULL, js_probe, NULL, NULL, NULL, napi_enumerable, NULL},
    {"create", NULL, js_create, NULL, NULL, NULL, napi_enumerable, NULL},
    {"submit", NULL, js_submit, NULL, NULL, NULL, napi_enumerable, NULL},
    {"reap", NULL, js_reap, NULL, NULL, NULL, napi_enumerable, NULL},
    {"cqReady", NULL, js_cq_ready, NULL, NULL, NULL, napi_enumerable, NULL},
    {"wait", NULL, js_wait, NULL, NULL, NULL, napi_enumerable, NULL},
    {"updateFile", NULL, js_update_file, NULL, NULL, NULL, napi_enumerable, NULL},
    {"watch", NULL, js_watch, NULL, NULL, NULL, napi_enumerable, NULL},
    {"setWaiting", NULL, js_set_waiting, NULL, NULL, NULL, napi_enumerable, NULL},
    {"close", NULL, js_close, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok) return NULL;
  return exports;
}
