/*
 * sluice — client connections (types; functions in conn.h).
 */
#ifndef SLUICE_CORE_CONN_T_H
#define SLUICE_CORE_CONN_T_H

#include <ev.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "core/stream-t.h"
#include "core/pipe.h"

/* A client's outgoing byte queue (framed responses). */
#define SL_OUT_PIPE_CAP (64 * 1024)

struct sl_worker;
struct sl_listener;

/* A frontend (front/h1.c, front/h2.c): how a connection is handed to it
 * and what conn.c calls on its events. conn.c knows no protocol: it picks
 * a frontend with sl_frontend_for_alpn / sl_frontend_for_preface (the table
 * in front/frontends.c) and calls only through these members. */
struct sl_proto_ops {
  const char *alpn;      /* ALPN protocol id selecting it on TLS, or NULL */
  /* Cleartext: the client's first bytes that select it (h2c prior
   * knowledge), or NULL for the frontend taken when no preface matches. */
  const char *preface;
  size_t preface_len;
  /* Set up protocol state in c->proto_data (c->ops is set by the caller
   * on success). Returns 0, or -1 on OOM (the connection closes). */
  int (*start)(struct sl_conn *c);
  /* The connection's one timer expired (c->timeout_at passed). */
  void (*on_timeout)(struct sl_conn *c);
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
   * after the current response); open tunnels get a WebSocket close 1001
   * with |tunnel_reason| (NULL: SL_DRAIN_CLOSE_REASON). */
  void (*drain)(struct sl_conn *c, const char *tunnel_reason);
  /* True when no request is in progress (idle keep-alive). */
  bool (*idle)(struct sl_conn *c);
  /* A drain takes the connection's turn in the worker's drain spread
   * instead of draining it at once: its clients keep it for many requests
   * and reconnect as soon as it is drained (h2). An h1 connection takes a
   * turn only while it carries a tunnel. */
  bool drain_spread;
};

/* The reason of the close frame (1001, going away) a drain sends on open
 * WebSocket tunnels: something a client can log. */
#define SL_DRAIN_CLOSE_REASON "sluice draining: reconnect in a few seconds"

struct sl_conn {
  struct sl_worker *w;
  /* Device facts of the last request on this connection, so an emergency
   * blocklist reload can close the keep-alive connections of a newly
   * blocked address, device or firmware (SPEC section 4). */
  struct sl_dev_facts last;
  /* Exempt from that close (the last request's `allow` rule skipped the
   * blocklist). */
  bool blocklist_exempt;
  struct sl_listener *lis;
  int fd;
  ev_io rio, wio;
  ev_timer timer;
  SSL *ssl;
  bool proxy_hdr;     /* waiting for the PROXY header (proxy_protocol listener) */
  bool handshaking;
  bool detecting;     /* cleartext: h1 or h2c preface not decided yet */
  bool closing;       /* close once `out` is flushed */
  bool lingering;     /* answered and half-closed: draining input (conn_linger) */
  /* The protocol read its last request to the end (h1: Connection: close
   * after a complete request): conn_linger may close at once when the
   * socket holds nothing more (conn_input_quiet). */
  bool input_done;
  bool peer_eof;      /* the client closed its write side */
  bool read_paused;   /* protocol asked to stop reading */
  bool flush_pending; /* queued on the worker's flush list */
  bool dead;
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
  bool idle_listed;         /* on the worker's idle list (core/idle.h) */
  struct sl_conn *idle_next, *idle_prev;
  ev_tstamp idle_since;     /* when it joined that list */
  bool spread_queued;       /* waiting for its turn in the drain spread */
  struct sl_conn *spread_next, *spread_prev; /* worker's drain spread queue */
};

#endif
