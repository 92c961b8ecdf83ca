/*
 * sluice — the running process (proxy/admin/process.c): start-up, the
 * main loop (signals, housekeeping, the admin listener, reloads) and
 * shutdown. `sluice run` is one call: sl_run().
 *
 * Threads. The main thread runs everything here on its libev loop; N
 * worker threads (core/worker.c) each run their own loop. They share
 * only: the current generation (core/gen.c, a mutex-guarded pointer and
 * refcounts), the listeners' atomics (core/listener-t.h), each worker's
 * stop/reload flags and acked_generation (core/worker-t.h), and the
 * metrics registry.
 */
#ifndef SLUICE_ADMIN_PROCESS_H
#define SLUICE_ADMIN_PROCESS_H

#include <stdbool.h>

#include "core/listener-t.h"

struct ev_loop;
struct sl_admin;
struct sl_worker;

struct sl_run_opts {
  const char *config_path;
  int workers; /* 0: one per CPU available (affinity and cgroup quota) */
};

/* Runs the proxy until SIGTERM or SIGINT and its drain. Returns the exit
 * code: 0, 1 (invalid configuration), 2 (runtime failure). */
int sl_run(const struct sl_run_opts *opts);

/* The main thread's state, shared with reload.c. */
struct sl_process {
  struct ev_loop *loop;
  const char *config_path;
  struct sl_worker *workers;
  int n_workers;
  struct sl_listener_set listeners;
  struct sl_admin *admin;
  struct sl_admin *metrics_admin; /* admin.metrics_address; NULL: none */
  bool admin_loopback;            /* the admin listener is bound to loopback */
  bool draining;
  int workers_running;
};

#endif
