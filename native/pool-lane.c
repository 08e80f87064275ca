// A sticky lane: one fd's jobs (write, write + fdatasync, fdatasync) run on a libuv pool
// thread that, after a job, waits a moment for the next one instead of returning to libuv.
//
// Why: every uv_queue_work takes libuv's pool mutex and signals its condvar from the event
// loop, and every completion takes the loop's work-queue mutex on both sides. On a small
// machine the thread holding one of those is often preempted, and the event loop then sleeps
// on it: calls that take 0.1 ms on the CPU took 1–3.5 ms of wall time, about once a second,
// in a group commit of one producer (perf sched: asleep in pthread_cond_signal under
// uv_queue_work, and in uv__work_done). A lane takes neither per round: the loop hands the
// next job over through one slot and wakes the parked thread with a futex, and the thread
// reports through a uv_async_t, which is lock-free on both sides. The pool thread is still
// libuv's: a lane queues an ordinary job when it has no thread, and gives the thread back
// after `linger` idle microseconds, or at once when more lanes than half the pool are parked
// (so that other pool users — fs, dns, zlib, crypto — are never kept waiting for long).
//
// One job at a time per lane: the caller (ThreadPoolStorageIo) submits only once the
// previous job's result has been delivered, and runs anything that would overlap it the
// ordinary way.
//
// State of the lane's thread (`state`, also the futex word). Who moves it:
//   NONE -> RUNNING     the loop, queuing a job for a new thread
//   PARKED -> RUNNING   the loop, handing a job to the parked thread (then FUTEX_WAKE)
//   RUNNING -> PARKED   the thread, idle, about to wait
//   PARKED -> NONE      the thread, giving itself back after `linger` (or on close)
//   RUNNING -> NONE     the thread, giving itself back at once
// Every hand-over stores `has_job` then reads `state`, and the thread stores `state` then
// reads `has_job` (both sequentially consistent): one of the two always sees the other, so a
// job is never left in the slot with no thread to run it.

#define _GNU_SOURCE
#include <node_api.h>
#include <uv.h>

#include <errno.h>
#include <linux/futex.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include "pool-io.h"

enum { NONE = 0, RUNNING = 1, PARKED = 2 };

typedef struct lane {
  _Atomic uint32_t state;
  _Atomic int has_job;
  _Atomic int closing;
  // References: the JS handle (until finalized), the async handle (until closed), each thread run.
  _Atomic int refs;
  // Threads between deciding to signal `async` and having done so; close waits them out.
  _Atomic int signalling;
  uint32_t linger_us;
  // The job: written by the loop before has_job is set, read by the thread after.
  int fd;
  int sync;
  int64_t position;
  struct iovec* iov;
  uint32_t iovcnt;
  uint32_t iovcap;
  size_t total;
  // The result: written by the thread before it signals `async`.
  size_t written;
  int write_errno;
  int sync_errno;
  _Atomic int has_result;
  // laneStress: results are counted here instead of signalled, threads are plain pthreads.
  bool stress;
  _Atomic uint32_t stress_results;
  // Loop thread only.
  uv_async_t async;
  napi_env env;
  napi_ref callback;
  napi_ref buffers;
  napi_async_context context;
  bool inflight;
  bool closed;
  double jobs;
  double threads;
  double wakes;
} lane_t;

typedef struct {
  napi_async_work work;
  lane_t* lane;
} run_t;

// Lanes parked at this moment, process-wide (libuv's pool is process-wide), and how many may be.
static _Atomic int parked_lanes = 0;
static _Atomic int max_parked = 2;

static long futex(_Atomic uint32_t* word, int op, uint32_t val, const struct timespec* timeout) {
  return syscall(SYS_futex, (uint32_t*)word, op, val, timeout, NULL, 0);
}

static uint64_t now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000000u + (uint64_t)t.tv_nsec / 1000u;
}

static void lane_unref(lane_t* l) {
  if (atomic_fetch_sub(&l->refs, 1) == 1) {
    free(l->iov);
    free(l);
  }
}

static bool cas(_Atomic uint32_t* word, uint32_t from, uint32_t to) {
  return atomic_compare_exchange_strong(word, &from, to);
}

// laneStress only: a random pause of up to a few microseconds between two steps of the
// thread's side, so that the loop's hand-overs land inside the windows between them.
static void widen(lane_t* l) {
  if (!l->stress) return;
  static __thread uint64_t x = 88172645463325252ull;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  uint64_t until = now_us() + (x & 3);
  if (x & 4) sched_yield();
  while (now_us() < until) {}
}

// Parks the thread until the loop hands it a job (true) or it gave itself back (false).
static bool park(lane_t* l) {
  bool may_linger = l->linger_us > 0 && !atomic_load(&l->closing);
  if (may_linger) {
    if (atomic_fetch_add(&parked_lanes, 1) >= max_parked) {
      atomic_fetch_sub(&parked_lanes, 1);
      may_linger = false;
    }
  }
  if (!may_linger) {
    widen(l);
    atomic_store(&l->state, NONE);
    widen(l);
    // A job that slipped in after the slot was last looked at: run it if the loop has not
    // already queued a new thread for it (it has, if it saw NONE first).
    return atomic_load(&l->has_job) && cas(&l->state, NONE, RUNNING);
  }
  bool handed = true;
  widen(l);
  atomic_store(&l->state, PARKED);
  widen(l);
  if (!atomic_load(&l->has_job)) {
    uint64_t deadline = now_us() + l->linger_us;
    for (;;) {
      uint64_t t = now_us();
      if (t >= deadline || atomic_load(&l->closing)) {
        widen(l);
        if (cas(&l->state, PARKED, NONE)) handed = false;
        break;  // else the loop moved it to RUNNING just now: a job is in the slot
      }
      uint64_t left = deadline - t;
      struct timespec ts = {(time_t)(left / 1000000u), (long)(left % 1000000u) * 1000};
      futex(&l->state, FUTEX_WAIT_PRIVATE, PARKED, &ts);
      if (atomic_load(&l->state) != PARKED) break;
    }
  } else if (!cas(&l->state, PARKED, RUNNING)) {
    // The loop saw PARKED and moved it to RUNNING itself: the job is ours either way.
  }
  atomic_fetch_sub(&parked_lanes, 1);
  return handed;
}

static void lane_run(lane_t* l) {
  for (;;) {
    if (atomic_exchange(&l->has_job, 0)) {
      int werr, serr;
      l->written = write_then_sync(l->fd, l->iov, (int)l->iovcnt, l->position, l->total, l->sync, &werr, &serr);
      l->write_errno = werr;
      l->sync_errno = serr;
      atomic_store(&l->has_result, 1);
      atomic_fetch_add(&l->signalling, 1);
      if (l->stress) {
        atomic_fetch_add(&l->stress_results, 1);
        futex(&l->stress_results, FUTEX_WAKE_PRIVATE, 1, NULL);
      } else if (!atomic_load(&l->closing)) {
        uv_async_send(&l->async);
      }
      atomic_fetch_sub(&l->signalling, 1);
      continue;
    }
    if (!park(l)) break;
  }
  lane_unref(l);
}

static void lane_thread(napi_env env, void* data) { lane_run(((run_t*)data)->lane); }

static void* stress_thread(void* arg) {
  lane_run((lane_t*)arg);
  return NULL;
}

static void run_done(napi_env env, napi_status status, void* data) {
  run_t* r = (run_t*)data;
  napi_delete_async_work(env, r->work);
  free(r);
}

// Loop thread: a new pool thread for the lane (the lane's state was moved NONE -> RUNNING).
static bool start_thread(lane_t* l) {
  if (l->stress) {
    pthread_t t;
    atomic_fetch_add(&l->refs, 1);
    if (pthread_create(&t, NULL, stress_thread, l) != 0) {
      atomic_fetch_sub(&l->refs, 1);
      return false;
    }
    pthread_detach(t);
    l->threads++;
    return true;
  }
  run_t* r = (run_t*)calloc(1, sizeof(run_t));
  if (r == NULL) return false;
  r->lane = l;
  napi_value name;
  napi_create_string_utf8(l->env, "corewal.lane", NAPI_AUTO_LENGTH, &name);
  atomic_fetch_add(&l->refs, 1);
  if (napi_create_async_work(l->env, NULL, name, lane_thread, run_done, r, &r->work) != napi_ok) {
    atomic_fetch_sub(&l->refs, 1);
    free(r);
    return false;
  }
  if (napi_queue_async_work(l->env, r->work) != napi_ok) {
    napi_delete_async_work(l->env, r->work);
    atomic_fetch_sub(&l->refs, 1);
    free(r);
    return false;
  }
  l->threads++;
  return true;
}

// Loop thread: make sure a thread will look at the slot (or the closing flag).
static bool kick(lane_t* l) {
  for (;;) {
    uint32_t s = atomic_load(&l->state);
    if (s == RUNNING) return true;
    if (s == PARKED) {
      if (cas(&l->state, PARKED, RUNNING)) {
        l->wakes++;
        futex(&l->state, FUTEX_WAKE_PRIVATE, 1, NULL);
        return true;
      }
    } else if (cas(&l->state, NONE, RUNNING)) {
      if (start_thread(l)) return true;
      atomic_store(&l->state, NONE);
      return false;
    }
  }
}

static void on_async(uv_async_t* handle) {
  lane_t* l = (lane_t*)handle->data;
  if (!atomic_exchange(&l->has_result, 0) || !l->inflight) return;
  l->inflight = false;
  uv_unref((uv_handle_t*)&l->async);
  napi_env env = l->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_delete_reference(env, l->buffers);
  l->buffers = NULL;
  napi_value cb, recv, argv[3], ignored;
  napi_get_reference_value(env, l->callback, &cb);
  napi_get_global(env, &recv);
  napi_create_int32(env, l->write_errno, &argv[0]);
  napi_create_double(env, (double)l->written, &argv[1]);
  napi_create_int32(env, l->sync_errno, &argv[2]);
  // make_callback, not call_function: it runs the microtasks (promise reactions) the callback
  // queued before returning to libuv, as Node does after its own callbacks.
  if (napi_make_callback(env, l->context, recv, cb, 3, argv, &ignored) == napi_pending_exception) {
    napi_value err;
    napi_get_and_clear_last_exception(env, &err);
    napi_fatal_exception(env, err);
  }
  napi_close_handle_scope(env, scope);
}

static void on_closed(uv_handle_t* handle) { lane_unref((lane_t*)handle->data); }

static void close_lane(lane_t* l) {
  if (l->closed) return;
  l->closed = true;
  atomic_store(&l->closing, 1);
  // A parked thread gives itself back now rather than after its linger.
  if (cas(&l->state, PARKED, RUNNING)) futex(&l->state, FUTEX_WAKE_PRIVATE, 1, NULL);
  // A thread still running a job (only at environment teardown) must not signal a closed handle.
  while (atomic_load(&l->signalling) > 0) sched_yield();
  if (l->buffers != NULL) napi_delete_reference(l->env, l->buffers);
  l->buffers = NULL;
  napi_delete_reference(l->env, l->callback);
  napi_async_destroy(l->env, l->context);
  napi_remove_env_cleanup_hook(l->env, (void (*)(void*))close_lane, l);
  uv_close((uv_handle_t*)&l->async, on_closed);
}

static void finalize_lane(napi_env env, void* data, void* hint) {
  close_lane((lane_t*)data);
  lane_unref((lane_t*)data);
}

static lane_t* get_lane(napi_env env, napi_value v) {
  void* p = NULL;
  if (napi_get_value_external(env, v, &p) != napi_ok || p == NULL) {
    napi_throw_type_error(env, NULL, "corewal: not a lane");
    return NULL;
  }
  lane_t* l = (lane_t*)p;
  if (l->closed) {
    napi_throw_error(env, NULL, "corewal: the lane is closed");
    return NULL;
  }
  return l;
}

// createLane(callback(writeErrno, written, syncErrno), lingerUs) -> lane
static napi_value create_lane(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  napi_valuetype t = napi_undefined;
  double linger = 0;
  if (argc < 2 || napi_typeof(env, argv[0], &t) != napi_ok || t != napi_function || napi_get_value_double(env, argv[1], &linger) != napi_ok ||
      !(linger >= 0 && linger <= 1e6)) {
    napi_throw_type_error(env, NULL, "createLane(callback: function, lingerUs: number in [0, 1e6])");
    return NULL;
  }
  uv_loop_t* loop = NULL;
  lane_t* l = (lane_t*)calloc(1, sizeof(lane_t));
  if (l == NULL || napi_get_uv_event_loop(env, &loop) != napi_ok || uv_async_init(loop, &l->async, on_async) != 0) {
    free(l);
    napi_throw_error(env, NULL, "createLane: could not set up the lane");
    return NULL;
  }
  l->async.data = l;
  uv_unref((uv_handle_t*)&l->async);  // an idle lane does not keep the process alive
  atomic_init(&l->refs, 2);
  l->env = env;
  l->linger_us = (uint32_t)linger;
  napi_value name, ext;
  napi_create_string_utf8(env, "corewal.lane", NAPI_AUTO_LENGTH, &name);
  napi_async_init(env, NULL, name, &l->context);
  napi_create_reference(env, argv[0], 1, &l->callback);
  napi_add_env_cleanup_hook(env, (void (*)(void*))close_lane, l);
  napi_create_external(env, l, finalize_lane, NULL, &ext);
  return ext;
}

// laneSubmit(lane, fd, buffers: Uint8Array[], position, sync: boolean): runs the write (if any
// buffers) then, with `sync`, the fdatasync; the result comes to the lane's callback.
static napi_value lane_submit(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t fd;
  double position;
  bool sync = false;
  uint32_t n = 0;
  if (argc < 5 || !write_args(env, argv + 1, &fd, &n, &position) || napi_get_value_bool(env, argv[4], &sync) != napi_ok) {
    napi_throw_type_error(env, NULL, "laneSubmit(lane, fd: number, buffers: Uint8Array[], position: number >= 0, sync: boolean)");
    return NULL;
  }
  lane_t* l = get_lane(env, argv[0]);
  if (l == NULL) return NULL;
  if (l->inflight) {
    napi_throw_error(env, NULL, "laneSubmit: the lane's previous job has not completed");
    return NULL;
  }
  if (n > l->iovcap) {
    struct iovec* iov = (struct iovec*)realloc(l->iov, n * sizeof(struct iovec));
    if (iov == NULL) {
      napi_throw_error(env, NULL, "laneSubmit: out of memory");
      return NULL;
    }
    l->iov = iov;
    l->iovcap = n;
  }
  size_t total = 0;
  if (iov_from_array(env, argv[2], n, l->iov, &total) != 0) return NULL;
  l->fd = fd;
  l->sync = sync;
  l->position = (int64_t)position;
  l->iovcnt = n;
  l->total = total;
  // The thread reads the buffers until it reports: keep them alive (and unmoved) until then.
  napi_create_reference(env, argv[2], 1, &l->buffers);
  l->inflight = true;
  l->jobs++;
  uv_ref((uv_handle_t*)&l->async);
  atomic_store(&l->has_job, 1);
  if (!kick(l)) {
    atomic_store(&l->has_job, 0);
    l->inflight = false;
    uv_unref((uv_handle_t*)&l->async);
    napi_delete_reference(env, l->buffers);
    l->buffers = NULL;
    napi_throw_error(env, NULL, "laneSubmit: could not queue a pool job");
  }
  return NULL;
}

// The lane passed as the only argument, closed or not; NULL (with a TypeError thrown) if none.
static lane_t* lane_arg(napi_env env, napi_callback_info info, const char* usage) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  void* p = NULL;
  if (argc < 1 || napi_get_value_external(env, argv[0], &p) != napi_ok || p == NULL) {
    napi_throw_type_error(env, NULL, usage);
    return NULL;
  }
  return (lane_t*)p;
}

static napi_value lane_close(napi_env env, napi_callback_info info) {
  lane_t* l = lane_arg(env, info, "laneClose(lane)");
  if (l == NULL) return NULL;
  if (l->inflight) {
    napi_throw_error(env, NULL, "laneClose: a job is still running");
    return NULL;
  }
  close_lane(l);
  return NULL;
}

// laneStats(lane) -> { jobs, threads, wakes }: jobs run, pool jobs queued for them, parked threads woken.
static napi_value lane_stats(napi_env env, napi_callback_info info) {
  lane_t* l = lane_arg(env, info, "laneStats(lane)");
  if (l == NULL) return NULL;
  napi_value o, v;
  napi_create_object(env, &o);
  napi_create_double(env, l->jobs, &v);
  napi_set_named_property(env, o, "jobs", v);
  napi_create_double(env, l->threads, &v);
  napi_set_named_property(env, o, "threads", v);
  napi_create_double(env, l->wakes, &v);
  napi_set_named_property(env, o, "wakes", v);
  return o;
}

// laneStress(handOvers, lingerUs, maxPauseUs, seed) -> { handOvers, threads, wakes, lost }:
// the lane's hand-over protocol without I/O, the calling thread as the event loop and plain
// threads as the pool's, with random pauses between a result and the next job so that hand-
// overs land on every step of a thread's give-back. A job that no thread ever runs is lost
// (counted after a second's wait); a correct lane loses none. For tests.
static napi_value lane_stress(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  double n = 0, linger = 0, pause = 0, seed = 0;
  if (argc < 4 || napi_get_value_double(env, argv[0], &n) != napi_ok || napi_get_value_double(env, argv[1], &linger) != napi_ok ||
      napi_get_value_double(env, argv[2], &pause) != napi_ok || napi_get_value_double(env, argv[3], &seed) != napi_ok || !(n >= 0) ||
      !(linger >= 0 && linger <= 1e6) || !(pause >= 0 && pause <= 1e6)) {
    napi_throw_type_error(env, NULL, "laneStress(handOvers, lingerUs, maxPauseUs, seed)");
    return NULL;
  }
  lane_t* l = (lane_t*)calloc(1, sizeof(lane_t));
  if (l == NULL) {
    napi_throw_error(env, NULL, "laneStress: out of memory");
    return NULL;
  }
  atomic_init(&l->refs, 1);
  l->stress = true;
  l->linger_us = (uint32_t)linger;
  uint64_t x = (uint64_t)seed * 2654435761u + 1;
  double lost = 0;
  uint32_t done = 0;
  for (double i = 0; i < n; i++) {
    atomic_store(&l->has_job, 1);
    if (!kick(l)) {
      lost++;
      atomic_store(&l->has_job, 0);
      continue;
    }
    uint64_t deadline = now_us() + 1000000;
    for (;;) {
      uint32_t r = atomic_load(&l->stress_results);
      if (r != done) {
        done = r;
        break;
      }
      if (now_us() >= deadline) {
        lost++;
        break;
      }
      struct timespec ts = {0, 1000000};
      futex(&l->stress_results, FUTEX_WAIT_PRIVATE, r, &ts);
    }
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    uint64_t wait = pause > 0 ? x % ((uint64_t)pause + 1) : 0;
    if (wait > 0) {
      uint64_t until = now_us() + wait;
      while (now_us() < until) {}  // spin: a sleep would wake far too late to hit the races
    } else if (x & 1) {
      sched_yield();
    }
  }
  atomic_store(&l->closing, 1);
  if (cas(&l->state, PARKED, RUNNING)) futex(&l->state, FUTEX_WAKE_PRIVATE, 1, NULL);
  uint64_t deadline = now_us() + 5000000;
  while (atomic_load(&l->refs) > 1 && now_us() < deadline) sched_yield();
  bool exited = atomic_load(&l->refs) == 1;
  napi_value o, v;
  napi_create_object(env, &o);
  napi_create_double(env, n, &v);
  napi_set_named_property(env, o, "handOvers", v);
  napi_create_double(env, l->threads, &v);
  napi_set_named_property(env, o, "threads", v);
  napi_create_double(env, l->wakes, &v);
  napi_set_named_property(env, o, "wakes", v);
  napi_create_double(env, lost, &v);
  napi_set_named_property(env, o, "lost", v);
  napi_get_boolean(env, exited, &v);
  napi_set_named_property(env, o, "threadsExited", v);
  if (exited) lane_unref(l);  // else a thread is stuck with it: leak rather than free under it
  return o;
}

void pool_lane_init(napi_env env, napi_value exports) {
  // The pool's size as libuv reads it (threadpool.c): 4 by default, 0 means 1, at most 1024.
  const char* size = getenv("UV_THREADPOOL_SIZE");
  long pool = size != NULL ? atol(size) : 4;
  if (pool == 0) pool = 1;
  if (pool < 0 || pool > 1024) pool = 1024;
  // Half of it, rounded down: with a pool of one thread no lane lingers at all.
  max_parked = (int)(pool / 2);
  napi_property_descriptor props[] = {
      {"createLane", NULL, create_lane, NULL, NULL, NULL, napi_default, NULL},
      {"laneSubmit", NULL, lane_submit, NULL, NULL, NULL, napi_default, NULL},
      {"laneClose", NULL, lane_close, NULL, NULL, NULL, napi_default, NULL},
      {"laneStats", NULL, lane_stats, NULL, NULL, NULL, napi_default, NULL},
      {"laneStress", NULL, lane_stress, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props);
}
