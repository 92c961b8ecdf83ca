/* Unit tests for policies/breaker.c, on a fake clock. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <cmocka.h>

#include "sluice/breaker.h"

#define MS 1000000ull
#define SEC 1000000000ull

static struct sl_breaker_cfg base_cfg(void) {
  struct sl_breaker_cfg c;
  memset(&c, 0, sizeof(c));
  c.enabled = true;
  c.consecutive_failures = 5;
  c.failure_ratio = 0;
  c.window_ms = 10000;
  c.min_requests = 10;
  c.slow_call_ms = 0;
  c.open_for_ms = 5000;
  c.half_open_probes = 2;
  c.recovery_ramp_ms = 0;
  return c;
}

static uint64_t rng = 0x2545F4914F6CDD1Dull;
static uint64_t rnd(void) {
  rng ^= rng >> 12;
  rng ^= rng << 25;
  rng ^= rng >> 27;
  return rng * 0x2545F4914F6CDD1Dull;
}

/* Admits one request and reports |o| right away. */
static bool call(struct sl_breaker *b, uint64_t now, enum sl_outcome o, uint64_t latency) {
  struct sl_breaker_verdict v;
  if (!sl_breaker_admit(b, now, rnd(), &v)) return false;
  sl_breaker_report(b, &v, o, latency, now + latency);
  return true;
}

static void test_consecutive_failures(void **st) {
  (void)st;
  struct sl_breaker_cfg c = base_cfg();
  struct sl_breaker *b = sl_breaker_new(&c);
  uint64_t now = 100 * SEC;
  for (int i = 0; i < 4; i++) assert_true(call(b, now, SL_OUTCOME_FAILURE, 0));
  assert_true(call(b, now, SL_OUTCOME_SUCCESS, 0)); /* resets the run */
  for (int i = 0; i < 4; i++) assert_true(call(b, now, SL_OUTCOME_FAILURE, 0));
  assert_int_equal(sl_breaker_state(b), SL_BREAKER_CLOSED);
  assert_true(call(b, now, SL_OUTCOME_FAILURE, 0));
  assert_int_equal(sl_breaker_state(b), SL_BREAKER_OPEN);
  struct sl_breaker_verdict v;
  assert_false(sl_breaker_admit(b, now + SEC, 0, &v));
  assert_int_equal(v.state, SL_BREAKER_OPEN);
  assert_int_equal(v.retry_after_ns, 4 * SEC);
  struct sl_breaker_snapshot s;
  sl_breaker_snapshot(b, now + SEC, &s);
  assert_int_equal(s.opened_total, 1);
  assert_int_equal(s.open_remaining_ns, 4 * SEC);
  sl_breaker_del(b);
}

static void test_failure_ratio_window(void **st) {
  (void)st;
  struct sl_breaker_cfg c = base_cfg();
  c.consecutive_failures = 0;
  c.failure_ratio = 0.5;
  c.min_requests = 20;
  struct sl_breaker *b = sl_breaker_new(&c);
  uint64_t now = 100 * SEC;
  /* Below min_requests: all failures, still closed. */
  for (int i = 0; i < 19; i++) assert_true(call(b, now, SL_OUTCOME_FAILURE, 0));
  assert_int_equal(sl_breaker_state(b), SL_BREAKER_CLOSED);
  /* They age out of the 10 s window. */
  now += 11 * SEC;
  for (int i = 0; i < 30; i++) assert_true(call(b, now, i % 3 == 0 ? SL_OUTCOME_FAILURE : SL_OUTCOME_SUCCESS, 0));
  assert_int_equal(sl_breaker_state(b), SL_BREAKER_CLOSED); /* 10/30 */
  struct sl_breaker_snapshot s;
  sl_breaker_snapshot(b, now, &s);
  assert_int_equal(s.window_requests, 30);
  assert_int_equal(s.window_failures, 10);
  /* 20 more failures: 30/50 >= 0.5 is reached at 20/40 */
  int n = 0;
  while (sl_breaker_state(b) == SL_BREAKER_CLOSED) {
    assert_true(call(b, now + MS, SL_OUTCOME_FAILURE, 0));
    n++;
  }
  assert_int_equal(n, 10);
  sl_breaker_del(b);
}

static void test_slow_calls(void **st) {
  (void)st;
  struct sl_breaker_cfg c = base_cfg();
  c.consecutive_failures = 3;
  c.slow_call_ms = 2000;
  struct sl_breaker *b = sl_breaker_new(&c);
  uint64_t now = SEC;
  assert_true(call(b, now, SL_OUTCOME_SUCCESS, 1999 * MS));
  assert_true(call(b, now, SL_OUTCOME_SUCCESS, 2000 * MS));
  assert_true(call(b, now, SL_OUTCOME_SUCCESS, 3000 * MS));
  assert_int_equal(sl_breaker_state(b), SL_BREAKER_CLOSED);
  assert_true(call(b, now, SL_OUTCOME_SUCCESS, 9000 * MS));
  assert_int_equal(sl_breaker_state(b), SL_BREAKER_OPEN);
  sl_breaker_del(b);
}

static void test_half_open_probes(void **st) {
  (void)st;
  struct sl_breaker_cfg c = base_cfg();
  c.consecutive_failures = 1;
  struct sl_breaker *b = sl_breaker_new(&c);
  uint64_t now = SEC;
  assert_true(call(b, now, SL_OUTCOME_FAILURE, 0));
  assert_int_equal(sl_breaker_state(b), SL_BREAKER_OPEN);
  struct sl_breaker_verdict v1, v2, v3;
  assert_false(sl_breaker_admit(b, now + 5 * SEC - 1, 0, &v1));
  now += 5 * SEC;
  /* Half-open: two probes, no more. */
  assert_true(sl_breaker_admit(b, now, 0, &v1));
  assert_true(v1.probe);
  assert_int_equal(v1.state, SL_BREAKER_HALF_OPEN);
  assert_true(sl_breaker_admit(b, now, 0, &v2));
  assert_false(sl_breaker_admit(b, now, 0, &v3));
  /* A cancelled probe frees its slot without evidence. */
  sl_breaker_report(b, &v2, SL_OUTCOME_CANCELLED, 0, now);
  assert_true(sl_breaker_admit(b, now, 0, &v2));
  sl_breaker_report(b, &v1, SL_OUTCOME_SUCCESS, MS, now + MS);
  assert_int_equal(sl_breaker_state(b), SL_BREAKER_HALF_OPEN);
  assert_false(sl_breaker_admit(b, now, 0, &v3)); /* 1 success + 1 in flight */
  sl_breaker_report(b, &v2, SL_OUTCOME_SUCCESS, MS, now + MS);
  assert_int_equal(sl_breaker_state(b), SL_BREAKER_CLOSED);
  assert_true(sl_breaker_admit(b, now + MS, 0, &v3));
  sl_breaker_del(b);
}

static void test_probe_failure_reopens(void **st) {
  (void)st;
  struct sl_breaker_cfg c = base_cfg();
  c.consecutive_failures = 1;
  struct sl_breaker *b = sl_breaker_new(&c);
  uint64_t now = SEC;
  assert_true(call(b, now, SL_OUTCOME_FAILURE, 0));
  now += 5 * SEC;
  struct sl_breaker_verdict v;
  assert_true(sl_breaker_admit(b, now, 0, &v));
  sl_breaker_report(b, &v, SL_OUTCOME_FAILURE, 0, now + 100 * MS);
  assert_int_equal(sl_breaker_state(b), SL_BREAKER_OPEN);
  assert_false(sl_breaker_admit(b, now + 5 * SEC, 0, &v)); /* open_for from the probe failure */
  assert_int_equal(v.retry_after_ns, 100 * MS);
  assert_true(sl_breaker_admit(b, now + 5100 * MS, 0, &v));
  assert_true(v.probe);
  struct sl_breaker_snapshot s;
  sl_breaker_snapshot(b, now, &s);
  assert_int_equal(s.opened_total, 2);
  sl_breaker_del(b);
}

/* Outcomes from an earlier epoch are ignored. */
static void test_stale_outcomes(void **st) {
  (void)st;
  struct sl_breaker_cfg c = base_cfg();
  c.consecutive_failures = 2;
  c.half_open_probes = 1;
  struct sl_breaker *b = sl_breaker_new(&c);
  uint64_t now = SEC;
  struct sl_breaker_verdict slow, p;
  assert_true(sl_breaker_admit(b, now, 0, &slow)); /* a long request */
  assert_true(call(b, now, SL_OUTCOME_FAILURE, 0));
  assert_true(call(b, now, SL_OUTCOME_FAILURE, 0));
  assert_int_equal(sl_breaker_state(b), SL_BREAKER_OPEN);
  now += 5 * SEC;
  assert_true(sl_breaker_admit(b, now, 0, &p));
  /* The straggler fails now: not a probe, does not reopen. */
  sl_breaker_report(b, &slow, SL_OUTCOME_FAILURE, 5 * SEC, now);
  assert_int_equal(sl_breaker_state(b), SL_BREAKER_HALF_OPEN);
  sl_breaker_report(b, &p, SL_OUTCOME_SUCCESS, MS, now);
  assert_int_equal(sl_breaker_state(b), SL_BREAKER_CLOSED);
  /* A second report of the same probe is stale too. */
  sl_breaker_report(b, &p, SL_OUTCOME_FAILURE, MS, now);
  struct sl_breaker_snapshot s;
  sl_breaker_snapshot(b, now, &s);
  assert_int_equal(s.consecutive_failures, 0);
  assert_int_equal(s.state, SL_BREAKER_CLOSED);
  sl_breaker_del(b);
}

/* After closing, the admitted share ramps from 10% to 100%. */
static void test_recovery_ramp(void **st) {
  (void)st;
  struct sl_breaker_cfg c = base_cfg();
  c.consecutive_failures = 1;
  c.half_open_probes = 1;
  c.recovery_ramp_ms = 30000;
  struct sl_breaker *b = sl_breaker_new(&c);
  uint64_t now = SEC;
  assert_true(call(b, now, SL_OUTCOME_FAILURE, 0));
  now += 5 * SEC;
  assert_true(call(b, now, SL_OUTCOME_SUCCESS, 0));
  assert_int_equal(sl_breaker_state(b), SL_BREAKER_CLOSED);
  const struct {
    uint64_t at;
    double share;
  } pts[] = {{0, 0.10}, {15 * SEC, 0.55}, {27 * SEC, 0.91}, {30 * SEC, 1.0}, {300 * SEC, 1.0}};
  for (size_t k = 0; k < sizeof(pts) / sizeof(pts[0]); k++) {
    int admitted = 0;
    for (int i = 0; i < 20000; i++) {
      struct sl_breaker_verdict v;
      admitted += sl_breaker_admit(b, now + pts[k].at, rnd(), &v);
      /* (no report: the ramp does not depend on outcomes) */
    }
    double share = admitted / 20000.0;
    if (share < pts[k].share - 0.02 || share > pts[k].share + 0.02)
      fail_msg("at +%llus admitted %.3f want %.2f", (unsigned long long)(pts[k].at / SEC), share, pts[k].share);
  }
  struct sl_breaker_snapshot s;
  sl_breaker_snapshot(b, now + 15 * SEC, &s);
  assert_int_equal(s.admit_permille, 550);
  sl_breaker_del(b);
}

static void test_disabled(void **st) {
  (void)st;
  struct sl_breaker_cfg c = base_cfg();
  c.enabled = false;
  c.consecutive_failures = 1;
  struct sl_breaker *b = sl_breaker_new(&c);
  for (int i = 0; i < 100; i++) assert_true(call(b, SEC, SL_OUTCOME_FAILURE, 0));
  assert_int_equal(sl_breaker_state(b), SL_BREAKER_CLOSED);
  sl_breaker_del(b);
}

struct worker {
  struct sl_breaker *b;
  int id;
};

static void *worker_main(void *arg) {
  struct worker *w = arg;
  uint64_t x = 0x9E3779B97F4A7C15ull * (uint64_t)(w->id + 1);
  for (int i = 0; i < 100000; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    uint64_t now = SEC + (uint64_t)i * 100 * 1000; /* 100 us steps */
    struct sl_breaker_verdict v;
    if (sl_breaker_admit(w->b, now, x, &v))
      sl_breaker_report(w->b, &v, (x & 7) == 0 ? SL_OUTCOME_FAILURE : SL_OUTCOME_SUCCESS, 0, now);
  }
  return NULL;
}

/* Threads admitting and reporting: no crash, no race report, a sane end
 * state, and every probe accounted for. */
static void test_threads(void **st) {
  (void)st;
  struct sl_breaker_cfg c = base_cfg();
  c.consecutive_failures = 3;
  c.open_for_ms = 50;
  c.recovery_ramp_ms = 100;
  struct sl_breaker *b = sl_breaker_new(&c);
  struct worker w[2] = {{b, 0}, {b, 1}};
  pthread_t th[2];
  for (int i = 0; i < 2; i++) pthread_create(&th[i], NULL, worker_main, &w[i]);
  /* Meanwhile, what a scrape and /explain read. */
  struct sl_breaker_snapshot s;
  for (int i = 0; i < 2000; i++) {
    sl_breaker_snapshot(b, SEC + (uint64_t)i * 5 * MS, &s);
    (void)sl_breaker_state_at(b, SEC + (uint64_t)i * 5 * MS);
  }
  for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
  sl_breaker_snapshot(b, 100 * SEC, &s);
  assert_true(s.opened_total > 0);
  assert_int_equal(s.probes_in_flight, 0);
  sl_breaker_del(b);
}

struct reporter {
  struct sl_breaker *b;
  uint64_t now;
  int n;
  enum sl_outcome o;
};

static void *reporter_main(void *arg) {
  struct reporter *r = arg;
  for (int i = 0; i < r->n; i++) call(r->b, r->now, r->o, 0);
  return NULL;
}

/* Outcomes reported by different threads (different shards) add up in one
 * window: 10 successes from one thread and 10 failures from another reach
 * min_requests 20 at ratio 0.5 together, though neither does alone. */
static void test_shards_combined(void **st) {
  (void)st;
  struct sl_breaker_cfg c = base_cfg();
  c.consecutive_failures = 0;
  c.failure_ratio = 0.5;
  c.min_requests = 20;
  struct sl_breaker *b = sl_breaker_new(&c);
  struct reporter ok = {b, 100 * SEC, 10, SL_OUTCOME_SUCCESS};
  struct reporter bad = {b, 100 * SEC, 9, SL_OUTCOME_FAILURE};
  pthread_t th;
  pthread_create(&th, NULL, reporter_main, &ok);
  pthread_join(th, NULL);
  pthread_create(&th, NULL, reporter_main, &bad);
  pthread_join(th, NULL);
  struct sl_breaker_snapshot snap;
  sl_breaker_snapshot(b, 100 * SEC, &snap);
  assert_int_equal(snap.window_requests, 19);
  assert_int_equal(snap.window_failures, 9);
  assert_int_equal(sl_breaker_state(b), SL_BREAKER_CLOSED);
  bad.n = 1;
  pthread_create(&th, NULL, reporter_main, &bad);
  pthread_join(th, NULL);
  assert_int_equal(sl_breaker_state(b), SL_BREAKER_OPEN);
  /* Opening empties the window (a new epoch). */
  sl_breaker_snapshot(b, 100 * SEC, &snap);
  assert_int_equal(snap.window_requests, 0);
  sl_breaker_del(b);
}

/* The state a request meets at a given time, for the gauge: open until
 * open_for has passed, then half-open before any request made it so. */
static void test_state_at(void **st) {
  (void)st;
  struct sl_breaker_cfg c = base_cfg();
  c.consecutive_failures = 1;
  c.half_open_probes = 1;
  struct sl_breaker *b = sl_breaker_new(&c);
  uint64_t t = 100 * SEC;
  assert_int_equal(sl_breaker_state_at(b, t), SL_BREAKER_CLOSED);
  assert_true(call(b, t, SL_OUTCOME_FAILURE, 0));
  assert_int_equal(sl_breaker_state_at(b, t), SL_BREAKER_OPEN);
  assert_int_equal(sl_breaker_state_at(b, t + 5 * SEC - 1), SL_BREAKER_OPEN);
  assert_int_equal(sl_breaker_state_at(b, t + 5 * SEC), SL_BREAKER_HALF_OPEN);
  assert_int_equal(sl_breaker_state(b), SL_BREAKER_OPEN); /* not moved by looking */
  assert_true(call(b, t + 5 * SEC, SL_OUTCOME_SUCCESS, 0)); /* the probe */
  assert_int_equal(sl_breaker_state_at(b, t + 5 * SEC), SL_BREAKER_CLOSED);
  sl_breaker_del(b);
}

/* A reload retunes a breaker in place: an open breaker stays open (until
 * the time it was given), and the new settings apply from then on. */
static void test_retune_keeps_state(void **st) {
  (void)st;
  struct sl_breaker_cfg c = base_cfg();
  c.consecutive_failures = 2;
  c.half_open_probes = 1;
  struct sl_breaker *b = sl_breaker_new(&c);
  uint64_t t = 100 * SEC;
  assert_true(call(b, t, SL_OUTCOME_FAILURE, 0));
  assert_true(call(b, t, SL_OUTCOME_FAILURE, 0));
  assert_int_equal(sl_breaker_state(b), SL_BREAKER_OPEN);
  c.open_for_ms = 60000; /* on-call lengthens open_for, raises the threshold */
  c.consecutive_failures = 3;
  sl_breaker_retune(b, &c);
  assert_false(call(b, t + SEC, SL_OUTCOME_SUCCESS, 0)); /* still open */
  assert_int_equal(sl_breaker_state_at(b, t + 5 * SEC), SL_BREAKER_HALF_OPEN);
  assert_true(call(b, t + 5 * SEC, SL_OUTCOME_SUCCESS, 0)); /* probe closes it */
  assert_int_equal(sl_breaker_state(b), SL_BREAKER_CLOSED);
  /* Now three in a row open it, for the new 60 s. */
  assert_true(call(b, t + 6 * SEC, SL_OUTCOME_FAILURE, 0));
  assert_true(call(b, t + 6 * SEC, SL_OUTCOME_FAILURE, 0));
  assert_int_equal(sl_breaker_state(b), SL_BREAKER_CLOSED);
  assert_true(call(b, t + 6 * SEC, SL_OUTCOME_FAILURE, 0));
  assert_int_equal(sl_breaker_state(b), SL_BREAKER_OPEN);
  assert_int_equal(sl_breaker_state_at(b, t + 65 * SEC), SL_BREAKER_OPEN);
  assert_int_equal(sl_breaker_state_at(b, t + 66 * SEC), SL_BREAKER_HALF_OPEN);
  sl_breaker_del(b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_consecutive_failures),
      cmocka_unit_test(test_failure_ratio_window),
      cmocka_unit_test(test_slow_calls),
      cmocka_unit_test(test_half_open_probes),
      cmocka_unit_test(test_probe_failure_reopens),
      cmocka_unit_test(test_stale_outcomes),
      cmocka_unit_test(test_recovery_ramp),
      cmocka_unit_test(test_disabled),
      cmocka_unit_test(test_threads),
      cmocka_unit_test(test_shards_combined),
      cmocka_unit_test(test_state_at),
      cmocka_unit_test(test_retune_keeps_state),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
