/* Unit tests for policies/policy_state.c: state survives a reload when the
 * identity is unchanged, and only then. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "sluice/admission.h"
#include "sluice/breaker.h"
#include "sluice/concurrency.h"
#include "sluice/policy_state.h"
#include "sluice/ratelimit.h"

/* A hand-built snapshot: two routes with two rate limits each, one
 * upstream with a breaker. */
struct snap {
  struct sl_config cfg;
  struct sl_route_cfg routes[2];
  struct sl_rate_limit_cfg rl[2][2];
  struct sl_upstream_cfg up[1];
};

static void snap_init(struct snap *s, uint64_t id_base) {
  memset(s, 0, sizeof(*s));
  for (int r = 0; r < 2; r++) {
    for (int i = 0; i < 2; i++) {
      s->rl[r][i].rate.period_ns = 200000000;
      s->rl[r][i].burst = 10;
      s->rl[r][i].max_keys = 1000;
      s->rl[r][i].identity = id_base + (uint64_t)(r * 10 + i);
    }
    s->routes[r].rate_limits = s->rl[r];
    s->routes[r].n_rate_limits = 2;
    s->routes[r].concurrency.max = 10;
    s->routes[r].concurrency.identity = id_base + 100 + (uint64_t)r;
  }
  s->up[0].breaker.enabled = true;
  s->up[0].breaker.consecutive_failures = 1;
  s->up[0].breaker.open_for_ms = 1000;
  s->up[0].breaker.half_open_probes = 1;
  s->up[0].breaker.identity = id_base + 200;
  s->cfg.routes = s->routes;
  s->cfg.n_routes = 2;
  s->cfg.upstreams = s->up;
  s->cfg.n_upstreams = 1;
}

static void test_fresh_attach(void **st) {
  (void)st;
  struct snap a;
  snap_init(&a, 1000);
  assert_int_equal(sl_policies_attach(&a.cfg, NULL, 1000), 0);
  for (int r = 0; r < 2; r++) {
    for (int i = 0; i < 2; i++) {
      assert_non_null(sl_policy_state_ratelimit(a.rl[r][i].state));
      assert_int_equal(sl_policy_state_refs(a.rl[r][i].state), 1);
      assert_int_equal(sl_policy_state_identity(a.rl[r][i].state), a.rl[r][i].identity);
      assert_null(sl_policy_state_breaker(a.rl[r][i].state)); /* wrong kind */
    }
    assert_non_null(sl_policy_state_concurrency(a.routes[r].concurrency.state));
  }
  assert_non_null(sl_policy_state_breaker(a.up[0].breaker_state));
  assert_ptr_not_equal(a.rl[0][0].state, a.rl[0][1].state);
  sl_policies_detach(&a.cfg);
  assert_null(a.rl[0][0].state);
  assert_null(a.up[0].breaker_state);
}

static void test_reload_keeps_unchanged_state(void **st) {
  (void)st;
  struct snap a, b;
  snap_init(&a, 1000);
  snap_init(&b, 1000);
  b.rl[1][0].identity = 5555;            /* this policy changed */
  b.routes[0].concurrency.identity = 6666; /* and this counter */
  assert_int_equal(sl_policies_attach(&a.cfg, NULL, 1000), 0);

  /* Use the state: one limiter key exhausted, one request in flight, the
   * breaker opened. */
  struct sl_rl_verdict v;
  struct sl_ratelimit_table *t = sl_policy_state_ratelimit(a.rl[0][0].state);
  for (int i = 0; i < 10; i++) assert_true(sl_ratelimit_admit(t, "k", 1, 200000000, 10, 1000, &v));
  assert_false(sl_ratelimit_admit(t, "k", 1, 200000000, 10, 1000, &v));
  assert_true(sl_concurrency_try_acquire(sl_policy_state_concurrency(a.routes[1].concurrency.state), 10,
                                         SL_PRIORITY_NORMAL));
  struct sl_breaker *br = sl_policy_state_breaker(a.up[0].breaker_state);
  struct sl_breaker_verdict bv;
  assert_true(sl_breaker_admit(br, 1000, 0, &bv));
  sl_breaker_report(br, &bv, SL_OUTCOME_FAILURE, 0, 1000);
  assert_int_equal(sl_breaker_state(br), SL_BREAKER_OPEN);

  assert_int_equal(sl_policies_attach(&b.cfg, &a.cfg, 1000), 0);
  /* Same identity: same object, one more reference. */
  assert_ptr_equal(b.rl[0][0].state, a.rl[0][0].state);
  assert_int_equal(sl_policy_state_refs(b.rl[0][0].state), 2);
  assert_false(sl_ratelimit_peek(sl_policy_state_ratelimit(b.rl[0][0].state), "k", 1, 200000000, 10, 1000, &v));
  assert_ptr_equal(b.routes[1].concurrency.state, a.routes[1].concurrency.state);
  assert_int_equal(sl_concurrency_in_flight(sl_policy_state_concurrency(b.routes[1].concurrency.state)), 1);
  assert_ptr_equal(b.up[0].breaker_state, a.up[0].breaker_state);
  assert_int_equal(sl_breaker_state(sl_policy_state_breaker(b.up[0].breaker_state)), SL_BREAKER_OPEN);
  /* Changed identity: fresh state. */
  assert_ptr_not_equal(b.rl[1][0].state, a.rl[1][0].state);
  assert_int_equal(sl_policy_state_refs(b.rl[1][0].state), 1);
  assert_ptr_not_equal(b.routes[0].concurrency.state, a.routes[0].concurrency.state);

  /* Retiring the old snapshot leaves the new one's state alive. */
  sl_policies_detach(&a.cfg);
  assert_int_equal(sl_policy_state_refs(b.rl[0][0].state), 1);
  assert_false(sl_ratelimit_peek(sl_policy_state_ratelimit(b.rl[0][0].state), "k", 1, 200000000, 10, 1000, &v));
  sl_policies_detach(&b.cfg);
}

/* Two policies of the next snapshot with one identity do not share the
 * previous state; a policy without a rate gets no table. */
static void test_no_sharing_and_no_rate(void **st) {
  (void)st;
  struct snap a, b;
  snap_init(&a, 1000);
  snap_init(&b, 1000);
  b.rl[0][1].identity = b.rl[0][0].identity;
  b.rl[1][1].rate.period_ns = 0;
  b.rl[1][1].identity = 777;
  assert_int_equal(sl_policies_attach(&a.cfg, NULL, 1000), 0);
  assert_int_equal(sl_policies_attach(&b.cfg, &a.cfg, 1000), 0);
  assert_ptr_equal(b.rl[0][0].state, a.rl[0][0].state);
  assert_ptr_not_equal(b.rl[0][1].state, b.rl[0][0].state);
  assert_null(b.rl[1][1].state);
  /* An override with a rate is enough for a table. */
  struct sl_rate_override o = {.match = "hub", .rate = {.period_ns = 1000000}, .burst = 1};
  struct snap c;
  snap_init(&c, 1000);
  c.rl[1][1].rate.period_ns = 0;
  c.rl[1][1].overrides = &o;
  c.rl[1][1].n_overrides = 1;
  c.rl[1][1].identity = 888;
  assert_int_equal(sl_policies_attach(&c.cfg, &b.cfg, 1000), 0);
  assert_non_null(c.rl[1][1].state);
  sl_policies_detach(&a.cfg);
  sl_policies_detach(&b.cfg);
  sl_policies_detach(&c.cfg);
}

/* A reload that tightens a limit (same identity: rates and bursts are
 * tunables) keeps the table and converts each key: a key that had used its
 * burst is still refused under the new rate and burst, for a whole new
 * period; a key under an override converts with that override's rates. A
 * new concurrency max applies to the counter that holds the requests in
 * flight. */
static void test_reload_converts_tunables(void **st) {
  (void)st;
  struct snap a, b;
  snap_init(&a, 1000);
  snap_init(&b, 1000);
  const uint64_t now = 5000000000ull;
  struct sl_rate_override oa = {.match = "hub", .rate = {.period_ns = 10000000}, .burst = 4};
  struct sl_rate_override ob = {.match = "hub", .rate = {.period_ns = 100000000}, .burst = 8};
  a.rl[0][0].rate.period_ns = 100000000; /* 10/s burst 10 */
  a.rl[0][0].burst = 10;
  a.rl[0][0].overrides = &oa;
  a.rl[0][0].n_overrides = 1;
  b.rl[0][0].rate.period_ns = 1000000000; /* 1/s burst 5 */
  b.rl[0][0].burst = 5;
  b.rl[0][0].overrides = &ob;
  b.rl[0][0].n_overrides = 1;
  b.routes[1].concurrency.max = 2;
  assert_int_equal(sl_policies_attach(&a.cfg, NULL, now), 0);
  struct sl_ratelimit_table *t = sl_policy_state_ratelimit(a.rl[0][0].state);
  struct sl_rl_verdict v;
  struct sl_rl_ref k, hub;
  sl_ratelimit_locate(t, "k", 1, &k);
  sl_ratelimit_locate(t, "hub", 3, &hub);
  hub.cls = sl_admission_override_class(0);
  for (int i = 0; i < 10; i++) assert_true(sl_ratelimit_decide_ref(t, &k, 100000000, 10, now, true, &v));
  for (int i = 0; i < 4; i++) assert_true(sl_ratelimit_decide_ref(t, &hub, 10000000, 4, now, true, &v));
  struct sl_concurrency *cc = sl_policy_state_concurrency(a.routes[1].concurrency.state);
  for (int i = 0; i < 5; i++) assert_true(sl_concurrency_try_acquire(cc, 10, SL_PRIORITY_NORMAL));

  assert_int_equal(sl_policies_attach(&b.cfg, &a.cfg, now), 0);
  assert_ptr_equal(b.rl[0][0].state, a.rl[0][0].state);
  /* Exhausted: refused under 1/s burst 5 until one new period passed. */
  assert_false(sl_ratelimit_decide_ref(t, &k, 1000000000, 5, now, false, &v));
  assert_int_equal(v.retry_after_ns, 1000000000);
  /* A key never seen starts full under the new burst. */
  assert_true(sl_ratelimit_peek(t, "fresh", 5, 1000000000, 5, now, &v));
  assert_int_equal(v.remaining, 4);
  /* hub: 4 of 4 used at 100/s, so 4 of 8 at 10/s: 4 left. */
  assert_true(sl_ratelimit_decide_ref(t, &hub, 100000000, 8, now, false, &v));
  assert_int_equal(v.remaining, 3);
  /* Concurrency: the same counter, still 5 in flight, over the new max 2. */
  assert_ptr_equal(b.routes[1].concurrency.state, a.routes[1].concurrency.state);
  cc = sl_policy_state_concurrency(b.routes[1].concurrency.state);
  assert_int_equal(sl_concurrency_in_flight(cc), 5);
  assert_false(sl_concurrency_try_acquire(cc, b.routes[1].concurrency.max, SL_PRIORITY_NORMAL));
  for (int i = 0; i < 5; i++) sl_concurrency_release(cc);
  sl_policies_detach(&a.cfg);
  sl_policies_detach(&b.cfg);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fresh_attach),
      cmocka_unit_test(test_reload_keeps_unchanged_state),
      cmocka_unit_test(test_no_sharing_and_no_rate),
      cmocka_unit_test(test_reload_converts_tunables),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
