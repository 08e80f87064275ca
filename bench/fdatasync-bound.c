// The most durable records/s any design gets on a disk when each of P producers waits for
// its own record to be durable: P records per fdatasync round at best. This loop measures
// the rounds: T threads, each on its own preallocated file in DIR (or all on one file with
// "same"), writing 6.4 KB (64 records of 100 B) and fdatasyncing, as fast as they can.
//
//   cc -O2 -pthread bench/fdatasync-bound.c -o /tmp/fdatasync-bound
//   /tmp/fdatasync-bound DIR 1; /tmp/fdatasync-bound DIR 2; /tmp/fdatasync-bound DIR 4 same
//
// docs/PERFORMANCE.md ("Against the targets") quotes its figures.
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char* dir;
static int same = 0, shared_fd = -1;
static const double secs = 2.0;
static long counts[64];

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int prefilled(const char* name, size_t bytes) {
  char p[4096];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  int fd = open(p, O_CREAT | O_RDWR | O_TRUNC, 0644);
  if (fd < 0) { perror(p); exit(1); }
  char* z = calloc(1, bytes);
  if (pwrite(fd, z, bytes, 0) != (ssize_t)bytes || fdatasync(fd) != 0) { perror("prefill"); exit(1); }
  free(z);
  return fd;
}

static void* run(void* arg) {
  long id = (long)arg;
  char name[32];
  snprintf(name, sizeof name, "bound-%ld", id);
  int fd = same ? shared_fd : prefilled(name, 64 << 20);
  char buf[6400];
  memset(buf, 1, sizeof buf);
  off_t off = same ? (off_t)id * (1 << 20) : 0;
  long n = 0;
  for (double end = now() + secs; now() < end; n++) {
    if (pwrite(fd, buf, sizeof buf, off) != (ssize_t)sizeof buf || fdatasync(fd) != 0) { perror("write/fdatasync"); exit(1); }
    off += sizeof buf;
  }
  counts[id] = n;
  return NULL;
}

int main(int argc, char** argv) {
  if (argc < 3) { fprintf(stderr, "usage: %s DIR THREADS [same]\n", argv[0]); return 2; }
  dir = argv[1];
  int threads = atoi(argv[2]);
  if (threads < 1 || threads > 64) { fprintf(stderr, "THREADS: 1 to 64\n"); return 2; }
  same = argc > 3 && strcmp(argv[3], "same") == 0;
  if (same) shared_fd = prefilled("bound-shared", 256 << 20);
  pthread_t th[64];
  for (long i = 0; i < threads; i++) pthread_create(&th[i], NULL, run, (void*)i);
  long total = 0;
  for (int i = 0; i < threads; i++) { pthread_join(th[i], NULL); total += counts[i]; }
  printf("threads=%d %s fdatasyncs/s=%.0f\n", threads, same ? "one file" : "a file each", (double)total / secs);
  return 0;
}
