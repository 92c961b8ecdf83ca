/*
 * sluice — client connections: transport (plain or TLS), protocol
 * detection, buffered writes, timers and teardown.
 *
 * Reads go straight into the `in` pipe's chunk (no per-read malloc); the
 * protocol parses from it and whatever it consumed is dropped, so an idle
 * connection holds no buffer. Writes are batched: protocols append to
 * `out` and call sl_conn_schedule_flush(); the worker writes every queued
 * connection once per loop iteration (ev_prepare), with one writev.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sluice/log.h"
#include "sluice/config-t.h"
#include "core/accept.h"
#include "core/conn.h"
#include "core/dlist.h"
#include "core/container.h"
#include "core/held.h"
#include "core/io.h"
#include "core/listener-t.h"
#include "core/proxy_proto.h"
#include "core/slab.h"
#include "core/worker-t.h"
#include "sluice/metrics.h"
#include "front/front.h"
#include "front/tls.h"
#include "upstream/upstream.h"

static void conn_read_cb(struct ev_loop *loop, ev_io *w, int revents);
static void conn_write_cb(struct ev_loop *loop, ev_io *w, int revents);
static void conn_timer_cb(struct ev_loop *loop, ev_timer *w, int revents);
static void conn_do_flush(struct sl_conn *c);
static void conn_linger(struct sl_conn *c);
static void conn_linger_tls(struct sl_conn *c);

/* Connections live in slabs (core/slab.h): what an idle one keeps stays
 * packed, whatever it freed around it. */
static __thread struct sl_slab conn_slab = SL_SLAB_INIT(sizeof(struct sl_conn));

void sl_conn_cache_drain(void) { sl_slab_drain(&conn_slab); }

/* The transport starts: TLS in accept state, or cleartext protocol
 * detection; until the first request head is complete the header timeout
 * runs. Returns -1 after closing |c| if TLS could not be set up. */
static int conn_begin(struct sl_conn *c) {
  if (c->lis->ssl_ctx) {
    c->ssl = SSL_new(c->lis->ssl_ctx);
    if (!c->ssl || SSL_set_fd(c->ssl, c->fd) != 1) {
      sl_conn_close(c);
      return -1;
    }
    SSL_set_accept_state(c->ssl);
    c->handshaking = true;
  } else {
    c->detecting = true;
  }
  sl_conn_set_timeout(c, c->lis->request_header_timeout_ms);
  return 0;
}

void sl_conn_accept(struct sl_worker *w, struct sl_listener *lis, int fd,
                    const struct sockaddr_storage *peer, const struct sl_listener_cfg *lc) {
  struct sl_conn *c = sl_slab_calloc(&conn_slab);
  if (!c) {
    close(fd);
    return;
  }
  c->w = w;
  c->lis = lis;
  c->fd = fd;
  c->peer = *peer;
  sl_pipe_init(&c->in, SL_CHUNK_SIZE);
  sl_pipe_init(&c->out, SL_OUT_PIPE_CAP);
  sl_accept_format_peer(peer, c->peer_ip, sizeof(c->peer_ip));
  /* TCP_NODELAY: inherited from the listening socket (listener.c). */

  ev_io_init(&c->rio, conn_read_cb, fd, EV_READ);
  ev_io_init(&c->wio, conn_write_cb, fd, EV_WRITE);
  ev_init(&c->timer, conn_timer_cb);

  c->next = w->conns;
  if (w->conns) w->conns->prev = c;
  w->conns = c;
  w->n_conns++;
  atomic_fetch_add_explicit(&lis->n_connections, 1, memory_order_relaxed);

  if (lc && lc->proxy_protocol.n_trusted) {
    /* The PROXY header comes first (conn_proxy_header), then TLS or HTTP. */
    c->proxy_hdr = true;
    sl_conn_set_timeout(c, lc->proxy_protocol.timeout_ms);
  } else if (conn_begin(c) != 0) {
    return;
  }
  ev_io_start(w->loop, &c->rio);
  /* Read now rather than after a loop turn: a client speaks first, and
   * in a storm its first bytes are in the socket by the time the backlog
   * gives it to us. That saves the connection's first epoll wake-up, and
   * a connection answered and closed right here (an h1 refusal) is never
   * registered with epoll at all: libev defers the epoll_ctl to the loop
   * turn's end and drops it for a watcher stopped by then. When nothing
   * has arrived yet this costs one read that says EAGAIN. */
  conn_read_cb(w->loop, &c->rio, EV_READ);
}

static void conn_proxy_error(struct sl_conn *c, const char *reason, const char *detail) {
  sl_accept_proxy_error(c->w, c->lis->name, reason, c->peer_ip, detail);
  sl_conn_close(c);
}

/* Reads the PROXY header of a `proxy_protocol` listener's connection,
 * before TLS and HTTP. It takes exactly the header's bytes from the
 * socket, so the TLS or HTTP stream starts with the socket's next byte
 * whoever reads it (OpenSSL reads the fd itself): it peeks at what has
 * arrived, and consumes either all of it (a header not complete yet: every
 * byte belongs to it, and is kept in `in`) or up to the header's end.
 * Then the header's source address becomes the connection's peer and the
 * connection-rate limit runs on it. Returns 1 once the transport has
 * begun, 0 to wait for more bytes, -1 when |c| was closed. */
static int conn_proxy_header(struct sl_conn *c) {
  size_t have = c->in.len, avail;
  size_t want = SL_PP_MAX_HEADER - have;
  /* Contiguous with what `in` holds: the header fits in one chunk. */
  char *dst = sl_pipe_reserve(&c->in, want, &avail);
  if (!dst) {
    sl_conn_close(c);
    return -1;
  }
  ssize_t n = recv(c->fd, dst, want, MSG_PEEK);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return 0;
  if (n <= 0) {
    conn_proxy_error(c, "closed", n == 0 ? "closed before its PROXY header" : strerror(errno));
    return -1;
  }
  struct sl_pp_header h;
  const struct sl_chunk *ch = c->in.tail;
  enum sl_pp_status st =
      sl_pp_parse((const uint8_t *)ch->data + ch->start, have + (size_t)n, &h);
  if (st == SL_PP_ERROR) {
    conn_proxy_error(c, h.too_long ? "too_long" : "malformed", h.error);
    return -1;
  }
  size_t take = st == SL_PP_DONE ? h.len - have : (size_t)n;
  if (recv(c->fd, dst, take, 0) != (ssize_t)take) {
    conn_proxy_error(c, "closed", "the header's bytes went away");
    return -1;
  }
  if (st == SL_PP_NEED_MORE) {
    sl_pipe_commit(&c->in, take);
    return 0;
  }
  sl_pipe_clear(&c->in);
  c->proxy_hdr = false;
  if (h.has_addr) {
    c->peer = h.src;
    sl_accept_format_peer(&c->peer, c->peer_ip, sizeof(c->peer_ip));
  }
  if (!sl_accept_connect_rate(c->w, sl_accept_cfg(c->w, c->lis), &c->peer)) {
    sl_conn_close(c);
    return -1;
  }
  return conn_begin(c) == 0 ? 1 : -1;
}

/* libev's "be smart about timeouts" (ev.pod): the deadline is
 * timeout_at = activity + timeout, kept in the connection; the timer is
 * only re-armed (a heap operation) when the new deadline is earlier than
 * the armed one. Pushing a deadline later, which every request does
 * several times, costs two stores; a timer that fires early re-arms
 * itself for the remainder. */
void sl_conn_set_timeout(struct sl_conn *c, uint64_t ms) {
  struct ev_loop *loop = c->w->loop;
  if (ms == 0) {
    c->timeout_at = 0;
    ev_timer_stop(loop, &c->timer);
    return;
  }
  ev_tstamp at = ev_now(loop) + (ev_tstamp)ms / 1000.0;
  c->timeout_at = at;
  if (ev_is_active(&c->timer) && c->timer_armed_at <= at) return;
  ev_timer_stop(loop, &c->timer);
  ev_timer_set(&c->timer, at - ev_now(loop), 0.);
  ev_timer_start(loop, &c->timer);
  c->timer_armed_at = at;
}

void sl_conn_set_timeout_by(struct sl_conn *c, uint64_t ms) {
  ev_tstamp at = ev_now(c->w->loop) + (ev_tstamp)ms / 1000.0;
  if (c->timeout_at != 0 && c->timeout_at <= at) return;
  sl_conn_set_timeout(c, ms);
}

/* Lazy pause: the watcher stays armed and is only stopped if the socket
 * becomes readable while paused. An h1 connection pauses after every
 * request and resumes after its response; doing that eagerly cost an
 * epoll_ctl per request. */
void sl_conn_pause_read(struct sl_conn *c) { c->read_paused = true; }

static void conn_process_input(struct sl_conn *c);

void sl_conn_resume_read(struct sl_conn *c) {
  if (!c->read_paused || c->dead) return;
  c->read_paused = false;
  if (!ev_is_active(&c->rio)) ev_io_start(c->w->loop, &c->rio);
  /* Bytes left over from a pause (pipelined requests) are parsed in this
   * loop iteration's flush pass, after the caller's stack unwinds, and
   * before the loop blocks: the socket may never become readable again
   * for them (they are already read). */
  if (!sl_pipe_empty(&c->in) && !c->input_pending) {
    c->input_pending = true;
    c->input_next = c->w->input_list;
    c->w->input_list = c;
  }
}

void sl_conn_schedule_flush(struct sl_conn *c) {
  if (c->flush_pending || c->dead) return;
  c->flush_pending = true;
  c->flush_next = c->w->flush_list;
  c->w->flush_list = c;
}

void sl_conn_close_after_flush(struct sl_conn *c) {
  if (c->lingering) return; /* answered and closing already */
  c->closing = true;
  sl_conn_pause_read(c);
  sl_conn_schedule_flush(c);
}

void sl_worker_flush_all(struct sl_worker *w) {
  /* Parsing input may queue writes and writing may resume input (an h1
   * response done lets the next pipelined request in): alternate until
   * both lists are empty. Input goes first so a connection is never freed
   * while it is still on the input list. */
  for (;;) {
    if (w->input_list) {
      struct sl_conn *c = w->input_list;
      w->input_list = c->input_next;
      c->input_pending = false;
      if (!c->dead && !c->read_paused) conn_process_input(c);
      continue;
    }
    if (w->up_flush_list) {
      sl_upstream_flush_scheduled(w);
      continue;
    }
    if (!w->flush_list) break;
    struct sl_conn *c = w->flush_list;
    w->flush_list = c->flush_next;
    c->flush_pending = false;
    if (c->dead) {
      sl_slab_free(&conn_slab, c);
      continue;
    }
    conn_do_flush(c);
  }
}

/* Transport convention (core/io.h): bytes, SL_IO_AGAIN, SL_IO_EOF or fatal. */
static ssize_t conn_transport_read(struct sl_conn *c, char *buf, size_t len) {
  return c->ssl ? sl_tls_read(c->ssl, buf, len) : sl_io_read(c->fd, buf, len);
}

/* Hands |c| to |fe|; returns -1 if it could not start. */
static int conn_start(struct sl_conn *c, const struct sl_proto_ops *fe) {
  c->detecting = false;
  if (fe->start(c) != 0) return -1;
  c->ops = fe;
  return 0;
}

static int conn_tls_handshake(struct sl_conn *c) {
  ERR_clear_error();
  int rv = SSL_do_handshake(c->ssl);
  if (rv == 1) {
    c->handshaking = false;
    const unsigned char *alpn = NULL;
    unsigned alpn_len = 0;
    SSL_get0_alpn_selected(c->ssl, &alpn, &alpn_len);
    return conn_start(c, sl_frontend_for_alpn(alpn, alpn_len));
  }
  int e = SSL_get_error(c->ssl, rv);
  if (e == SSL_ERROR_WANT_READ) return 0;
  if (e == SSL_ERROR_WANT_WRITE) {
    ev_io_start(c->w->loop, &c->wio);
    return 0;
  }
  if (SL_LOG_ENABLED(SL_LOG_DEBUG)) {
    char msg[256];
    ERR_error_string_n(ERR_peek_last_error(), msg, sizeof(msg));
    sl_log(SL_LOG_DEBUG, "tls handshake failed", "peer", c->peer_ip, "error", msg, NULL);
  }
  return -1;
}

/* Hands buffered input to the protocol; returns -1 if the connection must
 * close now. */
static int conn_feed(struct sl_conn *c) {
  while (!sl_pipe_empty(&c->in) && !c->read_paused && !c->dead) {
    struct sl_chunk *ch = c->in.head;
    size_t avail = ch->end - ch->start;
    const char *data = ch->data + ch->start;
    if (c->detecting) {
      const struct sl_proto_ops *fe = sl_frontend_for_preface(data, avail);
      if (!fe) return 0; /* need more bytes to decide */
      if (conn_start(c, fe) != 0) return -1;
    }
    ssize_t used = c->ops->on_read(c, data, avail);
    if (used < 0) return -1;
    sl_pipe_consume(&c->in, (size_t)used);
    if ((size_t)used < avail) break; /* protocol paused */
  }
  return 0;
}

static void conn_process_input(struct sl_conn *c) {
  if (conn_feed(c) != 0) {
    sl_conn_close(c);
    return;
  }
  sl_conn_schedule_flush(c);
}

static void conn_read_cb(struct ev_loop *loop, ev_io *w, int revents) {
  struct sl_conn *c = SL_CONTAINER_OF(w, struct sl_conn, rio);
  (void)loop;
  if (c->read_paused) {
    ev_io_stop(loop, &c->rio); /* see sl_conn_pause_read */
    return;
  }
  if (c->proxy_hdr && conn_proxy_header(c) <= 0) return;
  if (c->handshaking) {
    int rv = conn_tls_handshake(c);
    if (rv < 0) {
      sl_conn_close(c);
      return;
    }
    if (c->handshaking) return;
  }
  /* Read at most a few chunks per event so one busy client cannot starve
   * the others on this worker. */
  for (int i = 0; i < 4 && !c->read_paused && !c->dead; i++) {
    size_t avail;
    char *dst = sl_pipe_reserve(&c->in, 4096, &avail);
    if (!dst) {
      sl_conn_close(c);
      return;
    }
    ssize_t n = conn_transport_read(c, dst, avail);
    if (n == SL_IO_AGAIN) break;
    if (sl_io_is_fatal(n) || (n == SL_IO_EOF && (!c->ops || !c->ops->on_eof))) {
      sl_conn_close(c); /* error, or EOF before a protocol was chosen */
      return;
    }
    if (n == SL_IO_EOF) {
      /* The protocol decides: an idle h1 connection closes, one with a
       * response in flight finishes writing it first. */
      c->peer_eof = true;
      sl_conn_pause_read(c);
      c->ops->on_eof(c);
      if (!c->dead) sl_conn_schedule_flush(c);
      return;
    }
    sl_pipe_commit(&c->in, (size_t)n);
    if (conn_feed(c) != 0) {
      sl_conn_close(c);
      return;
    }
    if ((size_t)n < avail) break; /* socket drained */
  }
  /* Drop an empty read chunk now: idle connections hold no buffer. */
  if (sl_pipe_empty(&c->in)) sl_pipe_clear(&c->in);
  if (!c->dead) sl_conn_schedule_flush(c);
}

/* Writes as much of c->out as the socket takes (one writev of up to 16
 * spans, or one TLS record's worth of the head chunk, per call). Returns
 * 0 when all was written, else SL_IO_AGAIN or a fatal code (core/io.h). */
static ssize_t conn_transport_write(struct sl_conn *c) {
  while (!sl_pipe_empty(&c->out)) {
    ssize_t w;
    if (!c->ssl) {
      struct iovec iov[16];
      int n = sl_pipe_iov(&c->out, iov, 16);
      w = sl_io_writev(c->fd, iov, n);
    } else {
      struct sl_chunk *ch = c->out.head;
      w = sl_tls_write(c->ssl, ch->data + ch->start, ch->end - ch->start);
    }
    if (w < 0) return w == SL_IO_AGAIN ? SL_IO_AGAIN : SL_IO_ERROR;
    sl_pipe_consume(&c->out, (size_t)w);
  }
  return 0;
}

static void conn_do_flush(struct sl_conn *c) {
  if (c->lingering) return; /* nothing more to write */
  for (;;) {
    if (c->ops && c->ops->produce) c->ops->produce(c);
    if (c->dead) return;
    if (sl_pipe_empty(&c->out)) break;
    ssize_t rv = conn_transport_write(c);
    if (rv == SL_IO_AGAIN) {
      ev_io_start(c->w->loop, &c->wio);
      return;
    }
    if (rv < 0) {
      sl_conn_close(c);
      return;
    }
  }
  ev_io_stop(c->w->loop, &c->wio);
  if (c->closing) conn_linger(c);
}

static void conn_write_cb(struct ev_loop *loop, ev_io *w, int revents) {
  struct sl_conn *c = SL_CONTAINER_OF(w, struct sl_conn, wio);
  (void)loop;
  (void)revents;
  if (c->lingering) {
    ev_io_stop(c->w->loop, &c->wio);
    conn_linger_tls(c);
    return;
  }
  if (c->handshaking) {
    ev_io_stop(c->w->loop, &c->wio);
    if (conn_tls_handshake(c) < 0) sl_conn_close(c);
    return;
  }
  conn_do_flush(c);
}

static void conn_timer_cb(struct ev_loop *loop, ev_timer *w, int revents) {
  struct sl_conn *c = SL_CONTAINER_OF(w, struct sl_conn, timer);
  (void)revents;
  if (c->timeout_at == 0) return;
  ev_tstamp now = ev_now(loop);
  if (c->timeout_at > now) {
    /* Activity moved the deadline since the timer was armed. */
    ev_timer_set(&c->timer, c->timeout_at - now, 0.);
    ev_timer_start(loop, &c->timer);
    c->timer_armed_at = c->timeout_at;
    return;
  }
  c->timeout_at = 0;
  if (c->proxy_hdr)
    conn_proxy_error(c, "timeout", "no complete PROXY header within proxy_protocol.timeout");
  else if (!c->ops)
    sl_conn_close(c); /* handshake or preface never completed, or linger over */
  else
    c->ops->on_timeout(c);
  if (!c->dead) sl_conn_schedule_flush(c);
}

/* ---- lingering close ------------------------------------------------ */

/* Discards what the client still sends until it closes, the byte bound is
 * reached, or the linger timer (conn_timer_cb: no ops, so it closes) fires.
 * Reads raw bytes even on TLS: after close_notify nothing the client sends
 * is of interest, so nothing is decrypted. */
static void conn_linger_read_cb(struct ev_loop *loop, ev_io *w, int revents) {
  static __thread char sink[16384];
  struct sl_conn *c = SL_CONTAINER_OF(w, struct sl_conn, rio);
  (void)loop;
  (void)revents;
  /* A few reads per event, like conn_read_cb, so a fast sender cannot
   * starve the worker's other connections. */
  for (int i = 0; i < 4; i++) {
    ssize_t n = sl_io_read(c->fd, sink, sizeof(sink));
    if (n == SL_IO_AGAIN) return;
    if (n < 0) break; /* EOF (the clean end) or error */
    c->linger_bytes += (uint32_t)n;
    if (c->linger_bytes >= SL_LINGER_MAX_BYTES) break; /* enough: cut it */
    if ((size_t)n < sizeof(sink)) return;
    if (i == 3) return; /* more next time */
  }
  sl_conn_close(c);
}

/* The write side is done (close_notify sent on TLS): shut it, so the
 * client reads EOF after the answer, and drain its input. A client that
 * already closed its side sends nothing more: close at once. */
static void conn_linger_drain(struct sl_conn *c) {
  struct ev_loop *loop = c->w->loop;
  if (c->ssl) {
    SSL_free(c->ssl);
    c->ssl = NULL;
  }
  if (c->peer_eof || shutdown(c->fd, SHUT_WR) != 0) {
    sl_conn_close(c);
    return;
  }
  ev_io_stop(loop, &c->rio);
  ev_set_cb(&c->rio, conn_linger_read_cb);
  ev_io_start(loop, &c->rio);
}

/* Sends TLS close_notify (RFC 8446 §6.1) without waiting for the
 * client's; retried from the write watcher if the socket is full. */
static void conn_linger_tls(struct sl_conn *c) {
  if (c->ssl) {
    ERR_clear_error();
    int rv = SSL_shutdown(c->ssl);
    if (rv < 0 && SSL_get_error(c->ssl, rv) == SSL_ERROR_WANT_WRITE) {
      ev_io_start(c->w->loop, &c->wio);
      return;
    }
    /* 0: sent; 1: the client's came first; other errors: nothing to
     * save, drain all the same. */
  }
  conn_linger_drain(c);
}

/* No lingering needed: the protocol read its last request to the end
 * (c->input_done), nothing of it is left unparsed, and the socket holds no
 * further byte (a peek; 0 is the client's FIN). Then close() sends a FIN,
 * not an RST, and the answer cannot be lost: nginx closes at once in the
 * same case. This saves the shutdown, a loop turn, a watcher change and
 * the EOF read of a lingering close: 3 of the 11 system calls of a
 * Connection: close exchange. A byte that arrives between the peek and
 * the close is one the client sent after asking to close. */
static bool conn_input_quiet(struct sl_conn *c) {
  if (!c->input_done || !sl_pipe_empty(&c->in) || (c->ssl && SSL_pending(c->ssl) > 0))
    return false;
  char b;
  ssize_t n = recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
  return n == 0 || (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
}

/* TLS: close_notify written in full (RFC 8446 §6.1), so that the client
 * sees a clean end; false if the socket took none of it (linger then
 * retries it from the write watcher). Cleartext: nothing to send. */
static bool conn_close_notify_sent(struct sl_conn *c) {
  if (!c->ssl) return true;
  ERR_clear_error();
  int rv = SSL_shutdown(c->ssl);
  return rv >= 0 || SSL_get_error(c->ssl, rv) != SSL_ERROR_WANT_WRITE;
}

/* Answer, then close gently (nginx ngx_http_set_lingering_close): called
 * once the last byte of the answer is written. Closing a socket with
 * unread input makes the kernel send an RST, and the client's kernel may
 * drop the answer it has not read yet (a 431 or a 429 with Retry-After
 * sent while the client is still uploading). So: free the protocol state
 * now (a lingering connection keeps only its fd, its timer and this
 * struct; it still counts against the listener's max_connections, since
 * it holds a socket, but gives its place to a new connection at the cap:
 * sl_conn_reclaim_lingering), send close_notify on TLS, shut the write side and
 * discard input until EOF, SL_LINGER_MAX_BYTES, or SL_LINGER_MS (never
 * longer than the idle timeout), whichever comes first. */
static void conn_linger(struct sl_conn *c) {
  struct ev_loop *loop = c->w->loop;
  if (conn_input_quiet(c) && conn_close_notify_sent(c)) {
    sl_conn_close(c);
    return;
  }
  sl_conn_idle_leave(c);
  c->lingering = true;
  c->closing = false;
  struct sl_worker *w = c->w;
  SL_DLIST_APPEND(c, w->linger_head, w->linger_tail, linger_prev, linger_next);
  c->read_paused = true; /* never parsed again (the input list skips it) */
  if (c->ops && c->ops->destroy) c->ops->destroy(c);
  c->ops = NULL;
  sl_pipe_clear(&c->in);
  sl_pipe_clear(&c->out);
  ev_io_stop(loop, &c->wio);
  uint64_t ms = SL_LINGER_MS;
  uint64_t idle = c->lis->idle_timeout_ms;
  if (idle && idle < ms) ms = idle;
  sl_conn_set_timeout(c, ms);
  conn_linger_tls(c);
}

bool sl_conn_reclaim_lingering(struct sl_worker *w, const struct sl_listener *lis) {
  for (struct sl_conn *c = w->linger_head; c; c = c->linger_next) {
    if (c->lis != lis) continue;
    sl_conn_close(c);
    return true;
  }
  return false;
}

/* ---- the drain spread queue (worker.c) ----------------------------- */

void sl_conn_spread_push(struct sl_conn *c) {
  if (c->spread_queued) return;
  c->spread_queued = true;
  SL_DLIST_APPEND(c, c->w->spread_head, c->w->spread_tail, spread_prev, spread_next);
}

static void conn_spread_unlink(struct sl_conn *c) {
  SL_DLIST_UNLINK(c, c->w->spread_head, c->w->spread_tail, spread_prev, spread_next);
  c->spread_queued = false;
  c->w->spread_spent++; /* its turn is used, whether taken or given up */
}

struct sl_conn *sl_conn_spread_pop(struct sl_worker *w) {
  struct sl_conn *c = w->spread_head;
  if (c) conn_spread_unlink(c);
  return c;
}

/* Releases |c|'s socket and protocol state at once and marks it dead. The
 * struct itself is freed by the worker's flush pass at the end of this
 * loop iteration, so callers up the stack may still look at c->dead. */
void sl_conn_close(struct sl_conn *c) {
  if (c->dead) return;
  c->dead = true;
  if (c->lingering)
    SL_DLIST_UNLINK(c, c->w->linger_head, c->w->linger_tail, linger_prev, linger_next);
  if (c->spread_queued) conn_spread_unlink(c);
  sl_conn_idle_leave(c);
  struct ev_loop *loop = c->w->loop;
  ev_io_stop(loop, &c->rio);
  ev_io_stop(loop, &c->wio);
  ev_timer_stop(loop, &c->timer);
  if (c->ops && c->ops->destroy) c->ops->destroy(c);
  c->ops = NULL;
  if (c->ssl) {
    SSL_set_quiet_shutdown(c->ssl, 1);
    SSL_free(c->ssl);
    c->ssl = NULL;
  }
  if (c->fd >= 0) {
    close(c->fd);
    c->fd = -1;
  }
  sl_pipe_clear(&c->in);
  sl_pipe_clear(&c->out);
  struct sl_worker *w = c->w;
  if (c->prev)
    c->prev->next = c->next;
  else
    w->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  c->next = c->prev = NULL;
  w->n_conns--;
  atomic_fetch_sub_explicit(&c->lis->n_connections, 1, memory_order_relaxed);
  if (!c->flush_pending) {
    c->flush_pending = true;
    c->flush_next = w->flush_list;
    w->flush_list = c;
  }
}
