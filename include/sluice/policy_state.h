/*
 * sluice — policy state that outlives a configuration snapshot.
 *
 * Limiter tables, concurrency counters and breakers are mutable and shared
 * by every worker; snapshots are immutable. A snapshot holds one reference
 * to the state of each of its policies (rate_limits[i].state,
 * concurrency.state, upstream breaker_state), and a reload hands the same
 * object to the new snapshot when the policy's `identity` (computed by the
 * loader) is unchanged, so buckets and breaker history survive it; a
 * request that started on the old snapshot keeps using the old snapshot's
 * state until it ends. Reference counts are atomic: any thread may drop
 * the last reference.
 */
#ifndef SLUICE_POLICY_STATE_H
#define SLUICE_POLICY_STATE_H

#include <stdint.h>
#include "sluice/config-t.h"

struct sl_policy_state; /* opaque */
struct sl_ratelimit_table;
struct sl_concurrency;
struct sl_breaker;

enum sl_policy_kind {
  SL_POLICY_RATELIMIT = 1,
  SL_POLICY_CONCURRENCY,
  SL_POLICY_BREAKER,
};

/* Constructors return an object with one reference, or NULL on OOM. */
struct sl_policy_state *sl_policy_state_new_ratelimit(uint64_t identity, uint32_t max_keys,
                                                      const uint8_t seed[16]);
struct sl_policy_state *sl_policy_state_new_concurrency(uint64_t identity);
struct sl_policy_state *sl_policy_state_new_breaker(uint64_t identity, const struct sl_breaker_cfg *cfg);

struct sl_policy_state *sl_policy_state_ref(struct sl_policy_state *s);
/* Drops one reference; the last one frees the state. NULL is a no-op. */
void sl_policy_state_unref(struct sl_policy_state *s);

enum sl_policy_kind sl_policy_state_kind(const struct sl_policy_state *s);
uint64_t sl_policy_state_identity(const struct sl_policy_state *s);
uint32_t sl_policy_state_refs(const struct sl_policy_state *s); /* tests, /explain */

/* The object inside, or NULL if |s| is NULL or of another kind. */
struct sl_ratelimit_table *sl_policy_state_ratelimit(const struct sl_policy_state *s);
struct sl_concurrency *sl_policy_state_concurrency(const struct sl_policy_state *s);
struct sl_breaker *sl_policy_state_breaker(const struct sl_policy_state *s);

/* Gives every policy of |next| its state: the state of the policy of
 * |prev| (may be NULL) with the same kind and identity, with a new
 * reference, or a fresh one. A state of |prev| is given to one policy of
 * |next| at most. Identities leave out the tunables on-call changes
 * mid-incident (rates, bursts, overrides, concurrency `max`): a carried
 * limiter table whose rates or bursts changed is converted at |now_ns|
 * (monotonic, the clock of decisions) so that every key keeps the tokens
 * it has consumed, at most a whole new bucket (sl_ratelimit_reparam); a
 * concurrency counter keeps its in-flight count and the new `max` applies
 * to it. A rate limit without any rate (period 0 and no override) gets no
 * table. Fresh limiter tables are keyed with getrandom(2). Returns 0, or
 * -1 on OOM with |next| left detached. Call before |next| is published
 * (main thread); |prev| is only read, but its tables are converted in
 * place: requests still deciding on |prev| meet converted keys. */
int sl_policies_attach(struct sl_config *next, const struct sl_config *prev, uint64_t now_ns);

/* Drops |cfg|'s references and clears its state pointers. Call when the
 * snapshot is retired (no request uses it any more), before
 * sl_config_free(). */
void sl_policies_detach(struct sl_config *cfg);

#endif
