/*
 * sluice — the lease engine of fleet-wide rate limits (pure: no sockets,
 * time passed in).
 *
 * A global limit's bucket lives in a shared backend (Redis, a token
 * bucket updated atomically by a script). No request waits on it: each
 * replica keeps a local share of every hot key (struct sl_lease) and
 * refills it asynchronously. This module decides each request from the
 * share, says when to ask for more and how much, and applies the answer;
 * the data plane (proxy/global/) carries the asks to the backend.
 *
 * Lifecycle of one key on one worker:
 *
 *   sl_lease_admit()   -> verdict; if v.want_refill:
 *   sl_lease_ask()     -> n tokens to ask (marks the key in flight)
 *   ... the backend answers ...
 *   sl_lease_grant()   or sl_lease_failed()
 *
 * Sizing. The ask is the replica's own recent demand (requests seen, an
 * EWMA) times lease_ns plus its debt, so a replica that sees most of a
 * key's traffic asks for most of it. When the backend grants less than
 * asked (its bucket is drained) the replica asks again after
 * sl_lease_poll_ns(): a fixed quantum of the fleet rate divided by its
 * own demand, so under overload each replica polls, and thus collects
 * the tokens that accumulated since anyone polled, in proportion to its
 * demand: the global rate is split in proportion to demand.
 *
 * Accuracy. The backend never grants more than its bucket (rate x time +
 * burst). A replica admits only leased tokens, plus debt bounded by its
 * provisional bucket (max(1, burst / expected_replicas)), which the next
 * grants pay back; so fleet-wide admissions over T are at most
 * rate x T + burst + replicas x provisional bucket while the backend is
 * up. While it is down, the fallback mode decides (local: rate /
 * expected_replicas per replica).
 */
#ifndef SLUICE_LEASE_H
#define SLUICE_LEASE_H

#include "sluice/lease-t.h"

/* Decides one request for the key whose share is |l| at |now_ns| (the
 * loop's clock), with the backend reachable or not (|backend_up|).
 * Admits from leased tokens first, then (backend up) from the provisional
 * bucket as debt, or (backend down) by the fallback mode. Sets
 * v->want_refill when the share is low, no lease is in flight and the
 * backend is up. Returns v->admitted. */
bool sl_lease_admit(struct sl_lease *l, const struct sl_lease_params *p, bool backend_up,
                    uint64_t now_ns, struct sl_lease_verdict *v);

/* The tokens to ask for now (>= 1): demand x lease_ns plus the debt,
 * capped at the fleet bucket; marks the lease in flight. */
uint32_t sl_lease_ask(struct sl_lease *l, const struct sl_lease_params *p, uint64_t now_ns);

/* The backend granted |granted| of the asked tokens; when it had fewer
 * than asked, |retry_ns| is its estimate of the time until it has one
 * again (0 if unknown). Pays the debt first. */
void sl_lease_grant(struct sl_lease *l, const struct sl_lease_params *p, uint32_t granted,
                    uint64_t retry_ns, uint64_t now_ns);

/* The lease request failed (timeout, error, connection lost): the key may
 * ask again (when the backend is up again). */
void sl_lease_failed(struct sl_lease *l);

/* Like sl_lease_admit() but changes nothing (the look pass of
 * admission, /explain). */
bool sl_lease_peek(const struct sl_lease *l, const struct sl_lease_params *p, bool backend_up,
                   uint64_t now_ns, struct sl_lease_verdict *v);

/* Gives back one request admitted by sl_lease_admit() from |src| (a
 * later policy refused it): a token, a debt, or the fallback bucket's
 * charge. */
void sl_lease_refund(struct sl_lease *l, const struct sl_lease_params *p, enum sl_lease_source src);

/* The demand estimate of |l|, requests per second (tests, /explain). */
double sl_lease_demand(const struct sl_lease *l);

/* How long after a short grant to ask again (the mean; the wait drawn is
 * exponential around it): (quantum of the fleet rate) / demand, within
 * [lease_ns / 32, lease_ns]. */
uint64_t sl_lease_poll_ns(const struct sl_lease *l, const struct sl_lease_params *p);

/* The fallback (local share) bucket: period and burst. */
uint64_t sl_lease_local_period(const struct sl_lease_params *p);
uint32_t sl_lease_local_burst(const struct sl_lease_params *p);

/* True when |l| carries nothing worth keeping at |now_ns|: no lease in
 * flight, no debt, and idle for idle_ns (its tokens are given up). */
bool sl_lease_idle(const struct sl_lease *l, uint64_t now_ns, uint64_t idle_ns);

#endif
