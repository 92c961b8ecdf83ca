/*
 * sluice — worker threads: one libev loop each, SO_REUSEPORT listeners.
 */
#ifndef SLUICE_PROXY_WORKER_H
#define SLUICE_PROXY_WORKER_H

#include "proxy.h"

/* Prepares worker |id| on generation |gen| (takes the reference),
 * watching socket |id| of each of gen->listeners. Aborts on
 * out-of-memory (start-up). */
void sl_worker_init(struct sl_worker *w, int id, struct sl_gen *gen);
int sl_worker_start(struct sl_worker *w);
/* Thread-safe: ask the worker to pick up the current generation and its
 * listener set; w->acked_generation tells when it has. */
void sl_worker_notify_reload(struct sl_worker *w);
/* Thread-safe: stop accepting, drain within |timeout_ms|, then exit. */
void sl_worker_notify_stop(struct sl_worker *w, uint64_t timeout_ms);
void sl_worker_join(struct sl_worker *w);

#endif
