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
 *
 * Keyed (`key: device_id | device_class | client_ip`): at most `max` of
 * each key's requests and tunnels in flight, counted in a bounded table
 * (sluice/conc_table.h, `max_keys`, default 1000000) that is this
 * policy's state (state_new: carried by a reload with the same route,
 * key and max_keys; a tunnel admitted before it releases into the same
 * table, through the handle its commit noted in |held|). Same 429
 * "concurrency_limited"; a key that finds the table full is refused 503
 * "concurrency_table_full"; a request without the key is skipped,
 * refused 400 "missing_key" or counted under one shared key, as
 * `missing_key` says (the rate limits' rule, sl_admission_key).
 */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "sluice/admission.h"
#include "sluice/conc_table.h"
#include "sluice/concurrency.h"
#include "sluice/hash.h"
#include "sluice/policy.h"
#include "sluice/policy_state.h"
#include "../config/config_print.h"
#include "../config/config_schema.h"

static const char *const KEYS[] = {"max", "mode", "key", "missing_key", "max_keys", NULL};
/* In the order of enum sl_limit_key and enum sl_missing_key. */
static const char *const KEY_NAMES[] = {"client_ip", "device_class", "device_id", "route", NULL};
static const char *const MISSING[] = {"skip", "deny", "shared"}; /* printed */

/* key, missing_key, max_keys: what a keyed limit counts. */
static void cc_parse_key(struct cfg_schema *s, const struct cfg_node *v,
                         struct sl_concurrency_cfg *cc) {
  int key = SL_KEY_ROUTE;
  if (cs_get_enum(s, v, "key", KEY_NAMES, &key) < 0) return; /* reported; nothing to check it against */
  cc->key = (enum sl_limit_key)key;
  cs_get_missing_key(s, v, cc->key, &cc->missing_key);
  if (cs_get_u32(s, v, "max_keys", 1, 100000000, &cc->max_keys) > 0 &&
      cc->key == SL_KEY_ROUTE)
    cs_err(s, cfg_map_get(v, "max_keys", NULL),
           "max_keys: a limit keyed by route has one counter (set key: device_id, "
           "device_class or client_ip)");
  if (cc->key == SL_KEY_ROUTE) return; /* the route's counter: identity as before */
  uint64_t h = sl_hash_mix_u64(cc->identity, cc->key);
  cc->identity = sl_hash_mix_u64(h, cc->max_keys);
}

static bool cc_parse(struct cfg_schema *s, const struct cfg_node *v, struct sl_policy_cfg *p) {
  if (!cs_want(s, v, CFG_MAP, "concurrency")) return false;
  struct sl_concurrency_cfg *cc = &s->route->concurrency;
  cs_check_keys(s, v, "concurrency", KEYS);
  if (cs_get_u32(s, v, "max", 1, 10000000, &cc->max) == 0) cs_err(s, v, "concurrency: missing 'max'");
  cs_get_mode(s, v, &cc->mode);
  cc_parse_key(s, v, cc);
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
  if (cc->key != SL_KEY_ROUTE) {
    cfg_print_kv_raw(out, ind + 2, "key", KEY_NAMES[cc->key]);
    if (cc->missing_key) cfg_print_kv_raw(out, ind + 2, "missing_key", MISSING[cc->missing_key]);
    if (cc->max_keys) cfg_print_kv_u64(out, ind + 2, "max_keys", cc->max_keys);
  }
  cfg_print_kv_mode(out, ind + 2, cc->mode);
}

static uint64_t cc_tunables(const struct sl_policy_cfg *p) {
  const struct sl_concurrency_cfg *cc = p->data;
  uint64_t h = sl_hash_mix_u64(SL_HASH_SEED, cc->max);
  return sl_hash_mix_u64(h, cc->missing_key);
}

/* The keyed table, for every concurrency policy (a route-keyed one gets
 * the smallest table, unused: a kind's policies all have state or none).
 * Seeded from the process key and a counter: unpredictable outside the
 * process, distinct per table. */
static void *cc_state_new(const struct sl_policy_cfg *p) {
  const struct sl_concurrency_cfg *cc = p->data;
  static _Atomic uint64_t tables;
  uint64_t n = atomic_fetch_add(&tables, 1), h[2];
  sl_siphash128(sl_hash_process_key(), &n, sizeof(n), h);
  uint8_t seed[16];
  memcpy(seed, h, sizeof(seed));
  return sl_conc_table_new(cc->key == SL_KEY_ROUTE ? 1 : cc->max_keys, seed);
}

static void cc_state_del(void *state) { sl_conc_table_del(state); }

/* Route-keyed: the set's counter of the route; keyed: the table. */
static void *cc_state_of(const struct sl_policy_set *set, const struct sl_route_cfg *route,
                         const struct sl_policy_cfg *p) {
  const struct sl_concurrency_cfg *cc = p->data;
  const struct sl_route_state *rs = &set->routes[route->index];
  if (cc->key == SL_KEY_ROUTE) return sl_policy_state_concurrency(rs->concurrency);
  return sl_policy_state_kind_data(rs->kinds[p - route->policies], p->kind);
}

static void refuse(struct sl_policy_result *r, uint16_t status, const char *error, bool retry) {
  r->verdict = SL_VERDICT_REFUSE;
  r->status = status;
  r->error = error;
  r->retry = retry; /* no wait known: the reject config's minimum */
}

/* Keyed: the request's key (0: it has none, and missing_key says skip or
 * deny). */
static size_t key_of(const struct sl_concurrency_cfg *cc, const struct sl_policy_ctx *c,
                     const uint8_t **key) {
  return sl_admission_key(cc->key, cc->missing_key, c->route, c->id, key);
}

static void keyed_peek(const struct sl_concurrency_cfg *cc, const struct sl_conc_table *t,
                       const struct sl_policy_ctx *c, struct sl_policy_result *r) {
  const uint8_t *key;
  size_t len = key_of(cc, c, &key);
  if (!len) {
    if (cc->missing_key == SL_MISSING_DENY) {
      if (c->explain) snprintf(r->why, sizeof(r->why), "the request carries no %s (missing_key: deny)",
                               KEY_NAMES[cc->key]);
      refuse(r, 400, "missing_key", false);
    } else {
      r->verdict = SL_VERDICT_SKIP;
      if (c->explain) snprintf(r->why, sizeof(r->why), "request carries no %s", KEY_NAMES[cc->key]);
    }
    return;
  }
  if (!c->explain) return; /* the commit decides, as for the route's counter */
  uint32_t limit = sl_concurrency_limit(cc->max, c->route->priority);
  uint32_t now_in = sl_conc_table_count(t, key, len);
  snprintf(r->why, sizeof(r->why), "%u in flight for this %s, limit %u for this priority (%u of %u keys in flight)",
           now_in, KEY_NAMES[cc->key], limit, sl_conc_table_keys(t), sl_conc_table_max_keys(t));
  if (now_in >= limit) refuse(r, 429, "concurrency_limited", true);
  else if (!now_in && sl_conc_table_keys(t) >= sl_conc_table_max_keys(t))
    refuse(r, 503, "concurrency_table_full", true);
}

static void cc_peek(const struct sl_policy_cfg *p, void *state, const struct sl_policy_ctx *c,
                    struct sl_policy_result *r) {
  const struct sl_concurrency_cfg *cc = p->data;
  if (!state) {
    r->verdict = SL_VERDICT_SKIP;
    return;
  }
  if (cc->key != SL_KEY_ROUTE) {
    keyed_peek(cc, state, c, r);
    return;
  }
  /* Deciding, the commit's CAS answers (the count may change before it
   * anyway, and it runs in this order, before the breaker's): a second
   * look here would only cost. Explaining, tell what a request meets. */
  if (!c->explain) return;
  uint32_t limit = sl_concurrency_limit(cc->max, c->route->priority);
  uint32_t now_in = sl_concurrency_in_flight(state);
  snprintf(r->why, sizeof(r->why), "%u in flight, limit %u for this priority", now_in, limit);
  if (now_in >= limit) refuse(r, 429, "concurrency_limited", true);
}

static bool cc_commit(const struct sl_policy_cfg *p, void *state, const struct sl_policy_ctx *c,
                      struct sl_policy_result *r, uint64_t *held) {
  const struct sl_concurrency_cfg *cc = p->data;
  uint32_t limit = sl_concurrency_limit(cc->max, c->route->priority);
  if (cc->key != SL_KEY_ROUTE) {
    /* |held|: the key's entry, released by finish or rollback. */
    const uint8_t *key;
    size_t len = key_of(cc, c, &key); /* not 0: the peek skipped or refused those */
    enum sl_conc_result res = sl_conc_table_acquire(state, key, len, limit, held);
    if (res == SL_CONC_TAKEN) return true;
    if (res == SL_CONC_LIMITED) refuse(r, 429, "concurrency_limited", true);
    else refuse(r, 503, "concurrency_table_full", true);
    return false;
  }
  if (!sl_concurrency_try_acquire(state, cc->max, c->route->priority)) {
    refuse(r, 429, "concurrency_limited", true);
    return false;
  }
  if (c->out) c->out->conc = state;
  return true;
}

static void release(const struct sl_concurrency_cfg *cc, void *state, uint64_t held) {
  if (cc->key != SL_KEY_ROUTE)
    sl_conc_table_release(state, held);
  else
    sl_concurrency_release(state);
}

static void cc_rollback(const struct sl_policy_cfg *p, void *state, const struct sl_policy_ctx *c,
                        uint64_t held) {
  release(p->data, state, held);
  if (c->out) c->out->conc = NULL;
}

static void cc_finish(const struct sl_policy_cfg *p, void *state, uint64_t held,
                      struct sl_admission *a, enum sl_outcome outcome, uint64_t latency_ns,
                      uint64_t now_ns) {
  (void)a, (void)outcome, (void)latency_ns, (void)now_ns;
  release(p->data, state, held);
}

const struct sl_kind sl_kind_concurrency = {
    .key = "concurrency",
    .reason = "concurrency",
    .reason_id = SL_REASON_CONCURRENCY,
    .stage = SL_STAGE_AFTER_LIMITS,
    .parse = cc_parse,
    .print = cc_print,
    .tunables = cc_tunables,
    .state_new = cc_state_new,
    .state_del = cc_state_del,
    .state_of = cc_state_of,
    .peek = cc_peek,
    .commit = cc_commit,
    .rollback = cc_rollback,
    .finish = cc_finish,
};
