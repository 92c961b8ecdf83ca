/*
 * sluice — policy kind `concurrency`: at most `max` requests of a route in
 * flight (tunnels count until they close); low-priority routes get 80% of
 * it (sl_concurrency_limit).
 *
 *   routes:
 *     - name: connect
 *       concurrency: { max: 512, mode: shadow }   # max 1..10000000
 *
 * The counter is the route's slot of the policy set (keyed by the route
 * name: a reload with a new `max` keeps the in-flight count, and the new
 * limit applies to it), shared through state_of. Explaining, peek
 * answers whether a slot is free without taking one; deciding, it admits
 * and commit takes a slot or refuses (a CAS: exact however many workers
 * race), in kinds.def order, so before the breaker's commit as before;
 * rollback and the outcome report give it back. A refusal is 429
 * "concurrency_limited" with the reject config's minimum Retry-After; its
 * metric reason stays "concurrency". The data (struct sl_concurrency_cfg)
 * stays in the route, where the policy set finds the counter's identity.
 */
#include <stdio.h>
#include <string.h>

#include "sluice/admission.h"
#include "sluice/concurrency.h"
#include "sluice/hash.h"
#include "sluice/policy.h"
#include "sluice/policy_state.h"
#include "../config/config_print.h"
#include "../config/config_schema.h"

static const char *const KEYS[] = {"max", "mode", NULL};

static bool cc_parse(struct cfg_schema *s, const struct cfg_node *v, struct sl_policy_cfg *p) {
  if (!cs_want(s, v, CFG_MAP, "concurrency")) return false;
  struct sl_concurrency_cfg *cc = &s->route->concurrency;
  cs_check_keys(s, v, "concurrency", KEYS);
  if (cs_get_u32(s, v, "max", 1, 10000000, &cc->max) == 0) cs_err(s, v, "concurrency: missing 'max'");
  cs_get_mode(s, v, &cc->mode);
  p->mode = cc->mode;
  p->identity = cc->identity;
  p->data = cc;
  return cc->max != 0;
}

static void cc_print(FILE *out, int ind, const struct sl_policy_cfg *p) {
  const struct sl_concurrency_cfg *cc = p->data;
  cfg_print_indent(out, ind);
  fputs("concurrency:\n", out);
  cfg_print_kv_u64(out, ind + 2, "max", cc->max);
  cfg_print_kv_mode(out, ind + 2, cc->mode);
}

static uint64_t cc_tunables(const struct sl_policy_cfg *p) {
  const struct sl_concurrency_cfg *cc = p->data;
  return sl_hash_mix_u64(SL_HASH_SEED, cc->max);
}

static void *cc_state_of(const struct sl_policy_set *set, const struct sl_route_cfg *route,
                         const struct sl_policy_cfg *p) {
  (void)p;
  return sl_policy_state_concurrency(set->routes[route->index].concurrency);
}

static void refuse(struct sl_policy_result *r) {
  r->verdict = SL_VERDICT_REFUSE;
  r->status = 429;
  r->error = "concurrency_limited";
  r->retry = true; /* no wait known: the reject config's minimum */
}

static void cc_peek(const struct sl_policy_cfg *p, void *state, const struct sl_policy_ctx *c,
                    struct sl_policy_result *r) {
  const struct sl_concurrency_cfg *cc = p->data;
  if (!state) {
    r->verdict = SL_VERDICT_SKIP;
    return;
  }
  /* Deciding, the commit's CAS answers (the count may change before it
   * anyway, and it runs in this order, before the breaker's): a second
   * look here would only cost. Explaining, tell what a request meets. */
  if (!c->explain) return;
  uint32_t limit = sl_concurrency_limit(cc->max, c->route->priority);
  uint32_t now_in = sl_concurrency_in_flight(state);
  snprintf(r->why, sizeof(r->why), "%u in flight, limit %u for this priority", now_in, limit);
  if (now_in >= limit) refuse(r);
}

static bool cc_commit(const struct sl_policy_cfg *p, void *state, const struct sl_policy_ctx *c,
                      struct sl_policy_result *r, uint64_t *held) {
  const struct sl_concurrency_cfg *cc = p->data;
  (void)held; /* the slot is the state's: nothing else to note */
  if (!sl_concurrency_try_acquire(state, cc->max, c->route->priority)) {
    refuse(r);
    return false;
  }
  if (c->out) c->out->conc = state;
  return true;
}

static void cc_rollback(const struct sl_policy_cfg *p, void *state, const struct sl_policy_ctx *c,
                        uint64_t held) {
  (void)p, (void)held;
  sl_concurrency_release(state);
  if (c->out) c->out->conc = NULL;
}

static void cc_finish(const struct sl_policy_cfg *p, void *state, uint64_t held,
                      struct sl_admission *a, enum sl_outcome outcome, uint64_t latency_ns,
                      uint64_t now_ns) {
  (void)p, (void)held, (void)a, (void)outcome, (void)latency_ns, (void)now_ns;
  sl_concurrency_release(state);
}

const struct sl_kind sl_kind_concurrency = {
    .key = "concurrency",
    .reason = "concurrency",
    .reason_id = SL_REASON_CONCURRENCY,
    .stage = SL_STAGE_AFTER_LIMITS,
    .parse = cc_parse,
    .print = cc_print,
    .tunables = cc_tunables,
    .state_of = cc_state_of,
    .peek = cc_peek,
    .commit = cc_commit,
    .rollback = cc_rollback,
    .finish = cc_finish,
};
