/*
 * sluice — per-route concurrency limit with priorities.
 *
 * Priority decides how close to `max` a request may take the counter:
 *
 *   high, normal   in_flight < max
 *   low            in_flight < ceil(80% of max)
 *
 * so as a route (or any counter shared by several routes) fills up, low
 * priority work is shed first and the last 20% is kept for the rest.
 * Normal means what `max` says, because it is the default and an operator
 * writing `max: 512` expects 512; high is the same as normal for one
 * counter and the distinction matters to callers that shed by priority
 * elsewhere. A limit of at least 1 is kept for every priority when max >= 1.
 * max 0 means unlimited (the counter still counts, for metrics).
 */
#ifndef SLUICE_CONCURRENCY_H
#define SLUICE_CONCURRENCY_H

#include <stdbool.h>
#include "sluice/concurrency-t.h"
#include "sluice/config-t.h"

struct sl_concurrency *sl_concurrency_new(void); /* NULL on OOM */
void sl_concurrency_del(struct sl_concurrency *c);

/* The in-flight count below which |prio| is admitted (0: unlimited). */
uint32_t sl_concurrency_limit(uint32_t max, enum sl_priority prio);

/* Takes one slot if the count is below the limit for |prio|; exact under
 * concurrency (a CAS loop, never over-admits, never rejects spuriously).
 * Returns true if taken: the caller must call sl_concurrency_release()
 * exactly once when the request (or tunnel) ends. */
bool sl_concurrency_try_acquire(struct sl_concurrency *c, uint32_t max, enum sl_priority prio);
void sl_concurrency_release(struct sl_concurrency *c);
uint32_t sl_concurrency_in_flight(const struct sl_concurrency *c);

#endif
