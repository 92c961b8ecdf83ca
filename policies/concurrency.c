/*
 * sluice — per-route concurrency limit with priorities (see concurrency.h).
 */
#include <stdatomic.h>
#include <stdlib.h>

#include "sluice/concurrency.h"

struct sl_concurrency *sl_concurrency_new(void) {
  struct sl_concurrency *c = aligned_alloc(64, sizeof(*c));
  if (c) atomic_init(&c->in_flight, 0);
  return c;
}

void sl_concurrency_del(struct sl_concurrency *c) { free(c); }

uint32_t sl_concurrency_limit(uint32_t max, enum sl_priority prio) {
  if (max == 0) return 0;
  if (prio != SL_PRIORITY_LOW) return max;
  uint64_t l = ((uint64_t)max * 4 + 4) / 5; /* ceil(0.8 * max) */
  return l ? (uint32_t)l : 1;
}

bool sl_concurrency_try_acquire(struct sl_concurrency *c, uint32_t max, enum sl_priority prio) {
  uint32_t limit = sl_concurrency_limit(max, prio);
  if (limit == 0) {
    atomic_fetch_add_explicit(&c->in_flight, 1, memory_order_relaxed);
    return true;
  }
  uint32_t cur = atomic_load_explicit(&c->in_flight, memory_order_relaxed);
  do {
    if (cur >= limit) return false;
  } while (!atomic_compare_exchange_weak_explicit(&c->in_flight, &cur, cur + 1,
                                                  memory_order_relaxed, memory_order_relaxed));
  return true;
}

void sl_concurrency_release(struct sl_concurrency *c) {
  uint32_t prev = atomic_fetch_sub_explicit(&c->in_flight, 1, memory_order_relaxed);
  if (prev == 0) abort(); /* a release without an acquire: a proxy bug */
}

uint32_t sl_concurrency_in_flight(const struct sl_concurrency *c) {
  return atomic_load_explicit(&c->in_flight, memory_order_relaxed);
}
