/*
 * sluice — worker threads: one libev loop each, SO_REUSEPORT listeners.
 * Types in worker-t.h.
 */
#ifndef SLUICE_CORE_WORKER_H
#define SLUICE_CORE_WORKER_H

#include <stdatomic.h>
#include <stdint.h>

#include "core/worker-t.h"

/* Incremented by each worker thread as it finishes (main polls it). */
extern atomic_int sl_workers_exited;

/* Prepares worker |id| of |n_workers| on generation |gen| (takes the
 * reference), watching socket |id| of each of gen->listeners. Aborts on
 * out-of-memory (start-up). */
void sl_worker_init(struct sl_worker *w, int id, int n_workers, struct sl_gen *gen);
int sl_worker_start(struct sl_worker *w);
/* Thread-safe: ask the worker to pick up the current generation and its
 * listener set; w->acked_generation tells when it has. */
void sl_worker_notify_reload(struct sl_worker *w);
/* Thread-safe: stop accepting, drain within |timeout_ms| (open tunnels
 * and h2 connections one by one over the first |spread_ms| of it), then
 * exit. */
void sl_worker_notify_stop(struct sl_worker *w, uint64_t timeout_ms, uint64_t spread_ms);
void sl_worker_join(struct sl_worker *w);
/* The oldest generation any of |w[0..n)| has acknowledged (UINT64_MAX
 * when n is 0): everything retired as of a generation up to it is no
 * longer reachable from a worker. */
uint64_t sl_workers_acked_min(const struct sl_worker *w, int n);

#endif
