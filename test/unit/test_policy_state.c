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
#include "sluice/policy.h"
#include "sluice/policy_state.h"
#include "sluice/ratelimit.h"

/* A hand-built snapshot: two routes with two rate limits each, one
 * upstream with a breaker. */
struct snap {
  struct sl_config cfg;
  struct sl_policy_set *ps; /* its policies' state */
  struct sl_route_cfg routes[2];
  struct sl_rate_limit_cfg rl[2][2];
  struct sl_upstream_cfg up[1];
};

/* The state of a snapshot's policies. */
#define RL(s, r, i) sl_policy_set_rate_limit((s).ps, &(s).routes[r], (i))
#define CC(s, r) sl_policy_set_concurrency((s).ps, &(s).routes[r])
#define BR(s) sl_policy_set_breaker((s).ps, &(s).up[0])

static void snap_init(struct snap *s, uint64_t id_base) {
  memset(s, 0, sizeof(*s));
  for (int r = 0; r < 2; r++) {
    for (int i = 0; i < 2; i++) {
      s->rl[r][i].rate.period_ns = 200000000;
      s->rl[r][i].burst = 10;
      s->rl[r][i].max_keys = 1000;
      s->rl[r][i].identity = id_base + (uint64_t)(r * 10 + i);
    }
    s->routes[r].index = (size_t)r;
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
  assert_non_null(a.ps = sl_policy_set_new(&a.cfg, NULL, 1000));
  for (int r = 0; r < 2; r++) {
    for (int i = 0; i < 2; i++) {
      assert_non_null(sl_policy_state_ratelimit(RL(a, r, i)));
      assert_int_equal(sl_policy_state_refs(RL(a, r, i)), 1);
      assert_int_equal(sl_policy_state_identity(RL(a, r, i)), a.rl[r][i].identity);
      assert_null(sl_policy_state_breaker(RL(a, r, i))); /* wrong kind */
    }
    assert_non_null(sl_policy_state_concurrency(CC(a, r)));
  }
  assert_non_null(sl_policy_state_breaker(BR(a)));
  assert_ptr_not_equal(RL(a, 0, 0), RL(a, 0, 1));
  /* Deleting the set drops its references. */
  struct sl_policy_state *rl = sl_policy_state_ref(RL(a, 0, 0)), *br = sl_policy_state_ref(BR(a));
  assert_int_equal(sl_policy_state_refs(rl), 2);
  sl_policy_set_del(a.ps);
  assert_int_equal(sl_policy_state_refs(rl), 1);
  assert_int_equal(sl_policy_state_refs(br), 1);
  sl_policy_state_unref(rl);
  sl_policy_state_unref(br);
}

static void test_reload_keeps_unchanged_state(void **st) {
  (void)st;
  struct snap a, b;
  snap_init(&a, 1000);
  snap_init(&b, 1000);
  b.rl[1][0].identity = 5555;            /* this policy changed */
  b.routes[0].concurrency.identity = 6666; /* and this counter */
  assert_non_null(a.ps = sl_policy_set_new(&a.cfg, NULL, 1000));

  /* Use the state: one limiter key exhausted, one request in flight, the
   * breaker opened. */
  struct sl_rl_verdict v;
  struct sl_ratelimit_table *t = sl_policy_state_ratelimit(RL(a, 0, 0));
  for (int i = 0; i < 10; i++) assert_true(sl_ratelimit_admit(t, "k", 1, 200000000, 10, 1000, &v));
  assert_false(sl_ratelimit_admit(t, "k", 1, 200000000, 10, 1000, &v));
  assert_true(sl_concurrency_try_acquire(sl_policy_state_concurrency(CC(a, 1)), 10,
                                         SL_PRIORITY_NORMAL));
  struct sl_breaker *br = sl_policy_state_breaker(BR(a));
  struct sl_breaker_verdict bv;
  assert_true(sl_breaker_admit(br, 1000, 0, &bv));
  sl_breaker_report(br, &bv, SL_OUTCOME_FAILURE, 0, 1000);
  assert_int_equal(sl_breaker_state(br), SL_BREAKER_OPEN);

  assert_non_null(b.ps = sl_policy_set_new(&b.cfg, a.ps, 1000));
  /* Same identity: same object, one more reference. */
  assert_ptr_equal(RL(b, 0, 0), RL(a, 0, 0));
  assert_int_equal(sl_policy_state_refs(RL(b, 0, 0)), 2);
  assert_false(sl_ratelimit_peek(sl_policy_state_ratelimit(RL(b, 0, 0)), "k", 1, 200000000, 10, 1000, &v));
  assert_ptr_equal(CC(b, 1), CC(a, 1));
  assert_int_equal(sl_concurrency_in_flight(sl_policy_state_concurrency(CC(b, 1))), 1);
  assert_ptr_equal(BR(b), BR(a));
  assert_int_equal(sl_breaker_state(sl_policy_state_breaker(BR(b))), SL_BREAKER_OPEN);
  /* Changed identity: fresh state. */
  assert_ptr_not_equal(RL(b, 1, 0), RL(a, 1, 0));
  assert_int_equal(sl_policy_state_refs(RL(b, 1, 0)), 1);
  assert_ptr_not_equal(CC(b, 0), CC(a, 0));

  /* Retiring the old snapshot leaves the new one's state alive. */
  sl_policy_set_del(a.ps);
  assert_int_equal(sl_policy_state_refs(RL(b, 0, 0)), 1);
  assert_false(sl_ratelimit_peek(sl_policy_state_ratelimit(RL(b, 0, 0)), "k", 1, 200000000, 10, 1000, &v));
  sl_policy_set_del(b.ps);
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
  assert_non_null(a.ps = sl_policy_set_new(&a.cfg, NULL, 1000));
  assert_non_null(b.ps = sl_policy_set_new(&b.cfg, a.ps, 1000));
  assert_ptr_equal(RL(b, 0, 0), RL(a, 0, 0));
  assert_ptr_not_equal(RL(b, 0, 1), RL(b, 0, 0));
  assert_null(RL(b, 1, 1));
  /* An override with a rate is enough for a table. */
  struct sl_rate_override o = {.match = "hub", .rate = {.period_ns = 1000000}, .burst = 1};
  struct snap c;
  snap_init(&c, 1000);
  c.rl[1][1].rate.period_ns = 0;
  c.rl[1][1].overrides = &o;
  c.rl[1][1].n_overrides = 1;
  c.rl[1][1].identity = 888;
  assert_non_null(c.ps = sl_policy_set_new(&c.cfg, b.ps, 1000));
  assert_non_null(RL(c, 1, 1));
  sl_policy_set_del(a.ps);
  sl_policy_set_del(b.ps);
  sl_policy_set_del(c.ps);
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
  assert_non_null(a.ps = sl_policy_set_new(&a.cfg, NULL, now));
  struct sl_ratelimit_table *t = sl_policy_state_ratelimit(RL(a, 0, 0));
  struct sl_rl_verdict v;
  struct sl_rl_ref k, hub;
  sl_ratelimit_locate(t, "k", 1, &k);
  sl_ratelimit_locate(t, "hub", 3, &hub);
  hub.cls = sl_admission_override_class(0);
  for (int i = 0; i < 10; i++) assert_true(sl_ratelimit_decide_ref(t, &k, 100000000, 10, now, true, &v));
  for (int i = 0; i < 4; i++) assert_true(sl_ratelimit_decide_ref(t, &hub, 10000000, 4, now, true, &v));
  struct sl_concurrency *cc = sl_policy_state_concurrency(CC(a, 1));
  for (int i = 0; i < 5; i++) assert_true(sl_concurrency_try_acquire(cc, 10, SL_PRIORITY_NORMAL));

  assert_non_null(b.ps = sl_policy_set_new(&b.cfg, a.ps, now));
  assert_ptr_equal(RL(b, 0, 0), RL(a, 0, 0));
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
  assert_ptr_equal(CC(b, 1), CC(a, 1));
  cc = sl_policy_state_concurrency(CC(b, 1));
  assert_int_equal(sl_concurrency_in_flight(cc), 5);
  assert_false(sl_concurrency_try_acquire(cc, b.routes[1].concurrency.max, SL_PRIORITY_NORMAL));
  for (int i = 0; i < 5; i++) sl_concurrency_release(cc);
  sl_policy_set_del(a.ps);
  sl_policy_set_del(b.ps);
}

/* A registered kind with state (sluice/policy.h): the set makes it with
 * state_new, carries it by kind and identity (state_carry sees both
 * configurations), hands it to the engine, and frees it with state_del
 * when the last set holding it goes. */
static int kind_news, kind_carries, kind_dels;

static void *kind_new(const struct sl_policy_cfg *p) {
  (void)p;
  kind_news++;
  return calloc(1, sizeof(int));
}
static void kind_carry(void *state, const struct sl_policy_cfg *from, const struct sl_policy_cfg *to,
                       uint64_t now_ns) {
  assert_ptr_not_equal(from, to);
  assert_int_equal(now_ns, 1000);
  (*(int *)state)++;
  kind_carries++;
}
static void kind_del(void *state) {
  kind_dels++;
  free(state);
}
static void kind_peek(const struct sl_policy_cfg *p, void *state, const struct sl_policy_ctx *c,
                      struct sl_policy_result *r) {
  (void)p, (void)state, (void)c;
  r->verdict = SL_VERDICT_ADMIT;
}
static const struct sl_kind NOT_STATEFUL = {.key = "other", .peek = kind_peek};
static const struct sl_kind STATEFUL = {.key = "stateful", .reason = "stateful",
                                        .state_new = kind_new, .state_carry = kind_carry,
                                        .state_del = kind_del, .peek = kind_peek};

static void test_kind_state(void **st) {
  (void)st;
  struct snap a, b, c;
  struct sl_policy_cfg pa = {.kind = &STATEFUL, .name = "r0/stateful", .identity = 42};
  struct sl_policy_cfg pb = pa, pc = pa;
  pc.identity = 43;
  snap_init(&a, 1000);
  snap_init(&b, 1000);
  snap_init(&c, 1000);
  a.routes[0].policies = &pa;
  b.routes[0].policies = &pb;
  c.routes[0].policies = &pc;
  a.routes[0].n_policies = b.routes[0].n_policies = c.routes[0].n_policies = 1;
  assert_non_null(a.ps = sl_policy_set_new(&a.cfg, NULL, 1000));
  assert_int_equal(kind_news, 1);
  void *const *da = sl_policy_set_kinds(a.ps, &a.routes[0]);
  assert_non_null(da);
  assert_null(sl_policy_set_kinds(a.ps, &a.routes[1])); /* no stateful policy there */
  struct sl_policy_state *sa = a.ps->routes[0].kinds[0];
  assert_ptr_equal(sl_policy_state_kind_data(sa, &STATEFUL), da[0]);
  assert_null(sl_policy_state_kind_data(sa, &NOT_STATEFUL));
  assert_int_equal(sl_policy_state_kind(sa), SL_POLICY_KIND);
  assert_null(sl_policy_state_ratelimit(sa));
  /* Same identity: carried and converted. */
  assert_non_null(b.ps = sl_policy_set_new(&b.cfg, a.ps, 1000));
  assert_int_equal(kind_news, 1);
  assert_int_equal(kind_carries, 1);
  assert_ptr_equal(b.ps->routes[0].kinds[0], sa);
  assert_ptr_equal(sl_policy_set_kinds(b.ps, &b.routes[0])[0], da[0]);
  assert_int_equal(*(int *)da[0], 1);
  /* Another identity: fresh. */
  assert_non_null(c.ps = sl_policy_set_new(&c.cfg, b.ps, 1000));
  assert_int_equal(kind_news, 2);
  assert_ptr_not_equal(c.ps->routes[0].kinds[0], sa);
  sl_policy_set_del(a.ps);
  assert_int_equal(kind_dels, 0);
  sl_policy_set_del(b.ps);
  assert_int_equal(kind_dels, 1);
  sl_policy_set_del(c.ps);
  assert_int_equal(kind_dels, 2);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fresh_attach),
      cmocka_unit_test(test_reload_keeps_unchanged_state),
      cmocka_unit_test(test_no_sharing_and_no_rate),
      cmocka_unit_test(test_reload_converts_tunables),
      cmocka_unit_test(test_kind_state),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
