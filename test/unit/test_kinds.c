/* Unit tests for the built-in kinds in the kind shape:
 * policies/kinds/route_concurrency.c and policies/kinds/upstream_breaker.c
 * (their place among a route's policies, the breaker's lack of a route
 * key, and their commit/rollback through the engine). The verdicts
 * themselves are pinned by test_admission.c and test_explain.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <unistd.h>

#include "sluice/admission.h"
#include "sluice/breaker.h"
#include "sluice/concurrency.h"
#include "sluice/config.h"
#include "sluice/policy.h"
#include "sluice/policy_state.h"
#include "../../policies/engine.h"
#include "yaml_fixture.h"

#define SEC 1000000000ull
#define T0 (1000 * SEC)

/* An upstream whose breaker opens at the first failure, for 5 s, then
 * lets one probe through; one without a breaker. */
static const char HEAD[] =
    "reject:\n"
    "  retry_after: { min: 2s, max: 60s, jitter: 0 }\n"
    "listeners: [ { name: edge, address: \"127.0.0.1:18090\" } ]\n"
    "upstreams:\n"
    "  plain: { address: \"127.0.0.1:18092\" }\n"
    "  app:\n"
    "    address: \"127.0.0.1:18091\"\n"
    "    circuit_breaker: { consecutive_failures: 1, open_for: 5s, half_open_probes: 1 }\n";

static const char CFG[] =
    "routes:\n"
    "  - name: devices\n"
    "    upstream: app\n"
    "    concurrency: { max: 1 }\n"
    "    require_header: { name: x-k, values: [v] }\n"
    "  - name: plain\n"
    "    upstream: plain\n";

/* A route's policies run in SPEC order: require_header before the rate
 * limits, then concurrency, then the upstream's breaker (implied by the
 * upstream, named after it); a route with neither has none. */
static void test_route_policies_in_order(void **st) {
  (void)st;
  struct sl_config *cfg = yaml_load_ok(HEAD, CFG);
  const struct sl_route_cfg *r = &cfg->routes[0];
  assert_int_equal(r->n_policies, 3);
  assert_string_equal(r->policies[0].name, "devices/require_header");
  assert_int_equal(r->policies[0].kind->stage, SL_STAGE_BEFORE_LIMITS);
  assert_string_equal(r->policies[1].name, "devices/concurrency");
  assert_ptr_equal(r->policies[1].kind, sl_policy_kind_find("concurrency"));
  assert_int_equal(r->policies[1].kind->stage, SL_STAGE_AFTER_LIMITS);
  assert_string_equal(r->policies[2].name, "upstream/app");
  assert_string_equal(r->policies[2].kind->key, "breaker");
  assert_int_equal(sl_engine_reason(&r->policies[1]), SL_REASON_CONCURRENCY);
  assert_int_equal(sl_engine_reason(&r->policies[2]), SL_REASON_BREAKER);
  assert_string_equal(sl_reject_reason_name(sl_engine_reason(&r->policies[2])), "breaker");
  assert_int_equal(cfg->routes[1].n_policies, 0);
  assert_int_equal(cfg->routes[1].concurrency.max, 0);
  sl_config_free(cfg);
}

/* The breaker is configured with its upstream: `breaker` is no route key. */
static void test_breaker_is_no_route_key(void **st) {
  (void)st;
  struct sl_config_errors errs = {0};
  struct sl_config *cfg = yaml_load(HEAD,
                                    "routes:\n"
                                    "  - name: r\n"
                                    "    upstream: app\n"
                                    "    breaker: {}\n",
                                    &errs);
  assert_null(cfg);
  assert_int_equal(errs.n, 1);
  assert_non_null(strstr(errs.items[0].message, "unknown key 'breaker' in route"));
  sl_config_errors_free(&errs);
}

/* Peek promises a slot; another worker takes it before commit: the
 * commit refuses (429, the reject minimum as Retry-After) and nothing is
 * held; with the slot free, commit takes it and the breaker's ticket, and
 * a rollback gives both back. */
static void test_commit_race_and_rollback(void **st) {
  (void)st;
  struct sl_config *cfg = yaml_load_ok(HEAD, CFG);
  struct sl_policy_set *ps = sl_policy_set_new(cfg, NULL, 0);
  assert_non_null(ps);
  const struct sl_route_cfg *r = &cfg->routes[0];
  void *const *states = sl_policy_set_kinds(ps, r);
  struct sl_concurrency *cc = sl_policy_state_concurrency(sl_policy_set_concurrency(ps, r));
  struct sl_breaker *br = sl_policy_state_breaker(sl_policy_set_breaker(ps, r->upstream));
  assert_ptr_equal(states[1], cc);
  assert_ptr_equal(states[2], br);
  const struct sl_policy_cfg *late = &r->policies[1];

  struct sl_admission out;
  memset(&out, 0, sizeof(out));
  out.admit = true;
  struct sl_policy_ctx c = {.cfg = cfg, .route = r, .now_ns = T0, .out = &out};
  struct sl_engine_run run = {0};
  assert_int_equal(sl_engine_peek(&run, late, 2, states + 1, &c, &out, NULL, NULL, NULL),
                   SL_VERDICT_ADMIT);
  assert_true(sl_concurrency_try_acquire(cc, 1, SL_PRIORITY_NORMAL)); /* the race */
  assert_int_equal(sl_engine_commit(&run, late, 2, states + 1, &c, &out), SL_VERDICT_REFUSE);
  assert_false(out.admit);
  assert_int_equal(out.status, 429);
  assert_string_equal(out.error, "concurrency_limited");
  assert_int_equal(out.reason, SL_REASON_CONCURRENCY);
  assert_string_equal(out.policy, "devices/concurrency");
  assert_int_equal(out.retry_after_s, 2);
  assert_int_equal(out.n_held, 0);
  assert_null(out.conc);
  assert_null(out.breaker);
  sl_concurrency_release(cc);

  /* Trip the breaker, let it half-open: one probe ticket. */
  struct sl_breaker_verdict bv;
  assert_true(sl_breaker_admit(br, T0, 0, &bv));
  sl_breaker_report(br, &bv, SL_OUTCOME_FAILURE, 0, T0);
  assert_int_equal(sl_breaker_state(br), SL_BREAKER_OPEN);
  c.now_ns = T0 + 6 * SEC;
  for (int i = 0; i < 2; i++) { /* the second time, the ticket was given back */
    memset(&out, 0, sizeof(out));
    out.admit = true;
    run = (struct sl_engine_run){0};
    assert_int_equal(sl_engine_run(&run, late, 2, states + 1, &c, &out, NULL, NULL, NULL),
                     SL_VERDICT_ADMIT);
    assert_int_equal(out.n_held, 2);
    assert_ptr_equal(out.conc, cc);
    assert_ptr_equal(out.breaker, br);
    assert_true(out.breaker_verdict.probe);
    assert_int_equal(sl_concurrency_in_flight(cc), 1);
    sl_engine_rollback(&run, &c, &out);
    assert_int_equal(out.n_held, 0);
    assert_null(out.conc);
    assert_null(out.breaker);
    assert_int_equal(sl_concurrency_in_flight(cc), 0);
    assert_int_equal(sl_breaker_state(br), SL_BREAKER_HALF_OPEN);
  }
  sl_policy_set_del(ps);
  sl_config_free(cfg);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_route_policies_in_order),
      cmocka_unit_test(test_breaker_is_no_route_key),
      cmocka_unit_test(test_commit_race_and_rollback),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
