/*
 * The frontend unit tests' world (test_h1.c, test_h2.c, test_stream.c):
 * the fuzz drivers' in-process world (test/fuzz/fuzz_world.h: one worker
 * and its loop, one listener, one configuration generation, a stub
 * upstream on the same loop, connections accepted from a socketpair), no
 * listening socket for clients, and a test client on the other end of the
 * socketpair that the test writes to and reads from while it drives the
 * loop itself.
 *
 * Define FUZZ_NAME (the test's name) before including it.
 */
#ifndef SLUICE_TEST_FRONT_WORLD_H
#define SLUICE_TEST_FRONT_WORLD_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <time.h>

#include "../fuzz/fuzz_world.h"

/* The client end: everything sluice sent it so far, and whether sluice
 * closed (EOF) its side. */
struct tclient {
  int fd;
  char buf[1 << 18];
  size_t len;
  bool eof;
};

static inline double tc_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One turn of the world: the loop runs what is ready (flush pass
 * included), then the client reads what arrived. Returns bytes read. */
static inline size_t tc_pump(struct tclient *t) {
  ev_run(w.loop, EVRUN_NOWAIT);
  size_t got = 0;
  while (!t->eof && t->len < sizeof(t->buf)) {
    ssize_t r = read(t->fd, t->buf + t->len, sizeof(t->buf) - t->len);
    if (r > 0) {
      t->len += (size_t)r;
      got += (size_t)r;
      continue;
    }
    if (r == 0 || (errno != EAGAIN && errno != EINTR)) t->eof = true;
    break;
  }
  return got;
}

/* Turns the world until |done| or |ms| of wall time pass. */
static inline bool tc_until(struct tclient *t, bool (*done)(struct tclient *, const void *),
                     const void *arg, int ms) {
  double end = tc_now() + ms / 1000.0;
  for (;;) {
    bool moved = tc_pump(t) > 0;
    if (done(t, arg)) return true;
    if (tc_now() > end) return false;
    if (!moved) usleep(100);
  }
}

/* Turns the world |n| times (what is ready is done; nothing waits). */
static inline void tc_spin(struct tclient *t, int n) {
  for (int i = 0; i < n; i++) tc_pump(t);
}

static inline bool tc_done_eof(struct tclient *t, const void *arg) {
  (void)arg;
  return t->eof;
}

static inline bool tc_done_contains(struct tclient *t, const void *needle) {
  return memmem(t->buf, t->len, needle, strlen(needle)) != NULL;
}

static inline struct tclient *tc_open(bool expire) {
  static struct tclient t;
  memset(&t, 0, sizeof(t));
  t.fd = world_accept(expire);
  return &t;
}

/* Writes all of |p| (the socketpair's buffer takes what the tests send,
 * turning the world while it is full). */
static inline void tc_write(struct tclient *t, const void *p, size_t n) {
  const char *b = p;
  while (n > 0) {
    ssize_t r = write(t->fd, b, n);
    if (r > 0) {
      b += r;
      n -= (size_t)r;
      continue;
    }
    assert_true(r < 0 && errno == EAGAIN);
    tc_pump(t);
  }
}

static inline void tc_puts(struct tclient *t, const char *s) { tc_write(t, s, strlen(s)); }

/* The client goes away; the world is torn down and checked empty. */
static inline void tc_close(struct tclient *t) {
  close(t->fd);
  t->fd = -1;
  for (int i = 0; i < 4; i++) ev_run(w.loop, EVRUN_NOWAIT);
  world_teardown();
}

static inline size_t tc_count(const struct tclient *t, const char *needle) {
  size_t n = 0, nl = strlen(needle);
  const char *p = t->buf, *end = t->buf + t->len;
  while ((p = memmem(p, (size_t)(end - p), needle, nl)) != NULL) {
    n++;
    p += nl;
  }
  return n;
}

#endif
