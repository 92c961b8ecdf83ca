/*
 * sluice — the HTTP/1.1 upstream backend (struct sl_upstream_ops): request
 * heads rendered for the origin, request bodies pumped (re-framed chunked
 * when the length is unknown), responses parsed with llhttp, bodyless
 * GET/HEAD pipelined up to the pool's depth, WebSocket tunnels after a
 * 101. The pool (pool.c) owns the connection's life; this file owns what
 * is said on it.
 *
 * The response head is held to the limits of the listener the request
 * came in on (limits.header_bytes, limits.headers): past them the
 * exchange fails with 502 upstream_header_too_large, an upstream failure.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <llhttp.h>

#include "sluice/log.h"
#include "core/http.h"
#include "core/io.h"
#include "core/hpiece.h"
#include "core/held.h"
#include "core/conn-t.h"
#include "core/container.h"
#include "core/listener-t.h"
#include "core/request_id.h"
#include "core/stream.h"
#include "core/worker-t.h"
#include "upstream/upstream.h"
#include "core/stats.h"
#include "upstream/backend.h"

struct h1_up {
  struct sl_upconn c; /* first: the pool's part */
  llhttp_t parser;
  struct sl_pipe out;

  /* Response head fields being accumulated (pieces may span reads), and
   * the head's size so far, bounded like a request head (see
   * h1_count_head). */
  struct sl_hpiece field, value;
  uint32_t head_bytes, head_fields;
  uint32_t head_bytes_max, head_fields_max;
  const char *parse_error; /* set by a callback before it fails the parse */
  uint8_t interims;        /* 1xx answers to the current request so far */

  bool req_chunked;      /* request body sent with chunked framing */
  bool req_sent;         /* the whole request is queued in `out` */
  bool resp_started;     /* a response byte arrived */
  bool resp_complete;
  bool keep_alive;
  bool read_paused;
  bool tunnel;           /* after a 101: raw bytes both ways */
  bool accept_mismatch;  /* the origin's Sec-WebSocket-Accept was wrong */
  bool resp_connection;  /* the response head has a Connection field */
  bool shut_wr;          /* tunnel: client finished sending, FIN sent */
  uint64_t body_taken;   /* request body bytes consumed from the stream */
  ev_tstamp body_moved_at; /* last request body progress from the client */

  /* HTTP/1.1 pipelining (pool->pipeline > 1). c.s is the exchange whose
   * response is being read; q holds the requests written after it, oldest
   * first. A NULL entry is an orphan (its client went away): its response
   * is still read, and discarded. */
  struct {
    struct sl_stream *s;
    bool is_head;
  } q[SL_PIPELINE_MAX];
  uint8_t q_first, q_n;
  bool pipelinable;      /* every request on it so far is a bodyless GET/HEAD */
  bool discarding;       /* reading an orphan's response (c.s is NULL) */
  bool cur_is_head;      /* the response being read answers a HEAD */
};

static inline struct h1_up *h1_of(struct sl_upconn *c) {
  return SL_CONTAINER_OF(c, struct h1_up, c);
}

static llhttp_settings_t h1_settings;

/* Interim (1xx) answers accepted before the final one; more is a broken
 * origin (RFC 9110 §15.2 allows several, e.g. 103 Early Hints). */
#define H1_INTERIM_MAX 16
static __thread char h1_scratch[SL_CHUNK_SIZE];

static void h1_flush(struct h1_up *u);

/* Starts parsing a new response on |u|. */
static void h1_parser_reset(struct h1_up *u) {
  u->interims = 0;
  llhttp_init(&u->parser, HTTP_RESPONSE, &h1_settings);
  u->parser.data = u;
}

/* The exchange on |u| is over: back to the pool, reusable if its framing
 * allows it. */
static void h1_release(struct h1_up *u) {
  bool reusable = u->keep_alive && u->resp_complete && u->req_sent && u->q_n == 0 &&
                  sl_pipe_empty(&u->out);
  if (reusable) u->read_paused = false;
  sl_upconn_release(&u->c, reusable);
}

/* The origin closed or reset a reused connection before answering: if the
 * request can be replayed exactly, send it again on a fresh connection. */
static bool h1_try_retry(struct h1_up *u) {
  if (u->resp_started) return false;
  return sl_upconn_retry(&u->c, u->body_taken);
}

/* ---- request serialisation ---------------------------------------- */

static int h1_write_request_head(struct h1_up *u, struct sl_stream *s) {
  struct sl_pipe *o = &u->out;
  const struct sl_request *r = &s->req;
  /* Hop-by-hop and framing fields are not forwarded (RFC 9110 §7.6.1);
   * sluice writes its own Host, framing and forwarding headers. */
  int oom;
  const char *conn_tokens = sl_http_connection_list(&s->arena, r->headers, r->n_headers, &oom);
  if (oom) return -1;
  /* RFC 8441: an h2 extended CONNECT becomes an HTTP/1.1 GET upgrade. */
  int rv = sl_pipe_puts(o, s->ws_h2 ? "GET" : r->method);
  rv |= SL_PIPE_LIT(o, " ");
  rv |= sl_pipe_puts(o, r->path);
  rv |= SL_PIPE_LIT(o, " HTTP/1.1\r\n");
  rv |= SL_PIPE_LIT(o, "host: ");
  const char *host = r->authority ? r->authority : u->c.pool->address_text;
  rv |= sl_pipe_write(o, host, strlen(host));
  rv |= SL_PIPE_LIT(o, "\r\n");
  const struct sl_header *client_id = NULL; /* the first x-request-id */
  for (uint32_t i = 0; i < r->n_headers && rv == 0; i++) {
    const struct sl_header *h = &r->headers[i];
    if (sl_http_hop(SL_HTTP_REQUEST, h->name, h->name_len, conn_tokens) != SL_HOP_KEEP) continue;
    if (s->ws_h2 && (strcmp(h->name, "sec-websocket-key") == 0 ||
                     strcmp(h->name, "sec-websocket-version") == 0))
      continue;
    if (h->name_len == 12 && memcmp(h->name, "x-request-id", 12) == 0) {
      if (!client_id) client_id = h;
      continue; /* written once below, the client's or sluice's */
    }
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
  /* One write for the field: it is on every forwarded request. */
  size_t id_len;
  const char *id = sl_request_id_from(s, client_id, &id_len);
  char idf[sizeof("\r\nx-request-id: \r\n") + SL_REQUEST_ID_MAX];
  memcpy(idf, "\r\nx-request-id: ", 16);
  memcpy(idf + 16, id, id_len);
  memcpy(idf + 16 + id_len, "\r\n", 2);
  rv |= sl_pipe_write(o, idf, 18 + id_len);
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
static void h1_pump_tunnel(struct h1_up *u) {
  struct sl_stream *s = u->c.s;
  size_t moved = 0;
  while (!sl_pipe_empty(&s->req_body) && !sl_pipe_full(&u->out)) {
    moved += s->req_body.len;
    sl_pipe_splice(&u->out, &s->req_body);
  }
  if (moved) {
    s->tunnel_bytes_up += moved;
    sl_held_tunnel_touch(s);
    sl_upconn_touch(&u->c); /* traffic: not idle */
    s->fe->request_body_drained(s, moved);
  }
}

/* The whole request is queued for the origin: the response timeout and the
 * latency the breaker judges (slow_call) run from here, not from dispatch,
 * so a slow upload is never the origin's slowness. */
static void h1_request_sent(struct h1_up *u) {
  u->req_sent = true;
  u->c.s->upstream_started = ev_now(u->c.pool->w->loop);
  sl_upconn_set_timeout(&u->c, u->c.pool->response_timeout_ms);
}

static void h1_pump_body(struct h1_up *u) {
  struct sl_stream *s = u->c.s;
  if (!s) return;
  if (u->tunnel) {
    h1_pump_tunnel(u);
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
    u->body_moved_at = ev_now(u->c.pool->w->loop);
    sl_upconn_touch(&u->c);
  }
  if (s->req_done && sl_pipe_empty(&s->req_body)) {
    if (u->req_chunked) SL_PIPE_LIT(&u->out, "0\r\n\r\n");
    h1_request_sent(u);
  }
  if (moved) {
    u->body_taken += moved;
    s->fe->request_body_drained(s, moved);
  }
}

/* Only bodyless GET and HEAD requests are pipelined: they can be replayed
 * on another connection if this one fails before answering them. */
static bool h1_can_pipeline(const struct sl_pool *p, const struct sl_stream *s) {
  if (p->pipeline <= 1 || s->req.has_body || s->req.upgrade_websocket) return false;
  return strcmp(s->req.method, "GET") == 0 || strcmp(s->req.method, "HEAD") == 0;
}

/* ops->can_share: busy |c| can take one more pipelined request. */
static bool h1_can_share(struct sl_upconn *c, const struct sl_stream *s) {
  struct h1_up *u = h1_of(c);
  struct sl_pool *p = c->pool;
  if (!h1_can_pipeline(p, s)) return false;
  return !c->dead && c->state == SL_UPCONN_ACTIVE && u->pipelinable && !u->tunnel &&
         u->req_sent && 1u + u->q_n < p->pipeline && !p->retired;
}

/* ops->attach: the first exchange since |c| connected or went idle. */
static void h1_attach(struct sl_upconn *c, struct sl_stream *s) {
  struct h1_up *u = h1_of(c);
  struct sl_pool *p = c->pool;
  c->s = s;
  s->up = c;
  c->state = SL_UPCONN_ACTIVE;
  u->req_sent = u->resp_started = u->resp_complete = u->keep_alive = false;
  u->body_taken = 0;
  /* The origin's head is held to the limits of the listener the request
   * came in on (limits.header_bytes, limits.headers). */
  u->head_bytes_max = atomic_load(&s->conn->lis->header_bytes);
  u->head_fields_max = atomic_load(&s->conn->lis->headers);
  h1_parser_reset(u);
  u->discarding = false;
  u->cur_is_head = s->req.is_head;
  u->pipelinable = h1_can_pipeline(p, s);
  if (u->pipelinable) p->shared = c;
  s->upstream_started = ev_now(p->w->loop);
  if (h1_write_request_head(u, s) != 0) {
    sl_upconn_close(c);
    s->ex->failed(s, 503, "out_of_memory");
    return;
  }
  u->body_moved_at = ev_now(p->w->loop);
  /* Until the request is all sent the timer measures the origin's write
   * progress (see h1_body_timeout); h1_request_sent restarts it. */
  sl_upconn_set_timeout(c, p->response_timeout_ms);
  if (!s->req.has_body) {
    s->req_done = true;
    u->req_sent = true;
  } else if (s->req.upgrade_websocket) {
    /* Bytes the client sends before the 101 wait in req_body (bounded by
     * the h2 window / paused h1 reads) and flow once tunnelled. */
    u->req_sent = true;
  }
  h1_pump_body(u);
  ev_io_start(p->w->loop, &c->rio);
  sl_upconn_schedule_flush(c);
}

/* ops->share: writes |s|'s request behind the ones in flight on |c|. */
static void h1_share(struct sl_upconn *c, struct sl_stream *s) {
  struct h1_up *u = h1_of(c);
  unsigned idx = (u->q_first + u->q_n) % SL_PIPELINE_MAX;
  u->q[idx].s = s;
  u->q[idx].is_head = s->req.is_head;
  u->q_n++;
  s->up = c;
  s->req_done = true;
  s->upstream_started = ev_now(c->pool->w->loop);
  if (h1_write_request_head(u, s) != 0) {
    sl_upconn_close(c); /* replays what was in flight, s included */
    return;
  }
  sl_upconn_schedule_flush(c);
}

static void h1_request_body(struct sl_upconn *c, struct sl_stream *s) {
  struct h1_up *u = h1_of(c);
  if (c->s != s) return;
  h1_pump_body(u);
  h1_flush(u);
}

static void h1_resume(struct sl_upconn *c, struct sl_stream *s) {
  struct h1_up *u = h1_of(c);
  if (c->s != s || !u->read_paused || sl_pipe_full(&s->resp_body)) return;
  u->read_paused = false;
  ev_io_start(c->pool->w->loop, &c->rio);
}

static void h1_detach(struct sl_upconn *c, struct sl_stream *s) {
  struct h1_up *u = h1_of(c);
  if (c->s != s) {
    /* Written behind the current exchange: its response will still come
     * and is read and dropped (the connection's framing stays intact). */
    for (unsigned i = 0; i < u->q_n; i++) {
      unsigned idx = (u->q_first + i) % SL_PIPELINE_MAX;
      if (u->q[idx].s == s) u->q[idx].s = NULL;
    }
    return;
  }
  c->s = NULL;
  if (c->state == SL_UPCONN_ACTIVE && u->resp_complete && u->req_sent)
    h1_release(u);
  else
    sl_upconn_close(c); /* mid-exchange: the connection's framing is unknown */
}

/* ops->close: the pipelined requests that got no answer go back to the
 * pool for a replay, oldest first. */
static struct sl_stream *h1_close(struct sl_upconn *c) {
  struct h1_up *u = h1_of(c);
  struct sl_stream *head = NULL, **tail = &head;
  for (unsigned i = 0; i < u->q_n; i++) {
    struct sl_stream *qs = u->q[(u->q_first + i) % SL_PIPELINE_MAX].s;
    if (!qs) continue;
    qs->up = NULL;
    qs->queue_next = NULL;
    *tail = qs;
    tail = &qs->queue_next;
  }
  u->q_n = 0;
  sl_pipe_clear(&u->out);
  sl_hpiece_free(&u->field);
  sl_hpiece_free(&u->value);
  return head;
}

/* ---- I/O ---------------------------------------------------------- */

/* The current response is complete: move on to the next pipelined one.
 * Returns true if |u| is now reading another response (the caller parses
 * on), false if it went idle, was given to a queued stream, or closed. */
static bool h1_advance(struct h1_up *u, bool bytes_left) {
  struct sl_stream *s = u->c.s;
  if (s) s->up = NULL;
  u->c.s = NULL;
  u->discarding = false;
  if (u->q_n == 0) {
    /* Bytes after the last answer were never asked for. */
    if (bytes_left) u->keep_alive = false;
    h1_release(u);
    return false;
  }
  if (!u->keep_alive) {
    sl_upconn_close(&u->c); /* replays the pipelined requests */
    return false;
  }
  unsigned idx = u->q_first;
  u->q_first = (uint8_t)((u->q_first + 1) % SL_PIPELINE_MAX);
  u->q_n--;
  u->c.s = u->q[idx].s;
  u->cur_is_head = u->q[idx].is_head;
  u->discarding = u->c.s == NULL;
  u->resp_started = u->resp_complete = false;
  h1_parser_reset(u);
  sl_upconn_set_timeout(&u->c, u->c.pool->response_timeout_ms);
  return true;
}

static void h1_fail(struct h1_up *u, int status, const char *error) {
  sl_upconn_fail(&u->c, status, error);
}

/* The tunnel is over on sluice's side: what is buffered for the client
 * is delivered, then the client's side ends. Closes (and may free) |s|'s
 * upstream connection: its caller touches it no more. */
static void h1_tunnel_finish(struct sl_stream *s) {
  s->resp_done = true;
  sl_upstream_tunnel_end(s);
  s->fe->response_body(s);
}

static void h1_flush(struct h1_up *u) {
  while (!sl_pipe_empty(&u->out)) {
    struct iovec iov[16];
    int n = sl_pipe_iov(&u->out, iov, 16);
    ssize_t w = sl_io_writev(u->c.fd, iov, n);
    if (w < 0) {
      if (w == SL_IO_AGAIN) {
        ev_io_start(u->c.pool->w->loop, &u->c.wio);
        return;
      }
      if (h1_try_retry(u)) return;
      h1_fail(u, 502, "upstream_write_failed");
      return;
    }
    sl_pipe_consume(&u->out, (size_t)w);
    if (!u->req_sent) sl_upconn_touch(&u->c); /* the origin reads the body */
    /* Room again: take more of the request body. */
    if (!u->req_sent || u->tunnel) h1_pump_body(u);
  }
  ev_io_stop(u->c.pool->w->loop, &u->c.wio);
  /* A tunnel whose client finished sending, and all it sent is written. */
  struct sl_stream *s = u->c.s;
  if (u->tunnel && !u->shut_wr && s && s->req_done && sl_pipe_empty(&s->req_body)) {
    u->shut_wr = true;
    if (s->conn->peer_eof && !s->ws_h2) {
      /* An HTTP/1.1 client's FIN: RFC 6455 section 7.1.1 has a client
       * close TCP only after the close handshake (or to fail the
       * connection), so nothing the origin sends from now on is for it.
       * The tunnel ends as at the origin's EOF, and both sides close
       * (nginx does the same). Passing the half-close on and waiting for
       * the origin's FIN cost a crash-looping device's every tunnel one
       * more wake-up: 6 us of 42 (storm_bench ws-upgrade). */
      h1_tunnel_finish(s); /* u is not touched again */
      return;
    }
    /* RFC 8441: END_STREAM half-closes the stream only, and the client
     * still reads the origin's close frame on it: pass the half-close on. */
    shutdown(u->c.fd, SHUT_WR);
  }
}

/* ops->tunnel_end: a tunnel's connection is not reused. */
static void h1_tunnel_end(struct sl_upconn *c, struct sl_stream *s) {
  (void)s;
  c->s = NULL;
  sl_upconn_close(c);
}

/* Switches |u| to raw tunnel mode after the 101 head; |rest| are bytes
 * the origin sent after it (already WebSocket frames). */
static void h1_enter_tunnel(struct h1_up *u, const char *rest, size_t n) {
  struct sl_stream *s = u->c.s;
  u->tunnel = true;
  u->keep_alive = false;
  uint64_t idle_ms = s->route->idle_timeout_ms ? s->route->idle_timeout_ms
                                               : s->conn->lis->idle_timeout_ms;
  sl_upconn_set_timeout(&u->c, idle_ms);
  if (n) s->ex->tunnel_down(s, rest, n);
  if (u->c.dead || u->c.s != s) return; /* closed while injecting */
  s->fe->response_body(s);
  h1_pump_tunnel(u);
  h1_flush(u);
}

/* Tunnel bytes from the origin. Returns after at most a few reads. */
static void h1_read_tunnel(struct h1_up *u) {
  struct sl_stream *s = u->c.s;
  struct ev_loop *loop = u->c.pool->w->loop;
  for (int i = 0; i < 4 && !u->c.dead && u->c.s == s; i++) {
    if (sl_pipe_full(&s->resp_body)) {
      u->read_paused = true;
      ev_io_stop(loop, &u->c.rio);
      return;
    }
    ssize_t n = sl_io_read(u->c.fd, h1_scratch, sizeof(h1_scratch));
    if (n == SL_IO_AGAIN) return;
    if (n < 0) { /* EOF or a reset: the origin ended the tunnel */
      h1_tunnel_finish(s);
      return;
    }
    sl_upconn_touch(&u->c);
    s->ex->tunnel_down(s, h1_scratch, (size_t)n);
    if (u->c.s != s) return;
    s->fe->response_body(s);
    if ((size_t)n < sizeof(h1_scratch)) return;
  }
}

/* ops->on_writable: the socket takes more (or a scheduled flush). */
static void h1_on_writable(struct sl_upconn *c) { h1_flush(h1_of(c)); }

/* The timer of an exchange whose request body is still being sent. It
 * blames whoever is late (RFC 9110 §15.5.9, §15.6.5): an origin that read
 * nothing of what sluice has for it for the response timeout gets 504 and
 * counts as an upstream failure; a client that sent no body byte for the
 * listener's idle timeout gets 408 and is no upstream failure (the breaker
 * does not hear of it). Steady progress, however slow, is neither. */
static void h1_body_timeout(struct h1_up *u, ev_tstamp now) {
  struct sl_stream *s = u->c.s;
  if (!sl_pipe_empty(&u->out)) {
    h1_fail(u, 504, "upstream_timeout");
    return;
  }
  ev_tstamp client_due =
      u->body_moved_at + (ev_tstamp)atomic_load(&s->conn->lis->idle_timeout_ms) / 1000.0;
  if (client_due <= now) {
    if (SL_LOG_ENABLED(SL_LOG_DEBUG))
      sl_log(SL_LOG_DEBUG, "request body stalled", "upstream", u->c.pool->name, NULL);
    s->ex->respond_error(s, 408, "request_body_timeout", "http", 0);
    return;
  }
  sl_upconn_arm_at(&u->c, now + u->c.timeout < client_due ? now + u->c.timeout : client_due);
}

/* ops->on_timeout: the deadline of busy |c| passed. */
static void h1_on_timeout(struct sl_upconn *c, ev_tstamp now) {
  struct h1_up *u = h1_of(c);
  if (u->tunnel && c->s) {
    /* Idle tunnel: a close frame if sluice is between frames, else just
     * end it. */
    struct sl_stream *s = c->s;
    s->ex->tunnel_close(s, 1001, "idle timeout");
    if (s->up == c) h1_tunnel_finish(s);
    return;
  }
  if (!u->req_sent && !u->resp_started && c->s) {
    h1_body_timeout(u, now);
    return;
  }
  h1_fail(u, 504, "upstream_timeout");
}

/* ops->on_readable: response bytes (or an idle connection's end). */
static void h1_on_readable(struct sl_upconn *c) {
  struct h1_up *u = h1_of(c);
  struct ev_loop *loop = c->pool->w->loop;
  if (c->state == SL_UPCONN_IDLE) {
    /* An idle connection has nothing to say: EOF or stray bytes alike
     * end it. */
    sl_upconn_close(&u->c);
    return;
  }
  if (u->tunnel) {
    if (u->c.s) h1_read_tunnel(u);
    return;
  }
  for (int i = 0; i < 4; i++) {
    struct sl_stream *s = u->c.s;
    if (u->c.dead || (!s && !u->discarding)) return;
    if (s && sl_pipe_full(&s->resp_body)) {
      u->read_paused = true;
      ev_io_stop(loop, &u->c.rio);
      return;
    }
    ssize_t n = sl_io_read(c->fd, h1_scratch, sizeof(h1_scratch));
    if (n == SL_IO_AGAIN) return;
    if (sl_io_is_fatal(n)) {
      if (h1_try_retry(u)) return;
      h1_fail(u, 502, "upstream_reset");
      return;
    }
    if (n == SL_IO_EOF) {
      if (!u->resp_started && h1_try_retry(u)) return;
      /* A close-delimited body ends here (RFC 9112 §6.3 rule 8). */
      if (u->resp_started && !u->resp_complete) llhttp_finish(&u->parser);
      if (u->resp_complete && !u->c.dead) {
        struct sl_stream *st = u->c.s;
        u->keep_alive = false;
        if (st) st->fe->response_body(st);
        /* Not reusable: closes, replaying anything pipelined behind. */
        if (!u->c.dead && u->c.s == st) h1_advance(u, false);
        return;
      }
      h1_fail(u, 502, "upstream_closed");
      return;
    }
    sl_upconn_touch(&u->c); /* progress: response timeout restarts */
    /* One read may hold the end of this response and whole pipelined
     * ones after it: parse on, response by response. */
    const char *data = h1_scratch;
    size_t len = (size_t)n;
    while (len > 0) {
      struct sl_stream *cur = u->c.s;
      u->resp_started = true;
      llhttp_errno_t err = llhttp_execute(&u->parser, data, len);
      if (u->c.dead || u->c.s != cur) return; /* released or failed from a callback */
      /* h1_scratch is reused by the next read: a field cut by this one
       * moves to its own scratch. */
      if (err == HPE_OK && (sl_hpiece_keep(&u->field) || sl_hpiece_keep(&u->value))) {
        h1_fail(u, 502, "out_of_memory");
        return;
      }
      if (cur && (err == HPE_PAUSED_UPGRADE || (err == HPE_PAUSED && cur->tunnel))) {
        const char *pos = llhttp_get_error_pos(&u->parser);
        size_t rest = pos ? (size_t)(data + len - pos) : 0;
        h1_enter_tunnel(u, pos, rest);
        return;
      }
      if (err == HPE_PAUSED) {
        const char *pos = llhttp_get_error_pos(&u->parser);
        size_t used = pos ? (size_t)(pos - data) : len;
        data += used;
        len -= used;
        if (cur) {
          cur->fe->response_body(cur);
          if (u->c.dead || u->c.s != cur) return;
        }
        /* A response that came before its request body was sent: the
         * connection stays with the exchange until it is detached. */
        if (!u->req_sent) return;
        if (!h1_advance(u, len > 0)) return;
        continue;
      }
      if (err != HPE_OK) {
        if (SL_LOG_ENABLED(SL_LOG_DEBUG))
          sl_log(SL_LOG_DEBUG, "upstream parse error", "upstream", u->c.pool->name, "reason",
                 llhttp_get_error_reason(&u->parser), NULL);
        if (u->accept_mismatch && u->c.s) sl_stats_ws_upgrade(u->c.s->route->name, "failed");
        h1_fail(u, 502,
                u->accept_mismatch ? "upstream_bad_handshake"
                : u->parse_error   ? u->parse_error
                                   : "upstream_bad_response");
        return;
      }
      if (cur) cur->fe->response_body(cur);
      break;
    }
    if ((size_t)n < sizeof(h1_scratch)) return;
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
  struct h1_up *u = p->data;
  u->head_bytes = u->head_fields = 0;
  u->parse_error = NULL;
  u->resp_connection = false;
  sl_hpiece_reset(&u->field);
  sl_hpiece_reset(&u->value);
  return 0;
}

/* An origin's head (status line, fields, trailers) is bounded like a
 * client's: past the limit the exchange fails with 502, an upstream
 * failure. Orphans' heads count too (llhttp stores nothing of them, but
 * the connection must not be held by an endless head). */
static int h1_count_head(struct h1_up *u, size_t n) {
  u->head_bytes += (uint32_t)(n < UINT32_MAX ? n : UINT32_MAX);
  if (u->head_bytes <= u->head_bytes_max) return 0;
  u->parse_error = "upstream_header_too_large";
  return -1;
}

static int on_resp_status(llhttp_t *p, const char *at, size_t n) {
  (void)at;
  return h1_count_head(p->data, n);
}

static int on_resp_header_field(llhttp_t *p, const char *at, size_t n) {
  struct h1_up *u = p->data;
  if (h1_count_head(u, n)) return -1;
  if (!u->c.s) return 0; /* an orphan's response: discarded */
  return sl_hpiece_add(&u->field, at, n);
}

static int on_resp_header_value(llhttp_t *p, const char *at, size_t n) {
  struct h1_up *u = p->data;
  if (h1_count_head(u, n)) return -1;
  if (!u->c.s) return 0;
  return sl_hpiece_add(&u->value, at, n);
}

static int on_resp_header_value_complete(llhttp_t *p) {
  struct h1_up *u = p->data;
  if (++u->head_fields > u->head_fields_max) {
    u->parse_error = "upstream_header_too_large";
    return -1;
  }
  if (!u->c.s) return 0;
  /* An interim answer's fields are not forwarded: not stored either. */
  if (status_is_interim(p->status_code)) {
    sl_hpiece_clear(&u->field);
    sl_hpiece_clear(&u->value);
    return 0;
  }
  /* Hop-by-hop fields stop here; Connection is kept until the head is
   * complete, for the fields it names (h1_drop_connection_named). */
  const char *f = u->field.len ? u->field.at : "";
  size_t fl = u->field.len;
  enum sl_hop hop = sl_http_hop(SL_HTTP_RESPONSE, f, fl, NULL);
  if (hop == SL_HOP_CONNECTION) u->resp_connection = true;
  int rv = 0;
  if (hop != SL_HOP_DROP) {
    const char *v = u->value.len ? u->value.at : "";
    size_t vl = u->value.len;
    while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t')) vl--;
    rv = sl_response_add_header(u->c.s, f, fl, v, vl);
  }
  sl_hpiece_clear(&u->field);
  sl_hpiece_clear(&u->value);
  return rv;
}

static int on_resp_header_field_complete(llhttp_t *p) {
  struct h1_up *u = p->data;
  sl_hpiece_clear(&u->value);
  return 0;
}

/* RFC 9110 §7.6.1: the fields the origin's Connection names are for
 * sluice alone, whichever order they came in; drops them and Connection.
 * Returns 0, or -1 on OOM. */
static int h1_drop_connection_named(struct sl_stream *s) {
  struct sl_response *r = &s->resp;
  int oom;
  const char *list = sl_http_connection_list(&s->arena, r->headers, r->n_headers, &oom);
  if (oom) return -1;
  uint32_t n = 0;
  for (uint32_t i = 0; i < r->n_headers; i++)
    if (sl_http_hop(SL_HTTP_RESPONSE, r->headers[i].name, r->headers[i].name_len, list) ==
        SL_HOP_KEEP)
      r->headers[n++] = r->headers[i];
  r->n_headers = n;
  return 0;
}

static int on_resp_headers_complete(llhttp_t *p) {
  struct h1_up *u = p->data;
  struct sl_stream *s = u->c.s;
  int status = p->status_code;
  if (status_is_interim(status) && ++u->interims > H1_INTERIM_MAX) {
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
  if (u->resp_connection && h1_drop_connection_named(s) != 0) {
    u->parse_error = "out_of_memory";
    return -1;
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
  struct sl_pool *pool = u->c.pool;
  sl_stats_upstream_done(pool->w, pool->name, status,
                         ev_now(pool->w->loop) - s->upstream_started);
  s->ex->outcome(s, status >= 500);
  if (upgrade) {
    s->resp.no_body = false;
    s->resp.content_length = -1;
    s->ex->tunnel_open(s);
    s->fe->response_head(s);
    return 2; /* no body: the rest of the bytes are the tunnel's */
  }
  s->fe->response_head(s);
  /* HEAD responses carry no body whatever their framing headers say. */
  return s->req.is_head ? 1 : 0;
}

static int on_resp_body(llhttp_t *p, const char *at, size_t n) {
  struct h1_up *u = p->data;
  if (!u->c.s) return 0;
  return sl_pipe_write(&u->c.s->resp_body, at, n) == 0 ? 0 : -1;
}

static int on_resp_message_complete(llhttp_t *p) {
  struct h1_up *u = p->data;
  struct sl_stream *s = u->c.s;
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

__attribute__((constructor)) static void h1_settings_init(void) {
  llhttp_settings_init(&h1_settings);
  h1_settings.on_message_begin = on_resp_message_begin;
  h1_settings.on_status = on_resp_status;
  h1_settings.on_header_field = on_resp_header_field;
  h1_settings.on_header_value = on_resp_header_value;
  h1_settings.on_header_field_complete = on_resp_header_field_complete;
  h1_settings.on_header_value_complete = on_resp_header_value_complete;
  h1_settings.on_headers_complete = on_resp_headers_complete;
  h1_settings.on_body = on_resp_body;
  h1_settings.on_message_complete = on_resp_message_complete;
}

/* ---- the ops table ------------------------------------------------- */

/* ops->init: a zeroed connection was just allocated. */
static int h1_init(struct sl_upconn *c) {
  sl_pipe_init(&h1_of(c)->out, SL_BODY_PIPE_CAP);
  return 0;
}

const struct sl_upstream_ops sl_upstream_h1_ops = {
    .name = "http/1.1",
    .conn_size = sizeof(struct h1_up),
    .init = h1_init,
    .attach = h1_attach,
    .can_share = h1_can_share,
    .share = h1_share,
    .request_body = h1_request_body,
    .resume = h1_resume,
    .detach = h1_detach,
    .tunnel_end = h1_tunnel_end,
    .on_readable = h1_on_readable,
    .on_writable = h1_on_writable,
    .on_timeout = h1_on_timeout,
    .close = h1_close,
};
