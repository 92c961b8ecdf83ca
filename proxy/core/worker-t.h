/*
 * sluice — worker threads (types; functions in worker.h).
 */
#ifndef SLUICE_CORE_WORKER_T_H
#define SLUICE_CORE_WORKER_T_H

#include <ev.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct sl_gen;
struct sl_listener;
struct sl_conn;
struct sl_stream;
struct sl_upconn;
struct sl_pool;
struct sl_global_client;

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
  int n_workers; /* how many workers share the process (limits are split) */
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
  /* Idle keep-alive connections, longest idle first (also on `conns`):
   * the first closed when a listener holds limits.max_idle. */
  struct sl_conn *idle_head, *idle_tail;
  /* Open WebSocket tunnels, most recently active first: the last is the
   * first a listener at limits.max_idle gives back (core/idle.h). */
  struct sl_stream *tunnels, *tunnels_tail;
  uint32_t n_tunnels;
  uint32_t n_conns;
  struct sl_conn *flush_list;
  struct sl_conn *input_list; /* connections with buffered input to parse */
  struct sl_upconn *up_flush_list; /* upstream connections with queued writes */
  struct sl_pool *pools;
  /* The client of the global limits' backend and this worker's leases
   * (proxy/global/client.h); configured from each generation. */
  struct sl_global_client *global;
  atomic_bool stop_requested;
  atomic_bool reload_requested;
  /* Generation number of the configuration (and listener set) this
   * worker has picked up; the main thread waits on it before it frees
   * what an older generation used. */
  _Atomic uint64_t acked_generation;
  bool draining;
  /* The drain spread (worker.c): connections waiting for their turn
   * (tunnels, h2), in order; the n turns are spread_s seconds * i / n
   * after spread_at; spent counts turns taken or given up. */
  struct sl_conn *spread_head, *spread_tail;
  uint32_t spread_n, spread_spent;
  ev_tstamp spread_at, spread_s;
  ev_timer spread_timer;
};

#endif
