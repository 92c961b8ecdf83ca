/*
 * sluice — upstream types: the per-worker pool, the connection every
 * backend shares, and the backend ops table.
 *
 * Layers (after HAProxy's connection / mux split and nghttpx's
 * DownstreamConnection interface):
 *
 *   pool.c  one pool per worker and upstream: its share of the limits,
 *           the queue of streams waiting for a connection, the idle list,
 *           and the life of a connection whatever protocol it speaks
 *           (connect, watchers, lazy timer, scheduled flush, close, the
 *           replay rules of RFC 9110 §9.2.2);
 *   h1.c    the HTTP/1.1 backend: request rendering, body pumping,
 *           llhttp response parsing, pipelining, WebSocket tunnels.
 *
 * The pool calls a backend only through `struct sl_upstream_ops`, and a
 * backend calls the pool only through upstream/backend.h. A backend's
 * connection is one allocation of `conn_size` bytes that starts with a
 * `struct sl_upconn` (the backend's own state follows it), so a new
 * connection costs one calloc whatever the backend, as before the split.
 *
 * How an HTTP/2 backend (h2.c, nghttp2 client session) would plug in, and
 * what differs from HTTP/1.1:
 *
 *   - Streams per connection. h1 serves one exchange at a time (plus, with
 *     `pipeline`, bodyless GET/HEAD requests queued behind it, answered in
 *     order); h2 serves up to the peer's SETTINGS_MAX_CONCURRENT_STREAMS,
 *     any method, answered in any order. Both say so through can_share():
 *     the pool offers each new stream to `pool->shared` first (the one busy
 *     connection that takes more, which the backend names), then an idle
 *     connection, then a new one, then the queue. h2 would keep
 *     `pool->shared` set while it has stream credit, and u->s unused (its
 *     streams live in its own id map, the way h2o's http2client keeps a
 *     khash of streams).
 *   - Connection set-up. attach() is called as soon as TCP connects; h2
 *     would send its preface and SETTINGS there and hold the stream until
 *     the server's SETTINGS arrive (h1 writes the request head at once).
 *   - Back-pressure. h1 stops reading the socket while a response pipe is
 *     full and resume() starts it again; h2 must never stop reading (other
 *     streams share the socket) and would instead withhold WINDOW_UPDATE
 *     (nghttp2_session_consume) until resume().
 *   - Ending one exchange early. detach() on h1 mid-exchange closes the
 *     connection (its framing is lost); on h2 it sends RST_STREAM(CANCEL)
 *     and the connection stays. tunnel_end() likewise: close vs RST.
 *   - Idle connections. An idle h1 connection has nothing to say, so any
 *     readable event closes it; an idle h2 connection gets PING, SETTINGS
 *     and GOAWAY frames: on_readable() runs in every state, the backend
 *     decides. (The idle timeout closes either: the pool's.)
 *   - Replay. close() hands back the streams that may be sent again: h1's
 *     pipelined requests nobody answered; h2's streams above a GOAWAY's
 *     last-stream-id or refused with REFUSED_STREAM (RFC 9113 §8.7: never
 *     processed, so even a POST may go again). The pool replays them with
 *     the idempotency rule (sl_upstream_may_replay) once each.
 *   - Timeouts. h1 arms the connection's one timer for the exchange it is
 *     reading; h2 would keep a deadline per stream and arm the same timer
 *     for the earliest (as the h2 frontend does for its stalled streams),
 *     on_timeout() failing only the streams that are late.
 *   - Output. Each backend owns its byte queue and write loop (h1: rendered
 *     heads and framed body; h2: nghttp2_session_mem_send output) and reads
 *     and writes through proxy/core/io.h (bytes / SL_IO_AGAIN / SL_IO_EOF /
 *     fatal), so TLS towards the origin (h2 negotiated by ALPN) would be a
 *     transport under the same convention, not a third backend.
 *
 * What stays the pool's for every backend: the socket and its watchers,
 * the busy/dead guard around callbacks, connect and its timeout, the idle
 * list and idle timeout, the queue and limits, the scheduled flush, and
 * the replay rule.
 */
#ifndef SLUICE_UPSTREAM_T_H
#define SLUICE_UPSTREAM_T_H

#include <ev.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct sl_worker;
struct sl_stream;
struct sl_upconn;

/* ---- the backend ops table ---------------------------------------- */

/* Implemented by each upstream protocol. Every callback runs on the
 * pool's worker thread; |u| is a connection of this backend (the
 * allocation of conn_size bytes the pool made) and is never freed while a
 * callback of its own is on the stack (see sl_upconn_close). */
struct sl_upstream_ops {
  const char *name; /* for logs: "http/1.1" */
  size_t conn_size; /* sizeof the backend's connection, sl_upconn first */

  /* |u| was just allocated, zeroed, its socket connecting: set up the
   * backend's state. Returns 0, or -1 on OOM (the pool gives up on it). */
  int (*init)(struct sl_upconn *u);

  /* Starts the exchange of |s| on |u|, a connection that serves nothing
   * (just connected, or taken from the idle list; u->reused says which).
   * s->up and u->s are set. On failure the backend answers |s| itself. */
  void (*attach)(struct sl_upconn *u, struct sl_stream *s);
  /* Whether busy |u| (pool->shared) can take |s| besides what it serves
   * (h1: pipelining; h2: a free stream slot). */
  bool (*can_share)(struct sl_upconn *u, const struct sl_stream *s);
  /* Adds |s| to busy |u| after can_share() said yes. */
  void (*share)(struct sl_upconn *u, struct sl_stream *s);
  /* More request body is in s->req_body (or s->req_done became true). */
  void (*request_body)(struct sl_upconn *u, struct sl_stream *s);
  /* The frontend drained s->resp_body: the origin may send more. */
  void (*resume)(struct sl_upconn *u, struct sl_stream *s);
  /* |s| goes away (s->up already cleared): forget it, and release or
   * close |u| as the protocol requires. */
  void (*detach)(struct sl_upconn *u, struct sl_stream *s);
  /* Ends the upstream half of tunnel |s| now. */
  void (*tunnel_end)(struct sl_upconn *u, struct sl_stream *s);
  /* Socket events of a connected |u|, in any state but connecting
   * (idle included), and the timer of a busy one whose deadline passed.
   * on_writable is also what the pool's scheduled flush calls. */
  void (*on_readable)(struct sl_upconn *u);
  void (*on_writable)(struct sl_upconn *u);
  void (*on_timeout)(struct sl_upconn *u, ev_tstamp now);
  /* |u| is closing: free the backend's state and return the streams
   * written on it that got no answer and may be replayed, oldest first,
   * linked by queue_next with s->up cleared (NULL: none). u->s is the
   * pool's to clear. Must not call back into the pool. */
  struct sl_stream *(*close)(struct sl_upconn *u);
};

/* ---- the connection every backend shares -------------------------- */

enum sl_upconn_state { SL_UPCONN_CONNECTING = 0, SL_UPCONN_IDLE, SL_UPCONN_ACTIVE };

struct sl_upconn {
  struct sl_pool *pool;
  int fd;
  ev_io rio, wio;
  ev_timer timer;
  enum sl_upconn_state state;
  /* Connecting: the stream it was opened for (NULL if that stream left).
   * Then the backend's: h1's exchange whose response is being read. */
  struct sl_stream *s;
  struct sl_upconn *next;  /* idle list */
  bool reused;             /* taken from the idle list for this exchange */
  bool dead;               /* closed; freed once no callback of its own runs */
  bool flush_pending;      /* on the worker's up_flush_list */
  unsigned busy;           /* callbacks of this connection on the stack */
  ev_tstamp timeout;       /* current timeout length, seconds */
  ev_tstamp timeout_at;    /* deadline (see sl_upconn_set_timeout) */
  ev_tstamp armed_at;      /* deadline the libev timer is armed for */
  struct sl_upconn *flush_next;
};

/* ---- pools --------------------------------------------------------- */

/* One per worker and upstream (address), holding the worker's share of
 * the upstream's max_connections and max_pending, so the totals hold
 * across workers with no lock. */
struct sl_pool {
  struct sl_worker *w;
  const struct sl_upstream_ops *ops;
  char *name;
  struct sl_sockaddr_storage_copy {
    struct sockaddr_storage ss;
    socklen_t len;
  } addr;
  char *address_text;
  uint32_t max_conns;   /* this worker's share */
  uint32_t max_pending; /* this worker's share */
  uint64_t connect_timeout_ms, response_timeout_ms, idle_timeout_ms;
  /* Counts: written only by the pool's worker, with relaxed loads and
   * stores (plain moves, no lock prefix; pool.c pool_count_add), and read
   * by the metrics collector on the scraping thread (sl_pool_collect). */
  _Atomic uint32_t n_conns;   /* open: connecting, idle or busy */
  _Atomic uint32_t n_idle;    /* on the idle list */
  _Atomic uint32_t n_pending; /* in the queue */
  struct sl_upconn *idle; /* idle keep-alive connections, LIFO */
  /* Streams waiting for a connection, one FIFO per priority (index
   * pool_rank(): low, normal, high), served high first; a full queue
   * gives a high request the place of the newest lower waiter. */
  struct sl_pool_queue {
    struct sl_stream *head, *tail;
  } queue[3];
  struct sl_pool *next;
  bool retired;         /* replaced by a reload: close when empty */
  uint32_t pipeline;    /* pipelining depth (1: off) */
  /* The busy connection new streams are offered to first (h1: the one
   * taking pipelined requests); set by the backend, cleared by the pool
   * when that connection closes or goes idle. */
  struct sl_upconn *shared;
  /* How fast the queue drains while backlogged (the pool's worker only):
   * a moving average of the time between two waiters handed a connection
   * with more still waiting (0: not seen yet); and the reservation
   * horizon of the crowd a full queue sheds (sluice/horizon.h), spread at
   * that rate. */
  uint64_t drain_period_ns, last_drain_ns;
  bool backlogged;
  _Atomic uint64_t shed_horizon;
  /* Every live pool of every worker, for the gauges (pool.c's registry,
   * under its mutex): linked by sl_pool_for, unlinked by sl_pool_del. */
  struct sl_pool *reg_next, *reg_prev;
};

#endif
