/*
 * sluice — the circuit breakers seen from the main thread: the state
 * gauge and the opens counter at scrape time, and a log line for every
 * transition, found by looking once a second (housekeeping) rather than
 * by the workers that cause them: the request path pays nothing, and a
 * flapping breaker writes at most one line a second (the count of opens
 * in between is in the line).
 */
#ifndef SLUICE_ADMIN_BREAKER_WATCH_H
#define SLUICE_ADMIN_BREAKER_WATCH_H

#include <stdint.h>

struct sl_gen;

/* Registers sluice_circuit_breaker_opens_total (start-up, after
 * sl_stats_init). */
void sl_breaker_watch_init(void);

/* Sets sluice_circuit_breaker_state and _opens_total of every upstream of
 * |g| at |now_ns| (the metrics collector). */
void sl_breaker_gauges(const struct sl_gen *g, uint64_t now_ns);

/* Logs what changed since the last call (main thread, once a second):
 * "circuit breaker opened" (warn; `opens` since the last look, the
 * breaker's failure counts, `open_for_ms` left), "circuit breaker
 * half-open" and "circuit breaker closed" (info). */
void sl_breaker_watch(const struct sl_gen *g, uint64_t now_ns);

#endif
