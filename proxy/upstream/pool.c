/*
 * sluice — upstream pools: per-worker queues, limits and idle lists, and
 * the life of an upstream connection whatever protocol it speaks.
 *
 * Each worker has its own pool per upstream, holding its share of the
 * upstream's max_connections and max_pending (so the totals hold across
 * workers with no lock). A stream is offered to the pool's shared
 * connection (h1 pipelining), takes an idle connection (LIFO: the most
 * recently used is the least likely to have been closed by the origin),
 * opens a new one, or waits in the pool's queue; past max_pending it is
 * shed with 503.
 *
 * If the origin closes a reused connection just as a request is sent on
 * it, the request is retried once on a fresh connection when its method
 * is idempotent, nothing of the response arrived and no body byte has been
 * consumed (the exchange can be replayed exactly), like nginx's
 * proxy_next_upstream for keep-alive races (which never retries a POST
 * either); any other request gets 502.
 *
 * The protocol is the backend's (upstream-t.h, struct sl_upstream_ops):
 * this file never looks inside one.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/conn-t.h"
#include "core/container.h"
#include "core/dlist.h"
#include "core/listener-t.h"
#include "core/gen.h"
#include "core/rand.h"
#include "core/stream.h"
#include "core/worker-t.h"
#include "upstream/upstream.h"
#include "core/stats.h"
#include "upstream/backend.h"
#include "sluice/horizon.h"

static void pool_service_queue(struct sl_pool *p);
static void upconn_read_cb(struct ev_loop *loop, ev_io *w, int revents);
static void upconn_write_cb(struct ev_loop *loop, ev_io *w, int revents);
static void upconn_timer_cb(struct ev_loop *loop, ev_timer *w, int revents);
static void pool_register(struct sl_pool *p);

/* The pool's counts (upstream-t.h): only its worker writes them, so a
 * relaxed load and store is enough and costs what a plain ++ does. */
static inline uint32_t pool_count(_Atomic uint32_t *c) {
  return atomic_load_explicit(c, memory_order_relaxed);
}
static inline void pool_count_add(_Atomic uint32_t *c, int32_t d) {
  atomic_store_explicit(c, pool_count(c) + (uint32_t)d, memory_order_relaxed);
}

/* ---- pools -------------------------------------------------------- */

struct sl_pool *sl_pool_for(struct sl_worker *w, const struct sl_upstream_cfg *u) {
  struct sl_pool *p;
  for (p = w->pools; p; p = p->next) {
    if (p->retired || strcmp(p->name, u->name) != 0) continue;
    if (p->addr.len == u->address.len && memcmp(&p->addr.ss, &u->address.ss, u->address.len) == 0)
      break;
    /* Same name, new address: a reload moved the upstream. New streams
     * go to a new pool; this one closes its connections as they free. */
    p->retired = true;
  }
  if (!p) {
    p = calloc(1, sizeof(*p));
    if (!p) return NULL;
    p->w = w;
    /* The one backend today; an upstream `protocol` setting would pick
     * the ops table here. */
    p->ops = &sl_upstream_h1_ops;
    p->name = strdup(u->name);
    p->address_text = strdup(u->address.text ? u->address.text : "");
    if (!p->name || !p->address_text) {
      free(p->name);
      free(p->address_text);
      free(p);
      return NULL;
    }
    memcpy(&p->addr.ss, &u->address.ss, u->address.len);
    p->addr.len = u->address.len;
    p->next = w->pools;
    w->pools = p;
    pool_register(p);
  }
  /* Limits follow the current configuration without a new pool. */
  uint32_t nw = (uint32_t)(w->n_workers > 0 ? w->n_workers : 1);
  p->max_conns = (u->max_connections + nw - 1) / nw;
  p->max_pending = (u->max_pending + nw - 1) / nw;
  p->pipeline = u->pipeline ? u->pipeline : 1;
  p->connect_timeout_ms = u->connect_timeout_ms;
  p->response_timeout_ms = u->response_timeout_ms;
  p->idle_timeout_ms = u->idle_timeout_ms;
  return p;
}

/* The queue a stream waits in: 0 low, 1 normal, 2 high. */
static unsigned pool_rank(const struct sl_stream *s) {
  switch (s->route->priority) {
  case SL_PRIORITY_LOW: return 0;
  case SL_PRIORITY_HIGH: return 2;
  case SL_PRIORITY_NORMAL: break;
  }
  return 1;
}

static void pool_queue_push(struct sl_pool *p, struct sl_stream *s) {
  struct sl_pool_queue *q = &p->queue[pool_rank(s)];
  SL_DLIST_APPEND(s, q->head, q->tail, queue_prev, queue_next);
  pool_count_add(&p->n_pending, 1);
  s->queued = true;
}

static void pool_queue_remove(struct sl_pool *p, struct sl_stream *s) {
  if (!s->queued) return;
  struct sl_pool_queue *q = &p->queue[pool_rank(s)];
  SL_DLIST_UNLINK(s, q->head, q->tail, queue_prev, queue_next);
  pool_count_add(&p->n_pending, -1);
  s->queued = false;
}

/* The next waiter to serve: the oldest of the highest priority. */
static bool pool_queue_empty(struct sl_pool *p) { return pool_count(&p->n_pending) == 0; }

/* A waiter leaves the queue for a connection: learns the drain rate from
 * the gap since the previous one, when the queue stayed non-empty in
 * between (an idle gap says nothing about how fast a backlog drains). */
static void pool_note_drain(struct sl_pool *p) {
  uint64_t now = sl_now_ns();
  if (p->backlogged && now > p->last_drain_ns) {
    uint64_t d = now - p->last_drain_ns;
    p->drain_period_ns = p->drain_period_ns ? (p->drain_period_ns * 7 + d) / 8 : d;
  }
  p->last_drain_ns = now;
  p->backlogged = !pool_queue_empty(p);
}

static struct sl_stream *pool_queue_pop(struct sl_pool *p) {
  for (unsigned r = 3; r-- > 0;) {
    struct sl_stream *s = p->queue[r].head;
    if (s) {
      pool_queue_remove(p, s);
      pool_note_drain(p);
      return s;
    }
  }
  return NULL;
}

/* The waiter a full queue gives up for a request of |rank|: the newest of
 * the lowest priority below it (it has waited least), or NULL. */
static struct sl_stream *pool_queue_victim(const struct sl_pool *p, unsigned rank) {
  for (unsigned r = 0; r < rank; r++)
    if (p->queue[r].tail) return p->queue[r].tail;
  return NULL;
}

static void pool_idle_push(struct sl_pool *p, struct sl_upconn *u) {
  u->next = p->idle;
  p->idle = u;
  pool_count_add(&p->n_idle, 1);
}

/* The most recently used idle connection (the pool has one). */
static struct sl_upconn *pool_idle_pop(struct sl_pool *p) {
  struct sl_upconn *u = p->idle;
  p->idle = u->next;
  u->next = NULL;
  pool_count_add(&p->n_idle, -1);
  return u;
}

static void pool_idle_remove(struct sl_pool *p, struct sl_upconn *u) {
  for (struct sl_upconn **pp = &p->idle; *pp; pp = &(*pp)->next) {
    if (*pp == u) {
      *pp = u->next;
      u->next = NULL;
      pool_count_add(&p->n_idle, -1);
      return;
    }
  }
}

void sl_pool_close_all(struct sl_pool *p) {
  while (p->idle) {
    struct sl_upconn *u = pool_idle_pop(p);
    u->state = SL_UPCONN_ACTIVE; /* not in the idle list any more */
    sl_upconn_close(u);
  }
}

/* ---- gauges ---------------------------------------------------------
 *
 * Pools belong to their worker, and the counts change per request (an
 * idle connection taken and given back). Gauge series updated there would
 * be two atomic read-modify-writes per request on lines every worker
 * shares; instead each pool keeps its counts itself (upstream-t.h, single
 * writer, no lock prefix) and the scrape sums them, walking a registry of
 * live pools that changes only when a pool is made or freed. */

static pthread_mutex_t pool_reg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sl_pool *pool_reg; /* under pool_reg_lock */

enum { GAUGE_IDLE, GAUGE_ACTIVE, GAUGE_PENDING, GAUGE_N };
/* One upstream name's series and sums; names are bounded by the
 * configurations loaded, like the series themselves (never freed). */
struct pool_gauges {
  char *name;
  struct sl_metric_series *m[GAUGE_N];
  uint64_t n[GAUGE_N];
};
static struct pool_gauges *gauges; /* under pool_reg_lock */
static size_t n_gauges, cap_gauges;

static void pool_register(struct sl_pool *p) {
  pthread_mutex_lock(&pool_reg_lock);
  p->reg_prev = NULL;
  p->reg_next = pool_reg;
  if (pool_reg) pool_reg->reg_prev = p;
  pool_reg = p;
  pthread_mutex_unlock(&pool_reg_lock);
}

void sl_pool_del(struct sl_pool *p) {
  sl_pool_close_all(p);
  pthread_mutex_lock(&pool_reg_lock);
  if (p->reg_prev)
    p->reg_prev->reg_next = p->reg_next;
  else if (pool_reg == p)
    pool_reg = p->reg_next;
  if (p->reg_next) p->reg_next->reg_prev = p->reg_prev;
  pthread_mutex_unlock(&pool_reg_lock);
  free(p->name);
  free(p->address_text);
  free(p);
}

/* |name|'s entry, made on first sight; NULL on OOM (not shown then). */
static struct pool_gauges *pool_gauges_of(const char *name) {
  for (size_t i = 0; i < n_gauges; i++)
    if (strcmp(gauges[i].name, name) == 0) return &gauges[i];
  if (n_gauges == cap_gauges) {
    size_t cap = cap_gauges ? 2 * cap_gauges : 8;
    struct pool_gauges *ng = realloc(gauges, cap * sizeof(*ng));
    if (!ng) return NULL;
    gauges = ng;
    cap_gauges = cap;
  }
  struct pool_gauges *g = &gauges[n_gauges];
  memset(g, 0, sizeof(*g));
  g->name = strdup(name);
  if (!g->name) return NULL;
  const char *idle[2] = {name, "idle"}, *active[2] = {name, "active"}, *pending[1] = {name};
  g->m[GAUGE_IDLE] = sl_metrics_series(sl_stats.upstream_connections, idle);
  g->m[GAUGE_ACTIVE] = sl_metrics_series(sl_stats.upstream_connections, active);
  g->m[GAUGE_PENDING] = sl_metrics_series(sl_stats.upstream_pending, pending);
  n_gauges++;
  return g;
}

void sl_pool_collect(void) {
  pthread_mutex_lock(&pool_reg_lock);
  for (size_t i = 0; i < n_gauges; i++) memset(gauges[i].n, 0, sizeof(gauges[i].n));
  for (struct sl_pool *p = pool_reg; p; p = p->reg_next) {
    struct pool_gauges *g = pool_gauges_of(p->name);
    if (!g) continue;
    /* Two loads apart: a connection closing between them may show as
     * idle and not yet closed for this one sample. */
    uint32_t idle = pool_count(&p->n_idle), conns = pool_count(&p->n_conns);
    g->n[GAUGE_IDLE] += idle;
    g->n[GAUGE_ACTIVE] += conns > idle ? conns - idle : 0;
    g->n[GAUGE_PENDING] += pool_count(&p->n_pending);
  }
  for (size_t i = 0; i < n_gauges; i++)
    for (int k = 0; k < GAUGE_N; k++) sl_metric_gauge_set(gauges[i].m[k], (int64_t)gauges[i].n[k]);
  pthread_mutex_unlock(&pool_reg_lock);
}

/* ---- connections -------------------------------------------------- */

struct sl_upconn *sl_upconn_adopt(struct sl_pool *p, int fd) {
  struct sl_upconn *u = calloc(1, p->ops->conn_size);
  if (!u || p->ops->init(u) != 0) {
    free(u);
    return NULL;
  }
  u->pool = p;
  u->fd = fd;
  u->state = SL_UPCONN_CONNECTING;
  ev_io_init(&u->rio, upconn_read_cb, fd, EV_READ);
  ev_io_init(&u->wio, upconn_write_cb, fd, EV_WRITE);
  ev_init(&u->timer, upconn_timer_cb);
  sl_upconn_set_timeout(u, p->connect_timeout_ms);
  ev_io_start(p->w->loop, &u->wio);
  pool_count_add(&p->n_conns, 1);
  return u;
}

/* Opens a connection to the pool's address (non-blocking connect; the
 * backend's attach runs once it completes, for the stream the caller puts
 * in u->s). NULL if the socket could not be made. */
static struct sl_upconn *upconn_connect(struct sl_pool *p) {
  int fd = socket(p->addr.ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return NULL;
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (connect(fd, (struct sockaddr *)&p->addr.ss, p->addr.len) != 0 && errno != EINPROGRESS) {
    close(fd);
    return NULL;
  }
  struct sl_upconn *u = sl_upconn_adopt(p, fd);
  if (!u) close(fd);
  return u;
}

/* A pipelined (or otherwise unanswered) request whose connection closed
 * before answering it: replay it once elsewhere, else 502. */
static void upstream_replay(struct sl_stream *s) {
  if (!sl_upstream_may_replay(s, 0)) {
    s->ex->failed(s, 502, "upstream_closed");
    return;
  }
  s->upstream_retried = true;
  sl_upstream_start(s);
}

void sl_upconn_close(struct sl_upconn *u) {
  if (u->dead) return;
  struct sl_pool *p = u->pool;
  struct ev_loop *loop = p->w->loop;
  if (p->shared == u) p->shared = NULL;
  /* Requests the backend wrote that got no answer: taken back before the
   * slot is given up, replayed below. */
  struct sl_stream *replay = p->ops->close(u);
  ev_io_stop(loop, &u->rio);
  ev_io_stop(loop, &u->wio);
  ev_timer_stop(loop, &u->timer);
  if (u->state == SL_UPCONN_IDLE) pool_idle_remove(p, u);
  if (u->s) u->s->up = NULL;
  u->s = NULL;
  close(u->fd);
  u->fd = -1;
  pool_count_add(&p->n_conns, -1);
  u->dead = true;
  if (u->busy == 0) free(u);
  /* A slot freed: a queued stream may now connect. */
  pool_service_queue(p);
  while (replay) {
    struct sl_stream *s = replay;
    replay = s->queue_next;
    s->queue_next = NULL;
    upstream_replay(s);
  }
}

void sl_upconn_arm_at(struct sl_upconn *u, ev_tstamp at) {
  struct ev_loop *loop = u->pool->w->loop;
  u->timeout_at = at;
  ev_timer_stop(loop, &u->timer);
  ev_timer_set(&u->timer, at - ev_now(loop), 0.);
  ev_timer_start(loop, &u->timer);
  u->armed_at = at;
}

void sl_upconn_set_timeout(struct sl_upconn *u, uint64_t ms) {
  u->timeout = (ev_tstamp)ms / 1000.0;
  ev_tstamp at = ev_now(u->pool->w->loop) + u->timeout;
  u->timeout_at = at;
  /* Lazy: a timer armed for an earlier deadline re-arms itself when it
   * fires (upconn_timer_cb), so progress costs no heap operation. */
  if (ev_is_active(&u->timer) && u->armed_at <= at) return;
  sl_upconn_arm_at(u, at);
}

static void upconn_enter(struct sl_upconn *u) { u->busy++; }

/* Leaves a callback of |u|; returns true if |u| was freed. */
static bool upconn_leave(struct sl_upconn *u) {
  if (--u->busy == 0 && u->dead) {
    free(u);
    return true;
  }
  return false;
}

void sl_upconn_schedule_flush(struct sl_upconn *u) {
  if (u->flush_pending || u->dead) return;
  u->flush_pending = true;
  upconn_enter(u); /* the list holds it: not freed while queued */
  struct sl_worker *w = u->pool->w;
  u->flush_next = w->up_flush_list;
  w->up_flush_list = u;
}

void sl_upstream_flush_scheduled(struct sl_worker *w) {
  while (w->up_flush_list) {
    struct sl_upconn *u = w->up_flush_list;
    w->up_flush_list = u->flush_next;
    u->flush_pending = false;
    if (!u->dead) u->pool->ops->on_writable(u);
    upconn_leave(u);
  }
}

void sl_upconn_release(struct sl_upconn *u, bool reusable) {
  struct sl_pool *p = u->pool;
  struct sl_stream *s = u->s;
  if (s) s->up = NULL;
  u->s = NULL;
  if (!reusable || p->retired || p->w->draining) {
    sl_upconn_close(u);
    return;
  }
  if (p->shared == u) p->shared = NULL;
  u->state = SL_UPCONN_IDLE;
  u->reused = false;
  ev_io_stop(p->w->loop, &u->wio);
  ev_io_start(p->w->loop, &u->rio); /* notice the origin closing it */
  sl_upconn_set_timeout(u, p->idle_timeout_ms);
  struct sl_stream *next = pool_queue_pop(p);
  if (next) {
    u->reused = true;
    u->s = next;
    next->up = u;
    p->ops->attach(u, next);
    return;
  }
  pool_idle_push(p, u);
}

/* Gives |s| the connection |u| is opening for it. */
static void upconn_bind(struct sl_upconn *u, struct sl_stream *s) {
  u->s = s;
  s->up = u;
}

static void pool_service_queue(struct sl_pool *p) {
  while (!pool_queue_empty(p) && pool_count(&p->n_conns) < p->max_conns) {
    struct sl_upconn *u = upconn_connect(p);
    if (!u) break;
    upconn_bind(u, pool_queue_pop(p));
  }
}

/* ---- the exchange, as stream.c calls it ---------------------------- */

void sl_upstream_fail_stream(struct sl_pool *p, struct sl_stream *s, int status,
                             const char *error) {
  /* A failure after the response head (a reset mid-body) was counted
   * with the head's status already: one exchange, one count. */
  if (!s->resp_head_done) sl_stats_upstream_failed(p->w, p->name, error, status);
  s->ex->outcome(s, true);
  s->ex->failed(s, status, error);
}

/* The Retry-After of a request a full queue sheds. The crowd a full
 * queue sheds is one queue too: with `spread: backlog` each shed request
 * takes the next slot of the queue's drain period, so a crowd of N comes
 * back over N drain periods, as fast as the queue takes them in. Before
 * the queue has drained once (rate unknown), and with `spread: window`,
 * the jitter window over the drain period (the reject minimum at least). */
static uint32_t pool_shed_retry_after(struct sl_pool *p, const struct sl_stream *s) {
  uint64_t period = p->drain_period_ns;
  return sl_horizon_answer(&s->gen->cfg->reject, &p->shed_horizon, sl_now_ns(), period, period,
                           sl_rand64(), true);
}

/* Refuses |s| (not queued) for a full queue. */
static void pool_shed(struct sl_pool *p, struct sl_stream *s) {
  char policy[SL_POLICY_NAME_MAX];
  snprintf(policy, sizeof(policy), "upstream/%s", p->name);
  sl_stats_rejection(p->w, s->route->name, policy, SL_REASON_QUEUE_FULL, false,
                     &(struct sl_stats_who){.client_ip = s->client_ip});
  s->ex->respond_error(s, 503, "upstream_queue_full", policy, pool_shed_retry_after(p, s));
}

void sl_upstream_start(struct sl_stream *s) {
  struct sl_pool *p = s->pool;
  const struct sl_upstream_ops *ops = p->ops;
  /* Fill the shared connection first: with h1 pipelining, requests that
   * leave together cost one write, which is the point of it. */
  if (p->shared && ops->can_share(p->shared, s)) {
    ops->share(p->shared, s);
    return;
  }
  if (p->idle) {
    struct sl_upconn *u = pool_idle_pop(p);
    u->reused = true;
    upconn_bind(u, s);
    ops->attach(u, s);
    return;
  }
  if (pool_count(&p->n_conns) < p->max_conns) {
    struct sl_upconn *u = upconn_connect(p);
    if (!u) {
      sl_upstream_fail_stream(p, s, 502, "upstream_connect_failed");
      return;
    }
    upconn_bind(u, s);
    return;
  }
  if (pool_count(&p->n_pending) < p->max_pending) {
    pool_queue_push(p, s);
    return;
  }
  /* Full. A waiter of lower priority gives its place up (503 with a
   * retry-after, counted as queue_full like any shed request); without
   * one, this request is shed. */
  struct sl_stream *victim = pool_queue_victim(p, pool_rank(s));
  if (victim) {
    pool_queue_remove(p, victim);
    pool_queue_push(p, s);
    pool_shed(p, victim);
    return;
  }
  pool_shed(p, s);
}

void sl_upstream_request_body(struct sl_stream *s) {
  struct sl_upconn *u = s->up;
  if (!u || u->state != SL_UPCONN_ACTIVE) return;
  u->pool->ops->request_body(u, s);
}

void sl_upstream_resume(struct sl_stream *s) {
  struct sl_upconn *u = s->up;
  if (!u) return;
  u->pool->ops->resume(u, s);
}

void sl_upstream_detach(struct sl_stream *s) {
  if (s->queued) pool_queue_remove(s->pool, s);
  struct sl_upconn *u = s->up;
  if (!u) return;
  s->up = NULL;
  if (u->state == SL_UPCONN_CONNECTING) {
    /* Never attached: the backend has nothing of it. */
    u->s = NULL;
    sl_upconn_close(u);
    return;
  }
  u->pool->ops->detach(u, s);
}

void sl_upstream_tunnel_end(struct sl_stream *s) {
  struct sl_upconn *u = s->up;
  if (!u) return;
  s->up = NULL;
  u->pool->ops->tunnel_end(u, s);
}

/* ---- failures and replays ----------------------------------------- */

/* Whether sluice may send |s| again after a connection failed under it:
 * once only, an idempotent method (RFC 9110 §9.2.2: the origin may have
 * processed the first copy, so only a request whose repetition has the
 * same effect may be repeated; RFC 9112 §9.3.1 forbids retrying the
 * others automatically) and a body that can be sent again exactly: none,
 * or an empty one, and none of it consumed yet. The caller checks that no
 * byte of the response arrived. */
bool sl_upstream_may_replay(const struct sl_stream *s, uint64_t body_taken) {
  if (s->upstream_retried || s->resp_head_sent || body_taken > 0) return false;
  if (s->req.has_body && !(s->req_done && s->req.content_length == 0)) return false;
  /* An h2 WebSocket is sent as an HTTP/1.1 GET upgrade. */
  const char *m = s->ws_h2 ? "GET" : s->req.method;
  static const char *const idempotent[] = {"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"};
  for (size_t i = 0; i < sizeof(idempotent) / sizeof(idempotent[0]); i++)
    if (strcmp(m, idempotent[i]) == 0) return true;
  return false;
}

void sl_upconn_fail(struct sl_upconn *u, int status, const char *error) {
  struct sl_stream *s = u->s;
  struct sl_pool *p = u->pool;
  u->s = NULL;
  if (s) s->up = NULL;
  sl_upconn_close(u);
  if (s) sl_upstream_fail_stream(p, s, status, error);
}

bool sl_upconn_retry(struct sl_upconn *u, uint64_t body_taken) {
  struct sl_stream *s = u->s;
  if (!s || !u->reused || !sl_upstream_may_replay(s, body_taken)) return false;
  struct sl_pool *p = u->pool;
  s->upstream_retried = true;
  u->s = NULL;
  s->up = NULL;
  sl_upconn_close(u);
  if (pool_count(&p->n_conns) >= p->max_conns) {
    /* Cannot happen after a close, but keep the invariant honest. */
    pool_queue_push(p, s);
    return true;
  }
  struct sl_upconn *n = upconn_connect(p);
  if (!n) {
    s->ex->failed(s, 502, "upstream_connect_failed");
    return true;
  }
  upconn_bind(n, s);
  return true;
}

/* ---- libev entry points: every callback of a connection runs between
 * upconn_enter and upconn_leave (see sl_upconn_close). */

/* The non-blocking connect finished (or failed). */
static void upconn_connected(struct sl_upconn *u) {
  int err = 0;
  socklen_t len = sizeof(err);
  getsockopt(u->fd, SOL_SOCKET, SO_ERROR, &err, &len);
  ev_io_stop(u->pool->w->loop, &u->wio);
  if (err != 0) {
    sl_upconn_fail(u, 502, "upstream_connect_failed");
    return;
  }
  u->state = SL_UPCONN_ACTIVE;
  if (!u->s) {
    /* The stream went away while connecting: park the connection. */
    sl_upconn_release(u, true);
    return;
  }
  u->pool->ops->attach(u, u->s);
}

static void upconn_read_cb(struct ev_loop *loop, ev_io *w, int revents) {
  struct sl_upconn *u = SL_CONTAINER_OF(w, struct sl_upconn, rio);
  (void)loop;
  (void)revents;
  upconn_enter(u);
  u->pool->ops->on_readable(u);
  upconn_leave(u);
}

static void upconn_write_cb(struct ev_loop *loop, ev_io *w, int revents) {
  struct sl_upconn *u = SL_CONTAINER_OF(w, struct sl_upconn, wio);
  (void)loop;
  (void)revents;
  upconn_enter(u);
  if (u->state == SL_UPCONN_CONNECTING)
    upconn_connected(u);
  else
    u->pool->ops->on_writable(u);
  upconn_leave(u);
}

static void upconn_timer_cb(struct ev_loop *loop, ev_timer *w, int revents) {
  struct sl_upconn *u = SL_CONTAINER_OF(w, struct sl_upconn, timer);
  (void)revents;
  upconn_enter(u);
  ev_tstamp now = ev_now(loop);
  if (u->timeout_at > now) {
    sl_upconn_arm_at(u, u->timeout_at); /* the deadline moved on since: not yet */
  } else {
    switch (u->state) {
    case SL_UPCONN_CONNECTING:
      sl_upconn_fail(u, 504, "upstream_connect_timeout");
      break;
    case SL_UPCONN_IDLE:
      sl_upconn_close(u);
      break;
    case SL_UPCONN_ACTIVE:
      u->pool->ops->on_timeout(u, now);
      break;
    }
  }
  upconn_leave(u);
}
