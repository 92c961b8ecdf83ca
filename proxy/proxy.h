/*
 * sluice — data plane types shared by the modules of proxy/.
 *
 * Threads. One main thread (signals, admin listener, reloads) and N worker
 * threads, each with its own libev loop and its own SO_REUSEPORT socket per
 * listener. A connection, its streams and the upstream connections serving
 * them belong to one worker for their whole life: nothing here is locked.
 *
 * The exchange seam. A `struct sl_stream` is one request/response exchange,
 * whichever protocol it came in on. A frontend (h1.c, h2.c) parses client
 * bytes into a stream's request head and request-body pipe, and renders
 * the stream's response head and response-body pipe back into client
 * bytes. The upstream side (upstream.c) does the reverse towards the
 * origin. Neither side knows the other's protocol: they meet in stream.c,
 * and talk only through the two pipes and the callbacks below.
 *
 *   client --h1/h2--> [frontend] --req_body--> [upstream conn] --> origin
 *   client <--h1/h2-- [frontend] <--resp_body- [upstream conn] <-- origin
 *
 * Back-pressure: a producer stops reading its socket while the pipe it
 * fills is full (sl_pipe_full) and is resumed by the consumer's "drained"
 * callback. For h2 request bodies the flow-control window plays that role
 * (nghttp2_session_consume is called only once bytes went upstream).
 *
 * Tunnels (WebSocket) reuse the same two pipes after the upstream's 101:
 * the stream simply never ends its bodies until one side closes.
 */
#ifndef SLUICE_PROXY_H
#define SLUICE_PROXY_H

#include <ev.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "sluice/admission.h"
#include "sluice/arena.h"
#include "sluice/identify-t.h"
#include "sluice/config-t.h"
#include "sluice/metrics.h"
#include "http.h"
#include "pipe.h"
#include "ws.h"

#define SL_CONTAINER_OF(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/* Per-exchange buffer bound: request and response body pipes each hold at
 * most this much (plus one read) before the producer is paused. */
#define SL_BODY_PIPE_CAP (64 * 1024)
/* A client's outgoing byte queue (framed responses). */
#define SL_OUT_PIPE_CAP (64 * 1024)

struct sl_worker;
struct sl_conn;
struct sl_stream;
struct sl_upconn;
struct sl_pool;

/* ---- configuration generations ------------------------------------ */

/* A published configuration and what the data plane derives from it. A
 * stream holds a reference for its whole life, so in-flight requests
 * finish on the configuration they started with. */
struct sl_gen {
  struct sl_config *cfg;
  struct sl_policy_set *policies; /* the state of cfg's policies (sl_policy_set_new) */
  struct sl_blocklist *blocklist; /* compiled from cfg->blocklist */
  /* The listeners workers accept on while this generation is current
   * (the array is the generation's; the listeners are the main
   * thread's). A worker reads it only when it picks the generation up:
   * a listener a later generation retires is freed once every worker
   * has acknowledged that later generation (sl_worker.acked_generation)
   * and its last connection has closed. */
  struct sl_listener **listeners;
  int n_listeners;
  atomic_long refs;
  struct sl_gen *retired_next; /* main thread's free list (see sl_gen_unref) */
};

struct sl_gen *sl_gen_ref(struct sl_gen *g);
void sl_gen_unref(struct sl_gen *g);
/* The current generation (main thread publishes, workers pick it up). */
struct sl_gen *sl_gen_current_ref(void);

/* ---- listeners ---------------------------------------------------- */

/* A bound listener: one socket per worker (SO_REUSEPORT). Created and
 * owned by the main thread; workers only watch their own fd.
 *
 * A reload keeps a listener whose name, address and TLS mode are
 * unchanged: its limits are stored again (atomics, so workers read them
 * without a lock; a connection meets new values at its next request or
 * timer) and a changed certificate swaps `ssl_ctx` (the old context is
 * freed once every worker has acknowledged the reload; an SSL made from
 * it holds its own reference). Any other change makes a new listener: on
 * a new address it is bound, on the address of a listener it replaces
 * (renamed, TLS switched on or off) it takes over that listener's
 * sockets, so no connection waiting in the backlog is lost. */
struct sl_listener {
  char *name;
  char *address;
  bool tls;
  _Atomic(SSL_CTX *) ssl_ctx; /* NULL for cleartext */
  int *fds;         /* [n_workers]; -1 once closed or handed over */
  int n_fds;
  /* Limits from the listener configuration, stored at bind time and at
   * each reload. */
  _Atomic uint32_t max_connections;
  _Atomic uint64_t request_header_timeout_ms, idle_timeout_ms;
  _Atomic uint32_t header_bytes, headers, h2_streams;
  atomic_uint n_connections; /* across workers */
  struct sl_metric_series *m_conn_h1, *m_conn_h2;
  /* Main thread only: what `ssl_ctx` was built from, so a reload rebuilds
   * it only when the paths or the files (inode, size, mtime) changed. */
  char *tls_certificate, *tls_private_key;
  uint64_t tls_files_fp;
};

/* ---- header slices ------------------------------------------------ */

struct sl_header {
  const char *name;  /* lowercase, NUL-terminated, in the stream arena */
  const char *value; /* NUL-terminated, in the stream arena */
  uint32_t name_len, value_len;
};

/* A request head as the upstream needs it, protocol-neutral. */
struct sl_request {
  const char *method;
  const char *path;      /* request-target (origin-form) */
  const char *authority; /* Host / :authority, NULL when absent */
  const char *scheme;    /* "http" or "https" */
  const char *protocol;  /* h2 :protocol (extended CONNECT), else NULL */
  struct sl_header *headers;
  uint32_t n_headers, cap_headers;
  int64_t content_length; /* -1: none / unknown */
  bool has_body;          /* a body follows the head */
  bool expect_continue;
  bool upgrade_websocket;
  bool is_head;
};

struct sl_response {
  int status;
  struct sl_header *headers;
  uint32_t n_headers, cap_headers;
  int64_t content_length; /* -1: unknown (chunked/close-delimited) */
  bool no_body;           /* HEAD, 1xx, 204, 304 */
};

/* ---- the exchange ------------------------------------------------- */

enum sl_proto { SL_PROTO_H1 = 0, SL_PROTO_H2 = 1 };

/* Implemented by each frontend; called by the upstream side via stream.c. */
struct sl_frontend_ops {
  /* The response head is in s->resp; render it. */
  void (*response_head)(struct sl_stream *s);
  /* More bytes are in s->resp_body, or s->resp_done became true. */
  void (*response_body)(struct sl_stream *s);
  /* |n| request-body bytes were taken from s->req_body; resume reading. */
  void (*request_body_drained)(struct sl_stream *s, size_t n);
  /* The exchange failed after the response head went out: abort it
   * (h2: RST_STREAM; h1: close the connection). */
  void (*abort)(struct sl_stream *s);
};

struct sl_stream {
  struct sl_conn *conn;
  const struct sl_frontend_ops *fe;
  void *fe_data;      /* h2: the sl_h2 session */
  int32_t h2_id;      /* h2 stream id, 0 for h1 */
  enum sl_proto proto;

  struct sl_arena arena; /* request and response heads */
  struct sl_request req;
  struct sl_response resp;

  struct sl_gen *gen;
  const struct sl_route_cfg *route;
  struct sl_pool *pool;
  struct sl_upconn *up;
  struct sl_stream *queue_next; /* waiting for an upstream connection */

  struct sl_pipe req_body, resp_body;
  /* A local answer's body (sluice's own JSON/text), in the arena: small,
   * and it must not cost a 16 KiB pipe chunk per refusal when hundreds of
   * streams are refused at once. Frontends send it before resp_body. */
  const char *local_body;
  size_t local_body_len;
  bool req_done;       /* the whole request body is in req_body */
  bool resp_head_done; /* s->resp is complete */
  bool resp_done;      /* the whole response body is in resp_body */
  bool resp_head_sent; /* frontend wrote the head (no local error page now) */
  bool local_response; /* answered by sluice itself, not the upstream */
  bool queued;
  bool upstream_retried;
  bool admitted;       /* adm holds resources until sl_admission_finish */
  bool xff_trusted;    /* the client address came from a trusted proxy */
  char client_ip[46];  /* as identified (XFF from trusted proxies) */

  struct sl_admission adm;
  ev_timer delay_timer; /* shaping delay before going upstream */

  /* WebSocket. After the upstream's 101 the stream is a tunnel: both
   * pipes carry raw bytes until one side closes. */
  bool tunnel;
  bool ws_h2;             /* RFC 8441 extended CONNECT: sluice made the key */
  bool ws_close_pending;  /* inject a close frame at the next boundary */
  uint16_t ws_close_code;
  const char *ws_close_reason;
  char ws_key[25];        /* Sec-WebSocket-Key sent upstream (ws_h2) */
  struct sl_ws_tracker ws_down; /* frame boundaries, upstream -> client */
  char dev_class[32], dev_firmware[32]; /* for emergency blocks of tunnels */
  ev_tstamp tunnel_started;
  uint64_t tunnel_bytes_up, tunnel_bytes_down;
  struct sl_metric_series *m_tunnels;
  struct sl_stream *tunnel_next, *tunnel_prev; /* worker's open tunnels */
  /* An extra header on a local answer (426's Sec-WebSocket-Version). */
  const char *err_header_name, *err_header_value;

  ev_tstamp started;
  ev_tstamp upstream_started;
};

/* stream.c */
struct sl_stream *sl_stream_new(struct sl_conn *c, const struct sl_frontend_ops *fe,
                                enum sl_proto proto);
void sl_stream_del(struct sl_stream *s);
/* Frees the calling thread's recycled streams (worker exit). */
void sl_stream_cache_drain(void);
/* Appends a request header (copied into the stream arena; |name| is
 * lowercased). Returns 0, or -1 on OOM. */
int sl_stream_add_header(struct sl_stream *s, const char *name, size_t nlen,
                         const char *value, size_t vlen);
int sl_response_add_header(struct sl_stream *s, const char *name, size_t nlen,
                           const char *value, size_t vlen);
const struct sl_header *sl_request_header(const struct sl_request *r, const char *name);
/* The request head is complete: route it, apply admission, start the
 * upstream exchange or answer locally. */
void sl_stream_dispatch(struct sl_stream *s);
/* The frontend appended request-body bytes to s->req_body (or set
 * s->req_done). */
void sl_stream_request_body(struct sl_stream *s);
/* The frontend consumed response-body bytes: the upstream may read on. */
void sl_stream_response_drained(struct sl_stream *s);
/* Answers |status| with sluice's JSON error body; |error| and |policy|
 * name the cause. Only valid while !s->resp_head_sent. */
void sl_stream_respond_error(struct sl_stream *s, int status, const char *error,
                             const char *policy, uint32_t retry_after);
/* Called by the upstream side: the exchange failed. Answers 502/504 if the
 * head has not gone out, else aborts. */
void sl_stream_upstream_failed(struct sl_stream *s, int status, const char *error);
/* The upstream answered 101 to a WebSocket request: the stream becomes a
 * tunnel (counted, listed on the worker for emergency closes). */
void sl_stream_tunnel_open(struct sl_stream *s);
/* Ends a tunnel with a WebSocket close frame (|code|, |reason|) sent to
 * the client at the next frame boundary of the upstream-to-client stream,
 * then closes both sides. */
void sl_stream_tunnel_close(struct sl_stream *s, uint16_t code, const char *reason);
/* Upstream side: tunnel bytes from the origin are in s->resp_body. */
void sl_stream_tunnel_down(struct sl_stream *s, const char *data, size_t n);
/* Called by the upstream side when the exchange's outcome is known
 * (response head, or failure): feeds the circuit breaker. */
void sl_stream_outcome(struct sl_stream *s, bool failure);
/* Called by the frontend once the response is fully written (or the
 * stream is torn down): reports the outcome to metrics. */
void sl_stream_finish_metrics(struct sl_stream *s);


/* ---- client connections ------------------------------------------- */

struct sl_proto_ops {
  /* Consume |len| bytes read from the client. Returns the bytes consumed
   * (the rest stays in the read buffer, e.g. after a pause), or -1 to
   * close the connection now. */
  ssize_t (*on_read)(struct sl_conn *c, const char *data, size_t len);
  /* Fill c->out (up to its cap) before a write. May be NULL. */
  void (*produce)(struct sl_conn *c);
  /* The peer closed its write side. */
  void (*on_eof)(struct sl_conn *c);
  /* Tear down protocol state (the connection is closing). */
  void (*destroy)(struct sl_conn *c);
  /* Graceful shutdown: stop taking new requests (h2 GOAWAY; h1 close
   * after the current response). */
  void (*drain)(struct sl_conn *c);
  /* True when no request is in progress (idle keep-alive). */
  bool (*idle)(struct sl_conn *c);
};

struct sl_conn {
  struct sl_worker *w;
  /* Device facts of the last request on this connection, so an emergency
   * blocklist reload can close the keep-alive connections of a newly
   * blocked firmware (SPEC section 4). */
  char last_class[32];
  char last_firmware[32];
  struct sl_listener *lis;
  int fd;
  ev_io rio, wio;
  ev_timer timer;
  SSL *ssl;
  bool handshaking;
  bool detecting;     /* cleartext: h1 or h2c preface not decided yet */
  bool closing;       /* close once `out` is flushed */
  bool lingering;     /* answered and half-closed: draining input (conn_linger) */
  bool peer_eof;      /* the client closed its write side */
  bool read_paused;   /* protocol asked to stop reading */
  bool flush_pending; /* queued on the worker's flush list */
  bool dead;
  enum sl_proto proto;
  const struct sl_proto_ops *ops;
  void *proto_data;

  struct sl_pipe in;  /* bytes read but not consumed yet (rare) */
  struct sl_pipe out; /* bytes to write to the client */

  char peer_ip[46];
  struct sockaddr_storage peer;
  struct sl_conn *next, *prev;     /* worker's connection list */
  struct sl_conn *flush_next;
  struct sl_conn *input_next; /* worker's input list (buffered bytes to parse) */
  bool input_pending;
  ev_tstamp timeout_at;     /* current deadline (0: none), see sl_conn_set_timeout */
  ev_tstamp timer_armed_at; /* deadline the libev timer is armed for */
  uint32_t linger_bytes;    /* input discarded while lingering */
  struct sl_conn *linger_next, *linger_prev; /* worker's lingering list */
};

/* conn.c */
void sl_conn_accept(struct sl_worker *w, struct sl_listener *lis, int fd,
                    const struct sockaddr_storage *peer);
/* Queue |c| for a write at the end of this loop iteration. */
void sl_conn_schedule_flush(struct sl_conn *c);
/* Close after pending output is written: the protocol state is freed,
 * TLS sends close_notify, the write side is shut and input is drained for
 * at most SL_LINGER_MS / SL_LINGER_MAX_BYTES before the socket is closed,
 * so the kernel does not turn the close into an RST that destroys the
 * answer (nginx lingering_close). */
#define SL_LINGER_MS 2000u
#define SL_LINGER_MAX_BYTES (1u << 20)
void sl_conn_close_after_flush(struct sl_conn *c);
void sl_conn_close(struct sl_conn *c);
/* Closes |w|'s oldest lingering connection of |lis|, so a new connection
 * can take its place under max_connections (a lingering connection has
 * nothing left to give its client but the chance of reading the last
 * answer; nginx reuses such connections the same way). Returns true if one
 * was closed. */
bool sl_conn_reclaim_lingering(struct sl_worker *w, const struct sl_listener *lis);
void sl_conn_pause_read(struct sl_conn *c);
void sl_conn_resume_read(struct sl_conn *c);
/* (Re)arms the connection timer to fire after |ms| (0: stop). */
void sl_conn_set_timeout(struct sl_conn *c, uint64_t ms);
/* Runs once per loop iteration, before the loop blocks (ev_prepare):
 * parses buffered input of resumed connections and writes every queued
 * connection, until neither list has work, then frees closed ones. */
void sl_worker_flush_all(struct sl_worker *w);

/* h1.c / h2.c */
extern const struct sl_proto_ops sl_h1_ops;
extern const struct sl_proto_ops sl_h2_ops;
int sl_h1_start(struct sl_conn *c);
/* |tls|: started after ALPN (no client preface detection needed). */
int sl_h2_start(struct sl_conn *c);
/* h1/h2 timer expiry (the connection's one timer). */
void sl_h1_on_timeout(struct sl_conn *c);
void sl_h2_on_timeout(struct sl_conn *c);

/* tls.c */
SSL_CTX *sl_tls_ctx_new(const char *cert, const char *key, char *err, size_t errlen);

/* ---- upstreams ---------------------------------------------------- */

struct sl_pool {
  struct sl_worker *w;
  char *name;
  struct sl_sockaddr_storage_copy {
    struct sockaddr_storage ss;
    socklen_t len;
  } addr;
  char *address_text;
  uint32_t max_conns;   /* this worker's share */
  uint32_t max_pending; /* this worker's share */
  uint64_t connect_timeout_ms, response_timeout_ms, idle_timeout_ms;
  uint32_t n_conns;     /* open, idle or busy */
  uint32_t n_pending;
  struct sl_upconn *idle; /* idle keep-alive connections, LIFO */
  struct sl_stream *queue_head, *queue_tail;
  struct sl_pool *next;
  bool retired;         /* replaced by a reload: close when empty */
  uint32_t pipeline;    /* pipelining depth (1: off) */
  struct sl_upconn *pipe_candidate; /* busy connection taking pipelined requests */
};

/* upstream.c */
/* Ends the upstream half of a tunnel now (emergency close, idle). */
void sl_upstream_tunnel_end(struct sl_stream *s);
struct sl_pool *sl_pool_for(struct sl_worker *w, const struct sl_upstream_cfg *u);
/* Starts the upstream half of |s| (connect, reuse or queue). On failure
 * answers the stream itself (503 queue full, 502). */
void sl_upstream_start(struct sl_stream *s);
/* More request body is in s->req_body (or s->req_done). */
void sl_upstream_request_body(struct sl_stream *s);
/* The frontend drained response body: resume reading the origin. */
void sl_upstream_resume(struct sl_stream *s);
/* The stream goes away: return or close its upstream connection. */
void sl_upstream_detach(struct sl_stream *s);
void sl_pool_close_all(struct sl_pool *p);
/* Writes every upstream connection queued this loop iteration (one writev
 * each, so pipelined requests go out together). Called by the worker's
 * flush pass. */
void sl_upstream_flush_scheduled(struct sl_worker *w);

/* ---- workers ------------------------------------------------------ */

/* One listener this worker accepts on; allocated one by one, since the
 * embedded watcher must not move while it is active. */
struct sl_worker_listener {
  struct sl_listener *lis;
  ev_io io;
  struct sl_worker *w;
  struct sl_worker_listener *next;
};

struct sl_worker {
  int id;
  pthread_t thread;
  struct ev_loop *loop;
  ev_async wakeup;
  ev_prepare flush_watcher;
  ev_timer drain_timer;
  struct sl_gen *gen; /* current configuration for new streams */
  struct sl_worker_listener *listeners; /* the set of w->gen (list) */
  int n_listeners;
  struct sl_conn *conns; /* all client connections */
  /* Lingering connections, oldest first (also on `conns`): the first to
   * give back when a listener is at max_connections. */
  struct sl_conn *linger_head, *linger_tail;
  struct sl_stream *tunnels; /* open WebSocket tunnels */
  uint32_t n_tunnels;
  uint32_t n_conns;
  struct sl_conn *flush_list;
  struct sl_conn *input_list; /* connections with buffered input to parse */
  struct sl_upconn *up_flush_list; /* upstream connections with queued writes */
  struct sl_pool *pools;
  atomic_bool stop_requested;
  atomic_bool reload_requested;
  /* Generation number of the configuration (and listener set) this
   * worker has picked up; the main thread waits on it before it frees
   * what an older generation used. */
  _Atomic uint64_t acked_generation;
  bool draining;
};

extern int sl_n_workers;

/* Monotonic nanoseconds (vDSO clock, no syscall): limiter and breaker
 * time, identical across workers. In SLUICE_TESTING builds it runs ahead
 * by an offset that only grows (sl_test_clock_advance(), admin POST
 * /testing/clock?advance_ms=N), so integration tests move policy time past
 * an open_for or a bucket's refill instead of sleeping; release builds
 * have neither the offset nor the endpoint. */
uint64_t sl_now_ns(void);
#ifdef SLUICE_TESTING
/* proxy/testclock.c: the offset, and a call that moves sl_now_ns() forward
 * by |ns| for every thread and returns the total offset. */
extern _Atomic uint64_t sl_test_clock_offset_ns;
uint64_t sl_test_clock_advance(uint64_t ns);
#endif
/* Incremented by each worker thread as it finishes (main polls it). */
extern atomic_int sl_workers_exited;

#endif
