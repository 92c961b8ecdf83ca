/*
 * sluice — policy state that outlives a configuration snapshot.
 *
 * Limiter tables, concurrency counters and breakers are mutable and shared
 * by every worker; snapshots are immutable and hold no state. The policy
 * set of a snapshot (struct sl_policy_set, below) holds one reference to
 * the state of each of its policies, and a reload hands the same object
 * to the new snapshot's set when the policy's `identity` (computed by the
 * loader) is unchanged, so buckets and breaker history survive it; a
 * request that started on the old snapshot keeps using the old set's
 * state until it ends. Reference counts are atomic: any thread may drop
 * the last reference.
 */
#ifndef SLUICE_POLICY_STATE_H
#define SLUICE_POLICY_STATE_H

#include <stddef.h>
#include <stdint.h>
#include "sluice/config-t.h"

struct sl_policy_state; /* opaque */
struct sl_ratelimit_table;
struct sl_horizons;
struct sl_concurrency;
struct sl_breaker;
struct sl_kind;

enum sl_policy_kind {
  SL_POLICY_RATELIMIT = 1,
  SL_POLICY_CONCURRENCY,
  SL_POLICY_BREAKER,
  SL_POLICY_KIND,   /* the state of a registered kind (sluice/policy.h) */
};

/* Constructors return an object with one reference, or NULL on OOM. */
struct sl_policy_state *sl_policy_state_new_ratelimit(uint64_t identity, uint32_t max_keys,
                                                      const uint8_t seed[16]);
struct sl_policy_state *sl_policy_state_new_concurrency(uint64_t identity);
struct sl_policy_state *sl_policy_state_new_breaker(uint64_t identity, const struct sl_breaker_cfg *cfg);
/* The state of |p|, a policy of a kind with state_new (freed by its
 * state_del with the last reference). */
struct sl_policy_state *sl_policy_state_new_kind(const struct sl_policy_cfg *p);

struct sl_policy_state *sl_policy_state_ref(struct sl_policy_state *s);
/* Drops one reference; the last one frees the state. NULL is a no-op. */
void sl_policy_state_unref(struct sl_policy_state *s);

enum sl_policy_kind sl_policy_state_kind(const struct sl_policy_state *s);
uint64_t sl_policy_state_identity(const struct sl_policy_state *s);
uint32_t sl_policy_state_refs(const struct sl_policy_state *s); /* tests, /explain */

/* The object inside, or NULL if |s| is NULL or of another kind. */
struct sl_ratelimit_table *sl_policy_state_ratelimit(const struct sl_policy_state *s);
/* A rate limit's reservation horizons (sluice/horizon.h), carried over a
 * reload with its table; NULL if |s| is NULL or not a rate limit. */
struct sl_horizons *sl_policy_state_horizons(struct sl_policy_state *s);
struct sl_concurrency *sl_policy_state_concurrency(const struct sl_policy_state *s);
struct sl_breaker *sl_policy_state_breaker(const struct sl_policy_state *s);
/* A registered kind's state, or NULL if |s| is NULL or not of |kind|. */
void *sl_policy_state_kind_data(const struct sl_policy_state *s, const struct sl_kind *kind);

/* ---- the runtime state of a snapshot's policies -------------------- */

/* A snapshot (struct sl_config) is pure data; the state of its policies
 * lives here, built from it by sl_policy_set_new() and held next to it by
 * the data plane (its generation). Slots parallel the snapshot's arrays;
 * a slot is NULL when the policy has no state (a rate limit without any
 * rate, a listener without a connect rate, a shaping rule without a cap).
 * A policy of a registered kind (sluice/policy.h) with state_new has its
 * state in kinds[route][i]. */
struct sl_route_state {
  struct sl_policy_state **rate_limits; /* [route->n_rate_limits] */
  /* [route->n_rate_limits]: the per-address table of each limit's
   * `new_keys` cap (NULL where it has none). */
  struct sl_policy_state **new_keys;
  struct sl_policy_state *concurrency;
  /* [route->n_policies], or NULL when none of them has state: the states
   * of the route's policies of registered kinds, and what the engine is
   * given (each one's sl_policy_state_kind_data, or for a kind with
   * state_of, e.g. concurrency, the object in the set's own slot). */
  struct sl_policy_state **kinds;
  void **kind_data;
};

struct sl_policy_set {
  const struct sl_config *cfg;           /* built for it; does not own it */
  struct sl_route_state *routes;         /* [cfg->n_routes] */
  struct sl_policy_state **breakers;     /* [cfg->n_upstreams] */
  struct sl_policy_state **shaping;      /* [cfg->n_shaping] (rate caps) */
  struct sl_policy_state **connect_rate; /* [cfg->n_listeners] */
};

/* Gives every policy of |next| its state: the state of the policy of
 * |prev| (may be NULL; built for the previous snapshot, which must still
 * be alive) with the same kind and identity, with a new reference, or a
 * fresh one. A state of |prev| is given to one policy of |next| at most.
 * Identities leave out the tunables on-call changes mid-incident (rates,
 * bursts, overrides, concurrency `max`): a carried limiter table whose
 * rates or bursts changed is converted at |now_ns| (monotonic, the clock
 * of decisions) so that every key keeps the tokens it has consumed, at
 * most a whole new bucket (sl_ratelimit_reparam); a concurrency counter
 * keeps its in-flight count and the new `max` applies to it; a breaker is
 * retuned (sl_breaker_retune). A rate limit without any rate (period 0
 * and no override) gets no table. Fresh limiter tables are keyed with
 * getrandom(2). Returns the set, or NULL on OOM. Call before |next| is
 * published (main thread); |prev| is only read, but its tables are
 * converted in place: requests still deciding on |prev| meet converted
 * keys. */
struct sl_policy_set *sl_policy_set_new(const struct sl_config *next,
                                        const struct sl_policy_set *prev, uint64_t now_ns);

/* Drops the set's references and frees it. Call when its snapshot is
 * retired (no request uses it any more). NULL is a no-op. */
void sl_policy_set_del(struct sl_policy_set *set);

/* The state of a policy of |set|'s snapshot (|route|, |up|, |lc| point
 * into set->cfg; admission reads set->routes[route->index] directly). */
static inline struct sl_policy_state *sl_policy_set_rate_limit(const struct sl_policy_set *set,
                                                               const struct sl_route_cfg *route,
                                                               size_t i) {
  return set->routes[route - set->cfg->routes].rate_limits[i];
}
static inline struct sl_policy_state *sl_policy_set_concurrency(const struct sl_policy_set *set,
                                                                const struct sl_route_cfg *route) {
  return set->routes[route - set->cfg->routes].concurrency;
}
static inline struct sl_policy_state *sl_policy_set_breaker(const struct sl_policy_set *set,
                                                            const struct sl_upstream_cfg *up) {
  return set->breakers[up - set->cfg->upstreams];
}
static inline struct sl_policy_state *sl_policy_set_shaping(const struct sl_policy_set *set,
                                                            size_t i) {
  return set->shaping[i];
}
static inline struct sl_policy_state *sl_policy_set_connect_rate(const struct sl_policy_set *set,
                                                                 const struct sl_listener_cfg *lc) {
  return set->connect_rate[lc - set->cfg->listeners];
}
static inline void *const *sl_policy_set_kinds(const struct sl_policy_set *set,
                                               const struct sl_route_cfg *route) {
  return set->routes[route - set->cfg->routes].kind_data;
}

#endif
