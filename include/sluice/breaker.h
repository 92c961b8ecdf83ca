/*
 * sluice — per-upstream circuit breaker (SPEC section 3,
 * upstreams.*.circuit_breaker).
 *
 *   closed     every request admitted; outcomes counted. Opens when
 *              `consecutive_failures` failures arrive in a row, or when over
 *              the last `window` at least `min_requests` outcomes were seen
 *              and the failed fraction is >= `failure_ratio`. A response
 *              slower than `slow_call` is a failure.
 *   open       everything refused (503) for `open_for`, then half-open.
 *   half-open  at most `half_open_probes` trial requests in flight; that
 *              many successes close the breaker, any failure reopens it.
 *   closed again, ramping: for `recovery_ramp` the admitted fraction grows
 *              linearly from 10% to 100%, so a recovering upstream is not
 *              hit by the whole backlog at once.
 *
 * Thread-safe. Admission in the closed state (not ramping) is two relaxed
 * atomic loads, and so is most of a report: outcomes go to per-thread
 * shards without a lock (see breaker.c). The breaker's mutex is taken only
 * to change state and while half-open. Time is passed in
 * (nanoseconds, monotonic); randomness for the ramp too.
 */
#ifndef SLUICE_BREAKER_H
#define SLUICE_BREAKER_H

#include "sluice/breaker-t.h"
#include "sluice/config-t.h"

/* Copies |cfg|. Returns NULL on OOM. */
struct sl_breaker *sl_breaker_new(const struct sl_breaker_cfg *cfg);

/* A reload changed the breaker's settings (thresholds, window, slow_call,
 * open_for, probes, ramp, enabled): they apply from now on, and the state
 * is kept, so an open breaker stays open until the `open_until` it was
 * given when it opened. A new window width empties the window. Any
 * thread; meant for the reload path. */
void sl_breaker_retune(struct sl_breaker *b, const struct sl_breaker_cfg *cfg);
void sl_breaker_del(struct sl_breaker *b);

/* Decides one request. |rnd| is a uniformly random 64-bit value (used only
 * while ramping). Returns v->admitted; an admitted request must be followed
 * by exactly one sl_breaker_report() with v->epoch and v->probe. */
bool sl_breaker_admit(struct sl_breaker *b, uint64_t now_ns, uint64_t rnd,
                      struct sl_breaker_verdict *v);

/* Reports the outcome of a request admitted with |v|. |latency_ns| is
 * compared with slow_call. Outcomes of requests admitted before the last
 * state change (another epoch) are ignored: a straggler from before the
 * breaker opened must neither reopen it nor count as a probe. */
void sl_breaker_report(struct sl_breaker *b, const struct sl_breaker_verdict *v,
                       enum sl_outcome outcome, uint64_t latency_ns, uint64_t now_ns);

/* The reservation horizon of the crowd |b| refuses (sluice/horizon.h):
 * with `spread: backlog` each refusal takes the next slot of
 * v->serve_period_ns from the time the breaker half-opens. */
_Atomic uint64_t *sl_breaker_horizon(struct sl_breaker *b);

enum sl_breaker_state sl_breaker_state(const struct sl_breaker *b);
/* The state a request arriving at |now_ns| meets: as sl_breaker_state(),
 * except that a breaker open for `open_for` already is half-open (its next
 * request is a probe; the transition itself is made lazily by that
 * request). Lock-free: for the metrics gauge, at scrape time. */
enum sl_breaker_state sl_breaker_state_at(const struct sl_breaker *b, uint64_t now_ns);
void sl_breaker_snapshot(struct sl_breaker *b, uint64_t now_ns, struct sl_breaker_snapshot *out);

#endif
