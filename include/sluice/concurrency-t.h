/*
 * sluice — in-flight request counters (types only). Functions in
 * concurrency.h.
 */
#ifndef SLUICE_CONCURRENCY_T_H
#define SLUICE_CONCURRENCY_T_H

#include <stdint.h>

/* Requests (and open tunnels) in flight for one route, across all
 * workers. Embed it or use sl_concurrency_new(). */
struct sl_concurrency {
  _Alignas(64) _Atomic uint32_t in_flight; /* own cache line: hot, shared */
};

#endif
