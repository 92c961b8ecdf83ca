/*
 * An in-process world for the upstream unit tests (test_upstream.c): one
 * worker loop (its scheduled upstream writes flushed by an ev_prepare, as
 * worker.c does), one listener's limits, one client connection that
 * exists only as a struct, a zeroed configuration generation, one route
 * and one pool; and, per exchange, an origin that is the far end of a
 * socketpair adopted by the pool (no listener, no connect). The frontend
 * is a recorder (struct fe_rec) behind struct sl_frontend_ops.
 *
 * A header of static definitions for one translation unit.
 */
#ifndef SLUICE_UPSTREAM_WORLD_H
#define SLUICE_UPSTREAM_WORLD_H

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ev.h>

#include "sluice/config-t.h"
#include "sluice/log.h"
#include "core/conn-t.h"
#include "core/listener-t.h"
#include "core/stream.h"
#include "core/worker-t.h"
#include "core/gen.h"
#include "upstream/upstream.h"
#include "core/stats.h"
#include "upstream/backend.h"

/* ---- what proxy/main.c provides to the library -------------------- */

int sl_n_workers = 1;
atomic_int sl_workers_exited;

static struct sl_config world_cfg;
static struct sl_gen world_gen = {.cfg = &world_cfg};

struct sl_gen *sl_gen_ref(struct sl_gen *g) {
  atomic_fetch_add_explicit(&g->refs, 1, memory_order_relaxed);
  return g;
}

void sl_gen_unref(struct sl_gen *g) {
  if (g) atomic_fetch_sub_explicit(&g->refs, 1, memory_order_relaxed);
}

struct sl_gen *sl_gen_current_ref(void) { return sl_gen_ref(&world_gen); }

/* ---- the recording frontend --------------------------------------- */

#define FE_BODY_MAX (1u << 20)

struct fe_rec {
  int heads;        /* response_head calls */
  int status;       /* s->resp.status at the head */
  bool done;        /* s->resp_done seen */
  bool hold;        /* leave s->resp_body alone (back-pressure tests) */
  int aborts;
  size_t drained;   /* request body bytes the upstream took */
  char *body;       /* FE_BODY_MAX bytes */
  size_t body_len;
};

/* Moves what s->resp_body holds into rec->body. */
static void fe_take_body(struct sl_stream *s, struct fe_rec *rec) {
  while (!sl_pipe_empty(&s->resp_body)) {
    struct iovec iov[4];
    int n = sl_pipe_iov(&s->resp_body, iov, 4);
    size_t took = 0;
    for (int i = 0; i < n; i++) {
      size_t k = iov[i].iov_len;
      if (rec->body_len + k > FE_BODY_MAX) abort();
      memcpy(rec->body + rec->body_len, iov[i].iov_base, k);
      rec->body_len += k;
      took += k;
    }
    sl_pipe_consume(&s->resp_body, took);
  }
}

static void fe_response_head(struct sl_stream *s) {
  struct fe_rec *rec = s->fe_data;
  rec->heads++;
  rec->status = s->resp.status;
  s->resp_head_sent = true;
}

static void fe_response_body(struct sl_stream *s) {
  struct fe_rec *rec = s->fe_data;
  if (!rec->hold) fe_take_body(s, rec);
  if (s->resp_done) rec->done = true;
}

static void fe_request_body_drained(struct sl_stream *s, size_t n) {
  ((struct fe_rec *)s->fe_data)->drained += n;
}

static void fe_abort(struct sl_stream *s) { ((struct fe_rec *)s->fe_data)->aborts++; }

static const struct sl_frontend_ops fe_ops = {
    .response_head = fe_response_head,
    .response_body = fe_response_body,
    .request_body_drained = fe_request_body_drained,
    .abort = fe_abort,
};

/* ---- the world ------------------------------------------------------ */

static struct sl_worker w;
static struct sl_listener lis;
static struct sl_conn client;
static struct sl_upstream_cfg upcfg = {.name = "origin"};
static struct sl_route_cfg route = {.name = "r", .upstream = &upcfg};
static struct sl_pool *pool;
static ev_prepare flush_watcher;

static void flush_cb(struct ev_loop *loop, ev_prepare *p, int revents) {
  (void)loop;
  (void)p;
  (void)revents;
  sl_upstream_flush_scheduled(&w);
}

/* A new pool for each test: |pipeline| deep, the listener's head limits
 * back to roomy defaults. */
static void world_setup(uint32_t pipeline) {
  sl_log_min_level = (enum sl_log_level)(SL_LOG_ERROR + 1); /* quiet */
  signal(SIGPIPE, SIG_IGN);
  static bool once;
  if (!once) {
    once = true;
    sl_stats_init();
    atomic_init(&world_gen.refs, 1);
  }
  w.loop = ev_loop_new(EVFLAG_AUTO | EVFLAG_NOSIGMASK);
  if (!w.loop) abort();
  w.gen = &world_gen;
  ev_prepare_init(&flush_watcher, flush_cb);
  ev_prepare_start(w.loop, &flush_watcher);
  atomic_store(&lis.header_bytes, 8192);
  atomic_store(&lis.headers, 64);
  atomic_store(&lis.idle_timeout_ms, 60000);
  client.w = &w;
  client.lis = &lis;
  strcpy(client.peer_ip, "127.0.0.1");
  upcfg.address.len = sizeof(struct sockaddr_in);
  upcfg.address.ss.ss_family = AF_INET;
  upcfg.max_connections = 8;
  upcfg.max_pending = 8;
  upcfg.pipeline = pipeline;
  upcfg.connect_timeout_ms = 1000;
  upcfg.response_timeout_ms = 10000;
  upcfg.idle_timeout_ms = 60000;
  pool = sl_pool_for(&w, &upcfg);
  if (!pool) abort();
}

static void world_teardown(void) {
  sl_pool_close_all(pool);
  sl_upstream_flush_scheduled(&w);
  if (pool->n_conns != 0) {
    fprintf(stderr, "upstream connections left open: %u\n", pool->n_conns);
    abort();
  }
  w.pools = NULL;
  sl_pool_del(pool);
  pool = NULL;
  ev_loop_destroy(w.loop);
  w.loop = NULL;
  sl_stream_cache_drain();
  sl_chunk_cache_drain();
}

/* Runs the loop until nothing happens for a few iterations. */
static void pump(void) {
  for (int i = 0; i < 8; i++) ev_run(w.loop, EVRUN_NOWAIT);
}

/* A bodyless request |method| |path| from the recording frontend. */
static struct sl_stream *world_stream(const char *method, const char *path, struct fe_rec *rec) {
  struct sl_stream *s = sl_stream_new(&client, &fe_ops, SL_PROTO_H1);
  if (!s) abort();
  if (!rec->body) rec->body = malloc(FE_BODY_MAX);
  s->fe_data = rec;
  s->req.method = method;
  s->req.path = path;
  s->req.scheme = "http";
  s->req.authority = "t.example";
  s->req.is_head = strcmp(method, "HEAD") == 0;
  s->req_done = true;
  s->route = &route;
  s->pool = pool;
  return s;
}

/* Starts |s| on a new connection whose origin is the returned fd (the
 * far end of a socketpair, non-blocking). */
static int world_origin(struct sl_stream *s) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0) abort();
  struct sl_upconn *u = sl_upconn_adopt(pool, sv[0]);
  if (!u) abort();
  u->s = s;
  s->up = u;
  pump(); /* connected: the backend attaches and writes the request */
  return sv[1];
}

/* Everything the origin end can read now, NUL-terminated, in |buf|. */
static size_t origin_read(int fd, char *buf, size_t cap) {
  size_t n = 0;
  for (;;) {
    ssize_t r = read(fd, buf + n, cap - 1 - n);
    if (r <= 0) break;
    n += (size_t)r;
  }
  buf[n] = '\0';
  return n;
}

/* Writes all of |p| (running the loop while the socket is full); stops
 * quietly once sluice has closed its end. */
static void origin_write(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t r = write(fd, p, n);
    if (r < 0 && errno == EAGAIN) {
      pump();
      continue;
    }
    if (r <= 0) return;
    p += r;
    n -= (size_t)r;
  }
}

static void fe_rec_free(struct fe_rec *rec) {
  free(rec->body);
  memset(rec, 0, sizeof(*rec));
}

/* One exchange on its own connection: the stream, its recorder, the
 * origin's end and the request head the origin read. */
struct exchange {
  struct fe_rec rec;
  struct sl_stream *s;
  int fd;
  char req[8192];
};

static void exchange_open(struct exchange *x, const char *method, const char *path) {
  x->s = world_stream(method, path, &x->rec);
  x->fd = world_origin(x->s);
  origin_read(x->fd, x->req, sizeof(x->req));
}

/* Before world_teardown. */
static void exchange_close(struct exchange *x) {
  sl_stream_del(x->s);
  if (x->fd >= 0) close(x->fd);
  fe_rec_free(&x->rec);
}

#endif
