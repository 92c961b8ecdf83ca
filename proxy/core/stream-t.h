/*
 * sluice — the exchange: one request/response, whichever protocol it came
 * in on (types; functions in stream.h).
 *
 * A frontend (h1.c, h2.c) parses client bytes into a stream's request
 * head and request-body pipe, and renders the stream's response head and
 * response-body pipe back into client bytes. The upstream side does the
 * reverse towards the origin. Neither side knows the other's protocol:
 * they meet in stream.c, and talk only through the two pipes and the
 * callbacks below.
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
#ifndef SLUICE_CORE_STREAM_T_H
#define SLUICE_CORE_STREAM_T_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice/admission.h"
#include "sluice/arena.h"
#include "core/pipe.h"
#include "front/ws.h"

/* Per-exchange buffer bound: request and response body pipes each hold at
 * most this much (plus one read) before the producer is paused. */
#define SL_BODY_PIPE_CAP (64 * 1024)

struct sl_conn;
struct sl_stream;
struct sl_gen;
struct sl_pool;
struct sl_upconn;
struct sl_route_cfg;
struct sl_metric_series;
struct sl_pace;

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

/* What the upstream side tells the exchange it serves (core/stream.c
 * provides the table, sl_stream_exchange_ops; the declarations of stream.h
 * say what each call does). The upstream side reaches the exchange only
 * through s->ex, never stream.c by name: the stream drives its upstream
 * and its upstream answers through this table, as a frontend answers
 * through sl_frontend_ops; a unit test can hand a backend its own. */
struct sl_exchange_ops {
  void (*outcome)(struct sl_stream *s, bool failure);
  void (*failed)(struct sl_stream *s, int status, const char *error);
  void (*respond_error)(struct sl_stream *s, int status, const char *error, const char *policy,
                        uint32_t retry_after);
  void (*tunnel_open)(struct sl_stream *s);
  void (*tunnel_down)(struct sl_stream *s, const char *data, size_t n);
  void (*tunnel_close)(struct sl_stream *s, uint16_t code, const char *reason);
};

/* A device as its latest request identified it: what the emergency close
 * after a blocklist reload (core/worker.c close_newly_blocked) looks up.
 * Class and firmware are cut at 31 bytes. */
struct sl_dev_facts {
  char cls[32];
  char firmware[32];
  uint8_t family;   /* AF_INET, AF_INET6; 0: no address (unix socket) */
  uint8_t addr[16]; /* the identified client address (sl_identity.addr) */
  bool has_id;
  uint64_t id_hash; /* sl_blocklist_id_hash() of the device id */
};

struct sl_stream {
  struct sl_conn *conn;
  const struct sl_frontend_ops *fe;
  const struct sl_exchange_ops *ex; /* for the upstream side */
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
  /* Waiting for an upstream connection (the pool's queue; the h1 backend
   * also links the streams it hands back by queue_next). */
  struct sl_stream *queue_next, *queue_prev;

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
  char request_id[33]; /* generated when the request had none (core/request_id.h) */
  const char *rid;     /* the request id once decided (NULL: not yet): the client's or request_id */
  uint16_t rid_len;

  struct sl_admission adm;
  ev_timer delay_timer; /* shaping delay before going upstream */
  struct sl_pace *pace;  /* shaping bandwidth (core/pace.h), NULL: unpaced */

  /* WebSocket. After the upstream's 101 the stream is a tunnel: both
   * pipes carry raw bytes until one side closes. */
  bool tunnel;
  bool ws_h2;             /* RFC 8441 extended CONNECT: sluice made the key */
  bool ws_close_pending;  /* inject a close frame at the next boundary */
  uint16_t ws_close_code;
  const char *ws_close_reason;
  char ws_key[25];        /* Sec-WebSocket-Key sent upstream (ws_h2) */
  struct sl_ws_tracker ws_down; /* frame boundaries, upstream -> client */
  struct sl_dev_facts dev; /* for emergency blocks of tunnels */
  /* Exempt from the emergency close of a blocklist reload (its `allow` rule
   * skipped the blocklist). */
  bool blocklist_exempt;
  ev_tstamp tunnel_started;
  uint64_t tunnel_bytes_up, tunnel_bytes_down;
  struct sl_metric_series *m_tunnels;
  /* The worker's open tunnels, most recently active first (core/idle.h):
   * tunnel_active is when bytes last moved either way. */
  struct sl_stream *tunnel_next, *tunnel_prev;
  ev_tstamp tunnel_active;
  bool tunnel_held; /* counted in its listener's n_idle (core/idle.h) */
  /* An extra header on a local answer (426's Sec-WebSocket-Version). */
  const char *err_header_name, *err_header_value;

  ev_tstamp started;
  ev_tstamp upstream_started;
  /* Body bytes of this exchange, for its access line, counted by the
   * frontend once per chunk: taken from the client into req_body
   * (discarded bytes of a refused request are not), and handed to the
   * client's connection (the local answer's body or resp_body; never
   * sluice's own framing or head). A tunnel counts what it carried. */
  uint64_t bytes_in, bytes_out;
};

#endif
