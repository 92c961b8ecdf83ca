/*
 * sluice — the admission pipeline (pure): one request's facts and the
 * time in, one verdict out. SPEC section 4 "Admission order":
 *
 *   maintenance -> blocklist -> route rate limits -> concurrency -> circuit breaker -> shaping
 *
 * Before all of them, the first matching `allow` rule (sluice/allow.h)
 * says which of them this request skips.
 * (connection-rate is checked at accept, before any of this). The first
 * enforcing policy that refuses decides; a policy in shadow mode (its own
 * `mode: shadow` or the global one) records what it would have done and
 * lets the request on. A refused request consumes no quota.
 *
 * Resources: an admitted verdict may hold a concurrency slot and a breaker
 * ticket. The caller must call sl_admission_finish() exactly once when the
 * exchange ends (tunnels: when they close), with the outcome.
 */
#ifndef SLUICE_ADMISSION_H
#define SLUICE_ADMISSION_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "sluice/breaker-t.h"
#include "sluice/config-t.h"
#include "sluice/global-t.h"
#include "sluice/identify-t.h"
#include "sluice/route.h"

struct sl_blocklist;
struct sl_concurrency;
struct sl_breaker;
struct sl_policy_set;
struct sl_reject_extra;

enum sl_reject_reason {
  SL_REASON_NONE = 0,
  SL_REASON_RATE_LIMIT,
  SL_REASON_CONCURRENCY,
  SL_REASON_BLOCKLIST,
  SL_REASON_BREAKER,
  SL_REASON_QUEUE_FULL,
  SL_REASON_CONNECT_RATE,
  SL_REASON_SHAPING,
  SL_REASON__COUNT
};

/* "rate_limit", "concurrency", ... (the metric label). */
const char *sl_reject_reason_name(enum sl_reject_reason r);

struct sl_admission_input {
  const struct sl_config *cfg;
  const struct sl_policy_set *policies; /* the state of |cfg|'s policies */
  const struct sl_route_cfg *route;
  const struct sl_identity *id;
  const struct sl_blocklist *blocklist; /* compiled for |cfg|; NULL: none */
  const struct sl_request_facts *facts; /* for shaping matches */
  uint64_t now_ns;   /* monotonic clock (limiters, breaker) */
  int64_t now_unix;  /* wall clock (blocklist `expires`) */
  uint64_t rnd;      /* uniformly random (retry-after jitter, ramps) */
  FILE *trace;       /* explain: one JSON object per policy, or NULL */
  /* The worker's lease store of `scope: global` limits (proxy/global/);
   * NULL off the workers (/explain): such limits are then previewed from
   * the configuration (the replica's fallback share). */
  const struct sl_global_port *global;
};

#define SL_ADMISSION_MAX_SHADOW 4
/* Policies of registered kinds (sluice/policy.h) a request may hold
 * something of between commit and sl_admission_finish(). */
#define SL_ADMISSION_MAX_HELD 8
#define SL_POLICY_NAME_MAX 96

struct sl_admission_shadow {
  enum sl_reject_reason reason;
  char policy[SL_POLICY_NAME_MAX];
};

struct sl_admission_hold {
  const struct sl_policy_cfg *policy;
  void *state;
  uint64_t held; /* what its commit noted */
};

struct sl_admission {
  bool admit;
  /* When refused: */
  uint16_t status;
  enum sl_reject_reason reason;
  const char *error; /* JSON "error": "rate_limited", "blocked", ... */
  char policy[SL_POLICY_NAME_MAX];
  uint32_t retry_after_s;
  const struct sl_block_entry *block; /* blocklist refusals */
  const struct sl_reject_extra *extra; /* extra body fields and headers (sluice/retry.h) */
  /* Shadow refusals (counted and logged by the caller). */
  struct sl_admission_shadow shadow[SL_ADMISSION_MAX_SHADOW];
  unsigned n_shadow;
  /* The firmware header was absent or unparseable (counted by the caller:
   * SPEC section 4 wants unknown firmware visible). */
  bool firmware_unknown;
  /* Shaping for an admitted request. |paced|: the rule whose `bandwidth`
   * paces the exchange (proxy/core/pace.h), NULL: none; it belongs to the
   * configuration decided with. */
  uint64_t delay_ms;
  const struct sl_shaping_rule *paced;
  /* The `allow` rule that exempts this request (sluice/allow.h; NULL:
   * none) and what it skips (SL_SKIP_*, config-t.h; 0 without a rule),
   * whether or not the request was then admitted. */
  const struct sl_allow_rule *allow;
  uint64_t skip;
  /* Held while admitted; released by sl_admission_finish(). |conc|: the
   * route's concurrency slot, also in held[] (the concurrency kind's). */
  struct sl_concurrency *conc;
  struct sl_breaker *breaker;
  struct sl_breaker_verdict breaker_verdict;
  bool finished;
  /* Committed policies of registered kinds, for rollback and finish;
   * held[n_held..] is not cleared by sl_admission_decide(). */
  unsigned n_held;
  struct sl_admission_hold held[SL_ADMISSION_MAX_HELD];
};

void sl_admission_decide(const struct sl_admission_input *in, struct sl_admission *out);

/* The exchange ended: release the concurrency slot, tell the breaker how
 * it went, and give every committed policy of a registered kind its
 * outcome report (sl_kind.finish). Idempotent. */
void sl_admission_finish(struct sl_admission *a, enum sl_outcome outcome, uint64_t latency_ns,
                         uint64_t now_ns);

/* The rate-limit key of |rl| for |id|: points |*key| at it (a slice of
 * |id| or of the route; every byte counts, however long) and returns its
 * length, or 0 when the request carries no such key (e.g. no device class
 * header), in which case the policy does not apply. */
size_t sl_admission_limit_key(const struct sl_rate_limit_cfg *rl, const struct sl_route_cfg *route,
                              const struct sl_identity *id, const uint8_t **key);
/* The same for any policy keyed by |which| whose keyless requests are
 * |missing| (a keyed concurrency limit): `shared` gives them one key. */
size_t sl_admission_key(enum sl_limit_key which, enum sl_missing_key missing,
                        const struct sl_route_cfg *route, const struct sl_identity *id,
                        const uint8_t **key);

/* The limiter parameter class of override |i| of a rate limit (see
 * sl_rl_ref.cls): 1 + i, the last overrides sharing SL_RL_CLASS_MAX. */
uint8_t sl_admission_override_class(size_t i);

#endif
