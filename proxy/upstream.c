/*
 * sluice — upstream side: per-worker HTTP/1.1 keep-alive pools.
 *
 * Each worker has its own pool per upstream, holding its share of the
 * upstream's max_connections and max_pending (so the totals hold across
 * workers with no lock). A stream takes an idle connection (LIFO: the
 * most recently used is the least likely to have been closed by the
 * origin), opens a new one, or waits in the pool's queue; past
 * max_pending it is shed with 503.
 *
 * A pooled connection the origin closed while idle is noticed by its read
 * watcher and dropped. If the origin closes one just as a request is sent
 * on it, the request is retried once on a fresh connection when its method
 * is idempotent, nothing of the response arrived and no body byte has been
 * consumed (the exchange can be replayed exactly), like nginx's
 * proxy_next_upstream for keep-alive races (which never retries a POST
 * either); any other request gets 502.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <llhttp.h>

#include "sluice/log.h"
#include "core/hpiece.h"
#include "core/conn-t.h"
#include "core/container.h"
#include "core/listener-t.h"
#include "core/stream.h"
#include "core/worker-t.h"
#include "upstream/upstream.h"
#include "core/stats.h"

enum up_state { UP_CONNECTING = 0, UP_IDLE, UP_ACTIVE };

struct sl_upconn {
  struct sl_pool *pool;
  int fd;
  ev_io rio, wio;
  ev_timer timer;
  enum up_state state;
  struct sl_stream *s;
  struct sl_upconn *next; /* idle list */
  llhttp_t parser;
  struct sl_pipe out;

  /* Response head fields being accumulated (pieces may span reads), and
   * the head's size so far, bounded like a request head (see
   * up_count_head). */
  struct sl_hpiece field, value;
  uint32_t head_bytes, head_fields;
  uint32_t head_bytes_max, head_fields_max;
  const char *parse_error; /* set by a callback before it fails the parse */
  uint8_t interims;        /* 1xx answers to the current request so far */

  bool reused;           /* taken from the idle list for this exchange */
  bool req_chunked;      /* request body sent with chunked framing */
  bool req_sent;         /* the whole request is queued in `out` */
  bool resp_started;     /* a response byte arrived */
  bool resp_complete;
  bool keep_alive;
  bool read_paused;
  bool tunnel;           /* after a 101: raw bytes both ways */
  bool dead;             /* closed; freed once no callback of its own runs */
  ev_tstamp timeout;     /* current timeout length, seconds */
  ev_tstamp timeout_at;  /* deadline (see up_set_timeout) */
  ev_tstamp armed_at;    /* deadline the libev timer is armed for */
  unsigned busy;         /* callbacks of this connection on the stack */
  bool accept_mismatch;  /* the origin's Sec-WebSocket-Accept was wrong */
  bool shut_wr;          /* tunnel: client finished sending, FIN sent */
  uint64_t body_taken;   /* request body bytes consumed from the stream */
  ev_tstamp body_moved_at; /* last request body progress from the client */

  /* HTTP/1.1 pipelining (pool->pipeline > 1). u->s is the exchange whose
   * response is being read; q holds the requests written after it, oldest
   * first. A NULL entry is an orphan (its client went away): its response
   * is still read, and discarded. */
  struct {
    struct sl_stream *s;
    bool is_head;
  } q[SL_PIPELINE_MAX];
  uint8_t q_first, q_n;
  bool pipelinable;      /* every request on it so far is a bodyless GET/HEAD */
  bool discarding;       /* reading an orphan's response (u->s is NULL) */
  bool cur_is_head;      /* the response being read answers a HEAD */
  bool flush_pending;    /* on the worker's up_flush_list */
  struct sl_upconn *flush_next;
};

static llhttp_settings_t up_settings;

/* Interim (1xx) answers accepted before the final one; more is a broken
 * origin (RFC 9110 §15.2 allows several, e.g. 103 Early Hints). */
#define UP_INTERIM_MAX 16
static __thread char up_scratch[SL_CHUNK_SIZE];

static void up_read_cb(struct ev_loop *loop, ev_io *w, int revents);
static void up_write_cb(struct ev_loop *loop, ev_io *w, int revents);
static void up_timer_cb(struct ev_loop *loop, ev_timer *w, int revents);
static void up_close(struct sl_upconn *u);
static void up_set_timeout(struct sl_upconn *u, uint64_t ms);
static void up_attach(struct sl_upconn *u, struct sl_stream *s);
static void up_flush(struct sl_upconn *u);
static void pool_service_queue(struct sl_pool *p);

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

static void pool_queue_push(struct sl_pool *p, struct sl_stream *s) {
  s->queue_next = NULL;
  if (p->queue_tail)
    p->queue_tail->queue_next = s;
  else
    p->queue_head = s;
  p->queue_tail = s;
  p->n_pending++;
  s->queued = true;
}

static struct sl_stream *pool_queue_pop(struct sl_pool *p) {
  struct sl_stream *s = p->queue_head;
  if (!s) return NULL;
  p->queue_head = s->queue_next;
  if (!p->queue_head) p->queue_tail = NULL;
  p->n_pending--;
  s->queued = false;
  s->queue_next = NULL;
  return s;
}

static void pool_queue_remove(struct sl_pool *p, struct sl_stream *s) {
  struct sl_stream **pp = &p->queue_head, *prev = NULL;
  while (*pp && *pp != s) {
    prev = *pp;
    pp = &(*pp)->queue_next;
  }
  if (!*pp) return;
  *pp = s->queue_next;
  if (p->queue_tail == s) p->queue_tail = prev;
  p->n_pending--;
  s->queued = false;
}

static void pool_idle_remove(struct sl_pool *p, struct sl_upconn *u) {
  for (struct sl_upconn **pp = &p->idle; *pp; pp = &(*pp)->next) {
    if (*pp == u) {
      *pp = u->next;
      u->next = NULL;
      return;
    }
  }
}

void sl_pool_close_all(struct sl_pool *p) {
  while (p->idle) {
    struct sl_upconn *u = p->idle;
    p->idle = u->next;
    u->next = NULL;
    u->state = UP_ACTIVE; /* not in the idle list any more */
    up_close(u);
  }
}

/* ---- connections -------------------------------------------------- */

static struct sl_upconn *up_connect(struct sl_pool *p) {
  int fd = socket(p->addr.ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return NULL;
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (connect(fd, (struct sockaddr *)&p->addr.ss, p->addr.len) != 0 && errno != EINPROGRESS) {
    close(fd);
    return NULL;
  }
  struct sl_upconn *u = calloc(1, sizeof(*u));
  if (!u) {
    close(fd);
    return NULL;
  }
  u->pool = p;
  u->fd = fd;
  u->state = UP_CONNECTING;
  sl_pipe_init(&u->out, SL_BODY_PIPE_CAP);
  ev_io_init(&u->rio, up_read_cb, fd, EV_READ);
  ev_io_init(&u->wio, up_write_cb, fd, EV_WRITE);
  ev_init(&u->timer, up_timer_cb);
  up_set_timeout(u, p->connect_timeout_ms);
  ev_io_start(p->w->loop, &u->wio);
  p->n_conns++;
  return u;
}

/* Closes |u| and gives its slot back. The memory is freed at once unless
 * one of u's own callbacks is on the stack (busy): frontends called from
 * there may tear the exchange down (an aborted h1 connection deletes its
 * stream, which closes u), and the callback must still be able to look at
 * u->dead / u->s afterwards. */
static void up_requeue(struct sl_stream *s);

static void up_close(struct sl_upconn *u) {
  if (u->dead) return;
  struct sl_pool *p = u->pool;
  struct ev_loop *loop = p->w->loop;
  if (p->pipe_candidate == u) p->pipe_candidate = NULL;
  /* Pipelined requests written on this connection got no answer: take
   * them back before the slot is given up (they are replayed below). */
  struct sl_stream *orphaned[SL_PIPELINE_MAX];
  unsigned n_orphaned = 0;
  for (unsigned i = 0; i < u->q_n; i++) {
    struct sl_stream *qs = u->q[(u->q_first + i) % SL_PIPELINE_MAX].s;
    if (qs) {
      qs->up = NULL;
      orphaned[n_orphaned++] = qs;
    }
  }
  u->q_n = 0;
  ev_io_stop(loop, &u->rio);
  ev_io_stop(loop, &u->wio);
  ev_timer_stop(loop, &u->timer);
  if (u->state == UP_IDLE) pool_idle_remove(p, u);
  if (u->s) u->s->up = NULL;
  u->s = NULL;
  close(u->fd);
  u->fd = -1;
  sl_pipe_clear(&u->out);
  sl_hpiece_free(&u->field);
  sl_hpiece_free(&u->value);
  p->n_conns--;
  u->dead = true;
  if (u->busy == 0) free(u);
  /* A slot freed: a queued stream may now connect. */
  pool_service_queue(p);
  for (unsigned i = 0; i < n_orphaned; i++) up_requeue(orphaned[i]);
}

/* Lazy timer (libev "be smart about timeouts"): setting or extending a
 * deadline stores it; only an earlier deadline re-arms the heap timer,
 * and a timer that fires early re-arms for the remainder. */
/* Arms the libev timer for the absolute deadline |at| (the current
 * deadline becomes |at| too). */
static void up_arm_at(struct sl_upconn *u, ev_tstamp at) {
  struct ev_loop *loop = u->pool->w->loop;
  u->timeout_at = at;
  ev_timer_stop(loop, &u->timer);
  ev_timer_set(&u->timer, at - ev_now(loop), 0.);
  ev_timer_start(loop, &u->timer);
  u->armed_at = at;
}

static void up_set_timeout(struct sl_upconn *u, uint64_t ms) {
  u->timeout = (ev_tstamp)ms / 1000.0;
  ev_tstamp at = ev_now(u->pool->w->loop) + u->timeout;
  u->timeout_at = at;
  /* Lazy: a timer armed for an earlier deadline re-arms itself when it
   * fires (up_on_timeout), so progress costs no heap operation. */
  if (ev_is_active(&u->timer) && u->armed_at <= at) return;
  up_arm_at(u, at);
}

/* Progress: the current timeout starts over. */
static void up_touch(struct sl_upconn *u) { u->timeout_at = ev_now(u->pool->w->loop) + u->timeout; }

static void up_enter(struct sl_upconn *u) { u->busy++; }

/* Leaves a callback of |u|; returns true if |u| was freed. */
static bool up_leave(struct sl_upconn *u) {
  if (--u->busy == 0 && u->dead) {
    free(u);
    return true;
  }
  return false;
}

/* Queues |u| for one write at the end of this loop iteration, so that
 * requests pipelined meanwhile leave in the same writev. */
static void up_schedule_flush(struct sl_upconn *u) {
  if (u->flush_pending || u->dead) return;
  u->flush_pending = true;
  up_enter(u); /* the list holds it: not freed while queued */
  struct sl_worker *w = u->pool->w;
  u->flush_next = w->up_flush_list;
  w->up_flush_list = u;
}

void sl_upstream_flush_scheduled(struct sl_worker *w) {
  while (w->up_flush_list) {
    struct sl_upconn *u = w->up_flush_list;
    w->up_flush_list = u->flush_next;
    u->flush_pending = false;
    if (!u->dead) up_flush(u);
    up_leave(u);
  }
}

/* Returns the connection to the idle list, or closes it. */
static void up_release(struct sl_upconn *u) {
  struct sl_pool *p = u->pool;
  struct sl_stream *s = u->s;
  if (s) s->up = NULL;
  u->s = NULL;
  bool reusable = u->keep_alive && u->resp_complete && u->req_sent && u->q_n == 0 &&
                  sl_pipe_empty(&u->out) && !p->retired && !p->w->draining;
  if (!reusable) {
    up_close(u);
    return;
  }
  if (p->pipe_candidate == u) p->pipe_candidate = NULL;
  u->state = UP_IDLE;
  u->reused = false;
  ev_io_stop(p->w->loop, &u->wio);
  if (u->read_paused) u->read_paused = false;
  ev_io_start(p->w->loop, &u->rio); /* notice the origin closing it */
  up_set_timeout(u, p->idle_timeout_ms);
  struct sl_stream *next = pool_queue_pop(p);
  if (next) {
    u->reused = true;
    up_attach(u, next);
    return;
  }
  u->next = p->idle;
  p->idle = u;
}

static void pool_service_queue(struct sl_pool *p) {
  while (p->queue_head && p->n_conns < p->max_conns) {
    struct sl_upconn *u = up_connect(p);
    if (!u) break;
    struct sl_stream *s = pool_queue_pop(p);
    u->s = s;
    s->up = u;
  }
}

/* ---- request serialisation ---------------------------------------- */

/* Hop-by-hop and framing fields are not forwarded (RFC 9110 §7.6.1);
 * sluice writes its own Host, framing and forwarding headers. */
static bool header_is_dropped(const struct sl_header *h, const char *connection_tokens) {
  /* Names are lowercase; dispatch on length so a typical header costs
   * one or two memcmp, not fourteen strcmp. */
#define IS(lit) (memcmp(h->name, lit, sizeof(lit) - 1) == 0)
  switch (h->name_len) {
  case 2:
    if (IS("te")) return true;
    break;
  case 4:
    if (IS("host")) return true;
    break;
  case 6:
    if (IS("expect")) return true;
    break;
  case 7:
    if (IS("trailer") || IS("upgrade")) return true;
    break;
  case 9:
    if (IS("forwarded")) return true;
    break;
  case 10:
    if (IS("connection") || IS("keep-alive")) return true;
    break;
  case 14:
    if (IS("content-length") || IS("http2-settings")) return true;
    break;
  case 15:
    if (IS("x-forwarded-for")) return true;
    break;
  case 16:
    if (IS("proxy-connection")) return true;
    break;
  case 17:
    if (IS("transfer-encoding") || IS("x-forwarded-proto")) return true;
    break;
  default:
    break;
  }
#undef IS
  if (connection_tokens) {
    const char *s = connection_tokens;
    while (*s) {
      while (*s == ' ' || *s == ',' || *s == '\t') s++;
      const char *e = s;
      while (*e && *e != ',' && *e != ' ' && *e != '\t') e++;
      if ((size_t)(e - s) == h->name_len && strncasecmp(s, h->name, h->name_len) == 0)
        return true;
      s = e;
    }
  }
  return false;
}

static int up_write_request_head(struct sl_upconn *u, struct sl_stream *s) {
  struct sl_pipe *o = &u->out;
  const struct sl_request *r = &s->req;
  const struct sl_header *conn_hdr = sl_request_header(r, "connection");
  const char *conn_tokens = conn_hdr ? conn_hdr->value : NULL;
  /* RFC 8441: an h2 extended CONNECT becomes an HTTP/1.1 GET upgrade. */
  int rv = sl_pipe_puts(o, s->ws_h2 ? "GET" : r->method);
  rv |= SL_PIPE_LIT(o, " ");
  rv |= sl_pipe_puts(o, r->path);
  rv |= SL_PIPE_LIT(o, " HTTP/1.1\r\n");
  rv |= SL_PIPE_LIT(o, "host: ");
  const char *host = r->authority ? r->authority : u->pool->address_text;
  rv |= sl_pipe_write(o, host, strlen(host));
  rv |= SL_PIPE_LIT(o, "\r\n");
  for (uint32_t i = 0; i < r->n_headers && rv == 0; i++) {
    const struct sl_header *h = &r->headers[i];
    if (header_is_dropped(h, conn_tokens)) continue;
    if (s->ws_h2 && (strcmp(h->name, "sec-websocket-key") == 0 ||
                     strcmp(h->name, "sec-websocket-version") == 0))
      continue;
    /* h2 cookies arrive split; HTTP/1.1 wants one field (RFC 9113 §8.2.3):
     * repeated cookie fields are acceptable to origins, keep it simple. */
    rv |= sl_pipe_put_field(o, h->name, h->name_len, h->value, h->value_len);
  }
  /* X-Forwarded-For: the chain is kept only when it came through a
   * trusted proxy (identify.client_ip.trusted_proxies); otherwise a client
   * could forge the hops the origin reads, so it is replaced by the peer. */
  const char *ip = s->client_ip[0] ? s->client_ip : s->conn->peer_ip;
  bool v6 = strchr(ip, ':') != NULL;
  const struct sl_header *xff = sl_request_header(r, "x-forwarded-for");
  rv |= SL_PIPE_LIT(o, "x-forwarded-for: ");
  if (s->xff_trusted && xff) {
    rv |= sl_pipe_write(o, xff->value, xff->value_len);
    rv |= SL_PIPE_LIT(o, ", ");
  }
  rv |= sl_pipe_puts(o, s->conn->peer_ip);
  rv |= SL_PIPE_LIT(o, "\r\nx-forwarded-proto: ");
  rv |= sl_pipe_puts(o, r->scheme);
  /* RFC 7239 §6: an IPv6 node is quoted and bracketed. */
  rv |= SL_PIPE_LIT(o, "\r\nforwarded: for=");
  if (v6) rv |= SL_PIPE_LIT(o, "\"[");
  rv |= sl_pipe_puts(o, ip);
  if (v6) rv |= SL_PIPE_LIT(o, "]\"");
  rv |= SL_PIPE_LIT(o, ";proto=");
  rv |= sl_pipe_puts(o, r->scheme);
  rv |= SL_PIPE_LIT(o, "\r\n");
  if (r->upgrade_websocket) {
    /* Upgrade and Connection are hop-by-hop: sluice asks for the upgrade
     * itself (Upgrade: h2c or anything else is never forwarded). */
    static const char upg[] = "connection: upgrade\r\nupgrade: websocket\r\n";
    rv |= sl_pipe_write(o, upg, sizeof(upg) - 1);
    if (s->ws_h2)
      rv |= sl_pipe_printf(o, "sec-websocket-key: %s\r\nsec-websocket-version: 13\r\n",
                           s->ws_key);
    u->req_chunked = false;
  } else if (r->content_length >= 0) {
    rv |= SL_PIPE_LIT(o, "content-length: ");
    rv |= sl_pipe_put_uint(o, (uint64_t)r->content_length, false);
    rv |= SL_PIPE_LIT(o, "\r\n");
    u->req_chunked = false;
  } else if (r->has_body) {
    rv |= SL_PIPE_LIT(o, "transfer-encoding: chunked\r\n");
    u->req_chunked = true;
  }
  rv |= SL_PIPE_LIT(o, "\r\n");
  return rv;
}

/* Moves request body from the stream into `out`, framed; tells the
 * frontend how much it may read again. */
static void up_pump_tunnel(struct sl_upconn *u) {
  struct sl_stream *s = u->s;
  size_t moved = 0;
  while (!sl_pipe_empty(&s->req_body) && !sl_pipe_full(&u->out)) {
    moved += s->req_body.len;
    sl_pipe_splice(&u->out, &s->req_body);
  }
  if (moved) {
    s->tunnel_bytes_up += moved;
    up_touch(u); /* traffic: not idle */
    s->fe->request_body_drained(s, moved);
  }
}

/* The whole request is queued for the origin: the response timeout and the
 * latency the breaker judges (slow_call) run from here, not from dispatch,
 * so a slow upload is never the origin's slowness. */
static void up_request_sent(struct sl_upconn *u) {
  u->req_sent = true;
  u->s->upstream_started = ev_now(u->pool->w->loop);
  up_set_timeout(u, u->pool->response_timeout_ms);
}

static void up_pump_body(struct sl_upconn *u) {
  struct sl_stream *s = u->s;
  if (!s) return;
  if (u->tunnel) {
    up_pump_tunnel(u);
    return;
  }
  if (u->req_sent) return;
  size_t moved = 0;
  while (!sl_pipe_empty(&s->req_body) && !sl_pipe_full(&u->out)) {
    size_t n = s->req_body.len;
    if (u->req_chunked) {
      sl_pipe_put_uint(&u->out, n, true);
      SL_PIPE_LIT(&u->out, "\r\n");
    }
    sl_pipe_splice(&u->out, &s->req_body);
    if (u->req_chunked) SL_PIPE_LIT(&u->out, "\r\n");
    moved += n;
  }
  if (moved) {
    /* The origin has new bytes to read: its write-progress clock starts
     * now, and the client made progress. */
    u->body_moved_at = ev_now(u->pool->w->loop);
    up_touch(u);
  }
  if (s->req_done && sl_pipe_empty(&s->req_body)) {
    if (u->req_chunked) SL_PIPE_LIT(&u->out, "0\r\n\r\n");
    up_request_sent(u);
  }
  if (moved) {
    u->body_taken += moved;
    s->fe->request_body_drained(s, moved);
  }
}

/* Only bodyless GET and HEAD requests are pipelined: they can be replayed
 * on another connection if this one fails before answering them. */
static bool up_can_pipeline(const struct sl_pool *p, const struct sl_stream *s) {
  if (p->pipeline <= 1 || s->req.has_body || s->req.upgrade_websocket) return false;
  return strcmp(s->req.method, "GET") == 0 || strcmp(s->req.method, "HEAD") == 0;
}

/* A busy connection that can take one more pipelined request, or NULL. */
static struct sl_upconn *pool_pipeline_conn(struct sl_pool *p) {
  struct sl_upconn *u = p->pipe_candidate;
  if (!u || u->dead || u->state != UP_ACTIVE || !u->pipelinable || u->tunnel || !u->req_sent ||
      1u + u->q_n >= p->pipeline || p->retired)
    return NULL;
  return u;
}

static void up_attach(struct sl_upconn *u, struct sl_stream *s) {
  struct sl_pool *p = u->pool;
  u->s = s;
  s->up = u;
  u->state = UP_ACTIVE;
  u->req_sent = u->resp_started = u->resp_complete = u->keep_alive = false;
  u->body_taken = 0;
  /* The origin's head is held to the limits of the listener the request
   * came in on (limits.header_bytes, limits.headers). */
  u->head_bytes_max = atomic_load(&s->conn->lis->header_bytes);
  u->head_fields_max = atomic_load(&s->conn->lis->headers);
  u->interims = 0;
  llhttp_init(&u->parser, HTTP_RESPONSE, &up_settings);
  u->parser.data = u;
  u->discarding = false;
  u->cur_is_head = s->req.is_head;
  u->pipelinable = up_can_pipeline(p, s);
  if (u->pipelinable) p->pipe_candidate = u;
  s->upstream_started = ev_now(p->w->loop);
  if (up_write_request_head(u, s) != 0) {
    up_close(u);
    sl_stream_upstream_failed(s, 503, "out_of_memory");
    return;
  }
  u->body_moved_at = ev_now(p->w->loop);
  /* Until the request is all sent the timer measures the origin's write
   * progress (see up_body_timeout); up_request_sent restarts it. */
  up_set_timeout(u, p->response_timeout_ms);
  if (!s->req.has_body) {
    s->req_done = true;
    u->req_sent = true;
  } else if (s->req.upgrade_websocket) {
    /* Bytes the client sends before the 101 wait in req_body (bounded by
     * the h2 window / paused h1 reads) and flow once tunnelled. */
    u->req_sent = true;
  }
  up_pump_body(u);
  ev_io_start(p->w->loop, &u->rio);
  up_schedule_flush(u);
}

/* Writes |s|'s request behind the ones in flight on |u| (pipelining). */
static void up_pipeline(struct sl_upconn *u, struct sl_stream *s) {
  struct sl_pool *p = u->pool;
  unsigned idx = (u->q_first + u->q_n) % SL_PIPELINE_MAX;
  u->q[idx].s = s;
  u->q[idx].is_head = s->req.is_head;
  u->q_n++;
  s->up = u;
  s->req_done = true;
  s->upstream_started = ev_now(p->w->loop);
  if (up_write_request_head(u, s) != 0) {
    up_close(u); /* replays what was in flight, s included */
    return;
  }
  up_schedule_flush(u);
}

void sl_upstream_start(struct sl_stream *s) {
  struct sl_pool *p = s->pool;
  /* With pipelining on, fill the current connection first: requests
   * that leave together cost one write, which is the point of it. */
  if (up_can_pipeline(p, s)) {
    struct sl_upconn *u = pool_pipeline_conn(p);
    if (u) {
      up_pipeline(u, s);
      return;
    }
  }
  if (p->idle) {
    struct sl_upconn *u = p->idle;
    p->idle = u->next;
    u->next = NULL;
    u->reused = true;
    up_attach(u, s);
    return;
  }
  if (p->n_conns < p->max_conns) {
    struct sl_upconn *u = up_connect(p);
    if (!u) {
      sl_stats_upstream_done(p->w, p->name, 0, -1);
      sl_stream_outcome(s, true);
      sl_stream_upstream_failed(s, 502, "upstream_connect_failed");
      return;
    }
    u->s = s;
    s->up = u;
    return;
  }
  if (p->n_pending < p->max_pending) {
    pool_queue_push(p, s);
    return;
  }
  char policy[SL_POLICY_NAME_MAX];
  snprintf(policy, sizeof(policy), "upstream/%s", p->name);
  sl_stats_rejection(p->w, s->route->name, policy, SL_REASON_QUEUE_FULL, false, s->client_ip);
  sl_stream_respond_error(s, 503, "upstream_queue_full", policy, 1);
}

void sl_upstream_request_body(struct sl_stream *s) {
  struct sl_upconn *u = s->up;
  if (!u || u->state != UP_ACTIVE || u->s != s) return;
  up_pump_body(u);
  up_flush(u);
}

void sl_upstream_resume(struct sl_stream *s) {
  struct sl_upconn *u = s->up;
  if (!u || u->s != s || !u->read_paused || sl_pipe_full(&s->resp_body)) return;
  u->read_paused = false;
  ev_io_start(u->pool->w->loop, &u->rio);
}

void sl_upstream_detach(struct sl_stream *s) {
  if (s->queued) pool_queue_remove(s->pool, s);
  struct sl_upconn *u = s->up;
  if (!u) return;
  s->up = NULL;
  if (u->s != s) {
    /* Written behind the current exchange: its response will still come
     * and is read and dropped (the connection's framing stays intact). */
    for (unsigned i = 0; i < u->q_n; i++) {
      unsigned idx = (u->q_first + i) % SL_PIPELINE_MAX;
      if (u->q[idx].s == s) u->q[idx].s = NULL;
    }
    return;
  }
  u->s = NULL;
  if (u->state == UP_ACTIVE && u->resp_complete && u->req_sent)
    up_release(u);
  else
    up_close(u); /* mid-exchange: the connection's framing is unknown */
}

/* ---- I/O ---------------------------------------------------------- */

/* Whether sluice may send |s| again after a connection failed under it:
 * once only, an idempotent method (RFC 9110 §9.2.2: the origin may have
 * processed the first copy, so only a request whose repetition has the
 * same effect may be repeated; RFC 9112 §9.3.1 forbids retrying the
 * others automatically) and a body that can be sent again exactly: none,
 * or an empty one, and none of it consumed yet. The caller checks that no
 * byte of the response arrived. */
static bool up_may_replay(const struct sl_stream *s, uint64_t body_taken) {
  if (s->upstream_retried || s->resp_head_sent || body_taken > 0) return false;
  if (s->req.has_body && !(s->req_done && s->req.content_length == 0)) return false;
  /* An h2 WebSocket is sent as an HTTP/1.1 GET upgrade. */
  const char *m = s->ws_h2 ? "GET" : s->req.method;
  static const char *const idempotent[] = {"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"};
  for (size_t i = 0; i < sizeof(idempotent) / sizeof(idempotent[0]); i++)
    if (strcmp(m, idempotent[i]) == 0) return true;
  return false;
}

/* A pipelined request whose connection closed before answering it: replay
 * it once elsewhere (only bodyless GET/HEAD are pipelined), else 502. */
static void up_requeue(struct sl_stream *s) {
  if (!up_may_replay(s, 0)) {
    sl_stream_upstream_failed(s, 502, "upstream_closed");
    return;
  }
  s->upstream_retried = true;
  sl_upstream_start(s);
}

/* The current response is complete: move on to the next pipelined one.
 * Returns true if |u| is now reading another response (the caller parses
 * on), false if it went idle, was given to a queued stream, or closed. */
static bool up_advance(struct sl_upconn *u, bool bytes_left) {
  struct sl_stream *s = u->s;
  if (s) s->up = NULL;
  u->s = NULL;
  u->discarding = false;
  if (u->q_n == 0) {
    /* Bytes after the last answer were never asked for. */
    if (bytes_left) u->keep_alive = false;
    up_release(u);
    return false;
  }
  if (!u->keep_alive) {
    up_close(u); /* replays the pipelined requests */
    return false;
  }
  unsigned idx = u->q_first;
  u->q_first = (uint8_t)((u->q_first + 1) % SL_PIPELINE_MAX);
  u->q_n--;
  u->s = u->q[idx].s;
  u->cur_is_head = u->q[idx].is_head;
  u->discarding = u->s == NULL;
  u->resp_started = u->resp_complete = false;
  u->interims = 0;
  llhttp_init(&u->parser, HTTP_RESPONSE, &up_settings);
  u->parser.data = u;
  up_set_timeout(u, u->pool->response_timeout_ms);
  return true;
}

static void up_fail(struct sl_upconn *u, int status, const char *error) {
  struct sl_stream *s = u->s;
  struct sl_pool *p = u->pool;
  u->s = NULL;
  if (s) s->up = NULL;
  up_close(u);
  if (!s) return;
  sl_stats_upstream_done(p->w, p->name, 0, -1);
  sl_stream_outcome(s, true);
  sl_stream_upstream_failed(s, status, error);
}

/* The origin closed or reset a reused connection before answering: if the
 * request can be replayed exactly, send it again on a fresh connection. */
static bool up_try_retry(struct sl_upconn *u) {
  struct sl_stream *s = u->s;
  if (!s || !u->reused || u->resp_started || !up_may_replay(s, u->body_taken)) return false;
  struct sl_pool *p = u->pool;
  s->upstream_retried = true;
  u->s = NULL;
  s->up = NULL;
  up_close(u);
  if (p->n_conns >= p->max_conns) {
    /* Cannot happen after a close, but keep the invariant honest. */
    pool_queue_push(p, s);
    return true;
  }
  struct sl_upconn *n = up_connect(p);
  if (!n) {
    sl_stream_upstream_failed(s, 502, "upstream_connect_failed");
    return true;
  }
  n->s = s;
  s->up = n;
  return true;
}

static void up_flush(struct sl_upconn *u) {
  while (!sl_pipe_empty(&u->out)) {
    struct iovec iov[16];
    int n = sl_pipe_iov(&u->out, iov, 16);
    ssize_t w = writev(u->fd, iov, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        ev_io_start(u->pool->w->loop, &u->wio);
        return;
      }
      if (up_try_retry(u)) return;
      up_fail(u, 502, "upstream_write_failed");
      return;
    }
    sl_pipe_consume(&u->out, (size_t)w);
    if (!u->req_sent) up_touch(u); /* the origin reads the body */
    /* Room again: take more of the request body. */
    if (!u->req_sent || u->tunnel) up_pump_body(u);
  }
  ev_io_stop(u->pool->w->loop, &u->wio);
  /* A tunnel whose client finished sending: pass the half-close on. */
  if (u->tunnel && !u->shut_wr && u->s && u->s->req_done && sl_pipe_empty(&u->s->req_body)) {
    u->shut_wr = true;
    shutdown(u->fd, SHUT_WR);
  }
}

void sl_upstream_tunnel_end(struct sl_stream *s) {
  struct sl_upconn *u = s->up;
  if (!u) return;
  s->up = NULL;
  u->s = NULL;
  up_close(u);
}

/* Switches |u| to raw tunnel mode after the 101 head; |rest| are bytes
 * the origin sent after it (already WebSocket frames). */
static void up_enter_tunnel(struct sl_upconn *u, const char *rest, size_t n) {
  struct sl_stream *s = u->s;
  u->tunnel = true;
  u->keep_alive = false;
  uint64_t idle_ms = s->route->idle_timeout_ms ? s->route->idle_timeout_ms
                                               : s->conn->lis->idle_timeout_ms;
  up_set_timeout(u, idle_ms);
  if (n) sl_stream_tunnel_down(s, rest, n);
  if (u->dead || u->s != s) return; /* closed while injecting */
  s->fe->response_body(s);
  up_pump_tunnel(u);
  up_flush(u);
}

/* Tunnel bytes from the origin. Returns after at most a few reads. */
static void up_read_tunnel(struct sl_upconn *u) {
  struct sl_stream *s = u->s;
  struct ev_loop *loop = u->pool->w->loop;
  for (int i = 0; i < 4 && !u->dead && u->s == s; i++) {
    if (sl_pipe_full(&s->resp_body)) {
      u->read_paused = true;
      ev_io_stop(loop, &u->rio);
      return;
    }
    ssize_t n = read(u->fd, up_scratch, sizeof(up_scratch));
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
    }
    if (n <= 0) {
      /* The origin ended the tunnel: deliver what is buffered, then end. */
      s->resp_done = true;
      sl_upstream_tunnel_end(s);
      s->fe->response_body(s);
      return;
    }
    up_touch(u);
    sl_stream_tunnel_down(s, up_scratch, (size_t)n);
    if (u->s != s) return;
    s->fe->response_body(s);
    if ((size_t)n < sizeof(up_scratch)) return;
  }
}

static void up_on_writable(struct ev_loop *loop, struct sl_upconn *u) {
  if (u->state == UP_CONNECTING) {
    int err = 0;
    socklen_t len = sizeof(err);
    getsockopt(u->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    ev_io_stop(loop, &u->wio);
    if (err != 0) {
      up_fail(u, 502, "upstream_connect_failed");
      return;
    }
    if (!u->s) {
      /* The stream went away while connecting: park the connection. */
      u->state = UP_ACTIVE;
      u->keep_alive = u->resp_complete = u->req_sent = true;
      up_release(u);
      return;
    }
    up_attach(u, u->s);
    return;
  }
  up_flush(u);
}

/* The timer of an exchange whose request body is still being sent. It
 * blames whoever is late (RFC 9110 §15.5.9, §15.6.5): an origin that read
 * nothing of what sluice has for it for the response timeout gets 504 and
 * counts as an upstream failure; a client that sent no body byte for the
 * listener's idle timeout gets 408 and is no upstream failure (the breaker
 * does not hear of it). Steady progress, however slow, is neither. */
static void up_body_timeout(struct sl_upconn *u, ev_tstamp now) {
  struct sl_stream *s = u->s;
  if (!sl_pipe_empty(&u->out)) {
    up_fail(u, 504, "upstream_timeout");
    return;
  }
  ev_tstamp client_due =
      u->body_moved_at + (ev_tstamp)atomic_load(&s->conn->lis->idle_timeout_ms) / 1000.0;
  if (client_due <= now) {
    if (SL_LOG_ENABLED(SL_LOG_DEBUG))
      sl_log(SL_LOG_DEBUG, "request body stalled", "upstream", u->pool->name, NULL);
    sl_stream_respond_error(s, 408, "request_body_timeout", "http", 0);
    return;
  }
  up_arm_at(u, now + u->timeout < client_due ? now + u->timeout : client_due);
}

static void up_on_timeout(struct sl_upconn *u) {
  ev_tstamp now = ev_now(u->pool->w->loop);
  if (u->timeout_at > now) {
    up_arm_at(u, u->timeout_at); /* the deadline moved on since: not yet */
    return;
  }
  switch (u->state) {
  case UP_CONNECTING:
    up_fail(u, 504, "upstream_connect_timeout");
    break;
  case UP_IDLE:
    up_close(u);
    break;
  case UP_ACTIVE:
    if (u->tunnel && u->s) {
      /* Idle tunnel: a close frame if sluice is between frames, else
       * just end it. */
      struct sl_stream *s = u->s;
      sl_stream_tunnel_close(s, 1001, "idle timeout");
      if (s->up == u) {
        s->resp_done = true;
        sl_upstream_tunnel_end(s);
        s->fe->response_body(s);
      }
      break;
    }
    if (!u->req_sent && !u->resp_started && u->s) {
      up_body_timeout(u, now);
      break;
    }
    up_fail(u, 504, "upstream_timeout");
    break;
  }
}

static void up_on_readable(struct ev_loop *loop, struct sl_upconn *u) {
  if (u->state == UP_IDLE) {
    /* An idle connection has nothing to say: EOF or stray bytes alike
     * end it. */
    up_close(u);
    return;
  }
  if (u->tunnel) {
    if (u->s) up_read_tunnel(u);
    return;
  }
  for (int i = 0; i < 4; i++) {
    struct sl_stream *s = u->s;
    if (u->dead || (!s && !u->discarding)) return;
    if (s && sl_pipe_full(&s->resp_body)) {
      u->read_paused = true;
      ev_io_stop(loop, &u->rio);
      return;
    }
    ssize_t n = read(u->fd, up_scratch, sizeof(up_scratch));
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      if (up_try_retry(u)) return;
      up_fail(u, 502, "upstream_reset");
      return;
    }
    if (n == 0) {
      if (!u->resp_started && up_try_retry(u)) return;
      /* A close-delimited body ends here (RFC 9112 §6.3 rule 8). */
      if (u->resp_started && !u->resp_complete) llhttp_finish(&u->parser);
      if (u->resp_complete && !u->dead) {
        struct sl_stream *st = u->s;
        u->keep_alive = false;
        if (st) st->fe->response_body(st);
        /* Not reusable: closes, replaying anything pipelined behind. */
        if (!u->dead && u->s == st) up_advance(u, false);
        return;
      }
      up_fail(u, 502, "upstream_closed");
      return;
    }
    up_touch(u); /* progress: response timeout restarts */
    /* One read may hold the end of this response and whole pipelined
     * ones after it: parse on, response by response. */
    const char *data = up_scratch;
    size_t len = (size_t)n;
    while (len > 0) {
      struct sl_stream *cur = u->s;
      u->resp_started = true;
      llhttp_errno_t err = llhttp_execute(&u->parser, data, len);
      if (u->dead || u->s != cur) return; /* released or failed from a callback */
      /* up_scratch is reused by the next read: a field cut by this one
       * moves to its own scratch. */
      if (err == HPE_OK && (sl_hpiece_keep(&u->field) || sl_hpiece_keep(&u->value))) {
        up_fail(u, 502, "out_of_memory");
        return;
      }
      if (cur && (err == HPE_PAUSED_UPGRADE || (err == HPE_PAUSED && cur->tunnel))) {
        const char *pos = llhttp_get_error_pos(&u->parser);
        size_t rest = pos ? (size_t)(data + len - pos) : 0;
        up_enter_tunnel(u, pos, rest);
        return;
      }
      if (err == HPE_PAUSED) {
        const char *pos = llhttp_get_error_pos(&u->parser);
        size_t used = pos ? (size_t)(pos - data) : len;
        data += used;
        len -= used;
        if (cur) {
          cur->fe->response_body(cur);
          if (u->dead || u->s != cur) return;
        }
        /* A response that came before its request body was sent: the
         * connection stays with the exchange until it is detached. */
        if (!u->req_sent) return;
        if (!up_advance(u, len > 0)) return;
        continue;
      }
      if (err != HPE_OK) {
        if (SL_LOG_ENABLED(SL_LOG_DEBUG))
          sl_log(SL_LOG_DEBUG, "upstream parse error", "upstream", u->pool->name, "reason",
                 llhttp_get_error_reason(&u->parser), NULL);
        if (u->accept_mismatch && u->s) sl_stats_ws_upgrade(u->s->route->name, "failed");
        up_fail(u, 502,
                u->accept_mismatch ? "upstream_bad_handshake"
                : u->parse_error   ? u->parse_error
                                   : "upstream_bad_response");
        return;
      }
      if (cur) cur->fe->response_body(cur);
      break;
    }
    if ((size_t)n < sizeof(up_scratch)) return;
  }
}

/* ---- response parsing --------------------------------------------- */

/* An interim answer (RFC 9110 §15.2): 1xx other than 101, which ends the
 * exchange as a protocol switch. */
static inline bool status_is_interim(int status) {
  return status >= 100 && status < 200 && status != 101;
}

/* A new message (an interim 1xx, the final response): its head is
 * counted from zero. */
static int on_resp_message_begin(llhttp_t *p) {
  struct sl_upconn *u = p->data;
  u->head_bytes = u->head_fields = 0;
  u->parse_error = NULL;
  sl_hpiece_reset(&u->field);
  sl_hpiece_reset(&u->value);
  return 0;
}

/* An origin's head (status line, fields, trailers) is bounded like a
 * client's: past the limit the exchange fails with 502, an upstream
 * failure. Orphans' heads count too (llhttp stores nothing of them, but
 * the connection must not be held by an endless head). */
static int up_count_head(struct sl_upconn *u, size_t n) {
  u->head_bytes += (uint32_t)(n < UINT32_MAX ? n : UINT32_MAX);
  if (u->head_bytes <= u->head_bytes_max) return 0;
  u->parse_error = "upstream_header_too_large";
  return -1;
}

static int on_resp_status(llhttp_t *p, const char *at, size_t n) {
  (void)at;
  return up_count_head(p->data, n);
}

static int on_resp_header_field(llhttp_t *p, const char *at, size_t n) {
  struct sl_upconn *u = p->data;
  if (up_count_head(u, n)) return -1;
  if (!u->s) return 0; /* an orphan's response: discarded */
  return sl_hpiece_add(&u->field, at, n);
}

static int on_resp_header_value(llhttp_t *p, const char *at, size_t n) {
  struct sl_upconn *u = p->data;
  if (up_count_head(u, n)) return -1;
  if (!u->s) return 0;
  return sl_hpiece_add(&u->value, at, n);
}

static int on_resp_header_value_complete(llhttp_t *p) {
  struct sl_upconn *u = p->data;
  if (++u->head_fields > u->head_fields_max) {
    u->parse_error = "upstream_header_too_large";
    return -1;
  }
  if (!u->s) return 0;
  /* An interim answer's fields are not forwarded: not stored either. */
  if (status_is_interim(p->status_code)) {
    sl_hpiece_clear(&u->field);
    sl_hpiece_clear(&u->value);
    return 0;
  }
  static const char *const drop[] = {"connection", "keep-alive", "proxy-connection",
                                     "transfer-encoding", "te", "trailer", "upgrade",
                                     "content-length", NULL};
  const char *f = u->field.len ? u->field.at : "";
  size_t fl = u->field.len;
  bool dropped = false;
  for (int i = 0; drop[i]; i++)
    if (strlen(drop[i]) == fl && strncasecmp(f, drop[i], fl) == 0) dropped = true;
  int rv = 0;
  if (!dropped) {
    const char *v = u->value.len ? u->value.at : "";
    size_t vl = u->value.len;
    while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t')) vl--;
    rv = sl_response_add_header(u->s, f, fl, v, vl);
  }
  sl_hpiece_clear(&u->field);
  sl_hpiece_clear(&u->value);
  return rv;
}

static int on_resp_header_field_complete(llhttp_t *p) {
  struct sl_upconn *u = p->data;
  sl_hpiece_clear(&u->value);
  return 0;
}

static int on_resp_headers_complete(llhttp_t *p) {
  struct sl_upconn *u = p->data;
  struct sl_stream *s = u->s;
  int status = p->status_code;
  if (status_is_interim(status) && ++u->interims > UP_INTERIM_MAX) {
    u->parse_error = "upstream_bad_response";
    return -1;
  }
  if (!s) {
    /* Discarding: only the framing matters (a HEAD's answer has none). */
    if (status >= 200 || status == 101) u->keep_alive = llhttp_should_keep_alive(p);
    if (status == 101) return -1; /* nobody asked to switch protocols */
    return u->cur_is_head ? 1 : 0;
  }
  if (status_is_interim(status)) {
    /* Interim responses are not forwarded (100 Continue was answered
     * by sluice itself); wait for the final one. */
    s->resp.n_headers = 0;
    return 0;
  }
  bool upgrade = status == 101 && s->req.upgrade_websocket;
  if (status == 101 && !upgrade) return -1; /* a 101 nobody asked for */
  if (s->req.upgrade_websocket && !upgrade) sl_stats_ws_upgrade(s->route->name, "failed");
  if (upgrade && s->ws_h2) {
    /* sluice made the key, so it checks the answer (RFC 6455 §4.1). */
    char want[29];
    sl_ws_accept(s->ws_key, strlen(s->ws_key), want);
    const struct sl_header *acc = NULL;
    for (uint32_t i = 0; i < s->resp.n_headers; i++)
      if (strcasecmp(s->resp.headers[i].name, "sec-websocket-accept") == 0)
        acc = &s->resp.headers[i];
    if (!acc || strcmp(acc->value, want) != 0) {
      u->accept_mismatch = true;
      return -1;
    }
  }
  s->resp.status = status;
  s->resp.content_length = (p->flags & F_CONTENT_LENGTH) ? (int64_t)p->content_length : -1;
  s->resp.no_body = s->req.is_head || status == 204 || status == 304 || status < 200;
  if (status == 204 || status < 200) s->resp.content_length = -1;
  s->resp_head_done = true;
  u->keep_alive = llhttp_should_keep_alive(p);
  if (!u->keep_alive) u->pipelinable = false; /* the origin will close it */
  struct sl_pool *pool = u->pool;
  sl_stats_upstream_done(pool->w, pool->name, status,
                         ev_now(pool->w->loop) - s->upstream_started);
  sl_stream_outcome(s, status >= 500);
  if (upgrade) {
    s->resp.no_body = false;
    s->resp.content_length = -1;
    sl_stream_tunnel_open(s);
    s->fe->response_head(s);
    return 2; /* no body: the rest of the bytes are the tunnel's */
  }
  s->fe->response_head(s);
  /* HEAD responses carry no body whatever their framing headers say. */
  return s->req.is_head ? 1 : 0;
}

static int on_resp_body(llhttp_t *p, const char *at, size_t n) {
  struct sl_upconn *u = p->data;
  if (!u->s) return 0;
  return sl_pipe_write(&u->s->resp_body, at, n) == 0 ? 0 : -1;
}

static int on_resp_message_complete(llhttp_t *p) {
  struct sl_upconn *u = p->data;
  struct sl_stream *s = u->s;
  if (!s) {
    if (p->status_code >= 100 && p->status_code < 200) return 0; /* interim */
    u->resp_complete = true;
    if (!llhttp_should_keep_alive(p)) u->keep_alive = false;
    return HPE_PAUSED;
  }
  if (!s->resp_head_done) return 0; /* an interim 1xx ended */
  if (s->tunnel) return 0;           /* the 101's head: the tunnel starts */
  u->resp_complete = true;
  s->resp_done = true;
  if (!llhttp_should_keep_alive(p)) u->keep_alive = false;
  return HPE_PAUSED;
}

__attribute__((constructor)) static void up_settings_init(void) {
  llhttp_settings_init(&up_settings);
  up_settings.on_message_begin = on_resp_message_begin;
  up_settings.on_status = on_resp_status;
  up_settings.on_header_field = on_resp_header_field;
  up_settings.on_header_value = on_resp_header_value;
  up_settings.on_header_field_complete = on_resp_header_field_complete;
  up_settings.on_header_value_complete = on_resp_header_value_complete;
  up_settings.on_headers_complete = on_resp_headers_complete;
  up_settings.on_body = on_resp_body;
  up_settings.on_message_complete = on_resp_message_complete;
}

/* ---- libev entry points: every callback of a connection runs between
 * up_enter and up_leave (see up_close). */

static void up_read_cb(struct ev_loop *loop, ev_io *w, int revents) {
  struct sl_upconn *u = SL_CONTAINER_OF(w, struct sl_upconn, rio);
  (void)revents;
  up_enter(u);
  up_on_readable(loop, u);
  up_leave(u);
}

static void up_write_cb(struct ev_loop *loop, ev_io *w, int revents) {
  struct sl_upconn *u = SL_CONTAINER_OF(w, struct sl_upconn, wio);
  (void)revents;
  up_enter(u);
  up_on_writable(loop, u);
  up_leave(u);
}

static void up_timer_cb(struct ev_loop *loop, ev_timer *w, int revents) {
  struct sl_upconn *u = SL_CONTAINER_OF(w, struct sl_upconn, timer);
  (void)loop;
  (void)revents;
  up_enter(u);
  up_on_timeout(u);
  up_leave(u);
}
