/*
 * sluice — listener types (see listener.h).
 */
#ifndef SLUICE_CORE_LISTENER_T_H
#define SLUICE_CORE_LISTENER_T_H

#include <openssl/ssl.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice/config_diff.h" /* struct sl_namelist */

struct sl_metric_series;
struct sl_listener_cfg;

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
  _Atomic uint32_t max_idle; /* limits.max_idle (0: no cap) */
  atomic_uint n_idle;        /* held: idle connections and tunnels, across workers (core/idle.h) */
  /* What proxy_protocol is set to (0: off), so a reload that changes it
   * names the listener as changed; connections read the setting from
   * their worker's generation. */
  _Atomic uint64_t proxy_protocol_fp;
  atomic_uint n_connections; /* across workers */
  struct sl_metric_series *m_conn_h1, *m_conn_h2;
  struct sl_metric_series *m_h2_asleep; /* sluice_h2_sessions_asleep */
  struct sl_metric_series *m_idle_evictions; /* sluice_idle_evictions_total */
  struct sl_metric_series *m_idle_held;      /* sluice_idle_held */
  /* Main thread only: what `ssl_ctx` was built from, so a reload rebuilds
   * it only when the paths or the files (inode, size, mtime) changed. */
  char *tls_certificate, *tls_private_key;
  uint64_t tls_files_fp;
};

/* A TLS context replaced by a reload, or a listener a reload removed,
 * freed once every worker has acknowledged generation `gen` (so none can
 * load the old pointer again) and, for a listener, its last connection
 * has closed (connections point to their listener). Main thread only. */
struct sl_retired {
  SSL_CTX *ctx;
  struct sl_listener *lis;
  uint64_t gen;
  struct sl_retired *next;
};

/* The main thread's listeners: the running set and what a reload
 * retired. */
struct sl_listener_set {
  struct sl_listener **items;
  int n;
  int n_workers;          /* sockets per listener */
  struct sl_retired *retired; /* waiting for workers and connections */
};

/* What a reload does to each listener of the new configuration. */
struct sl_lis_plan {
  const struct sl_listener_cfg *lc;
  struct sl_listener *keep; /* running, same name, address and TLS mode */
  struct sl_listener *from; /* running, same address: `made` takes its sockets */
  struct sl_listener *made; /* new (bound, or waiting for `from`'s sockets) */
  SSL_CTX *new_ctx;         /* `keep` only: its certificate or key changed */
  uint64_t new_fp;
};

struct sl_lis_change {
  struct sl_lis_plan *plans; /* [cfg->n_listeners] */
  size_t n;
  bool *claimed;          /* [set->n]: kept or taken over */
  bool needs_ack;         /* sockets or TLS contexts changed hands */
  struct sl_namelist added, removed, changed, tls;
};

#endif
