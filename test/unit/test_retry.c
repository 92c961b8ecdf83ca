/* Unit tests for policies/retry.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "sluice/retry.h"

#define SEC 1000000000ull

static struct sl_reject_cfg cfg(uint64_t min_ms, uint64_t max_ms, double jitter) {
  struct sl_reject_cfg c;
  memset(&c, 0, sizeof(c));
  c.retry_after_min_ms = min_ms;
  c.retry_after_max_ms = max_ms;
  c.jitter = jitter;
  c.body_json = true;
  return c;
}

static uint64_t rng = 88172645463325252ull;
static uint64_t next(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

static void test_no_jitter(void **st) {
  (void)st;
  struct sl_reject_cfg c = cfg(1000, 120000, 0);
  assert_int_equal(sl_retry_after_s(&c, 0, 0), 1);            /* min */
  assert_int_equal(sl_retry_after_s(&c, 1, ~0ull), 1);         /* rounds up */
  assert_int_equal(sl_retry_after_s(&c, SEC, 12345), 1);
  assert_int_equal(sl_retry_after_s(&c, SEC + 1, 0), 2);       /* never early */
  assert_int_equal(sl_retry_after_s(&c, 7 * SEC - 5, 0), 7);
  assert_int_equal(sl_retry_after_s(&c, 3600 * SEC, ~0ull), 120); /* max */
  assert_int_equal(sl_retry_after_s(&c, UINT64_MAX, 0), 120);
  c = cfg(1500, 120000, 0);
  assert_int_equal(sl_retry_after_s(&c, 0, 0), 2); /* min rounds up to whole seconds */
  c = cfg(5000, 2000, 0); /* max below min: min wins */
  assert_int_equal(sl_retry_after_s(&c, 0, 0), 5);
  c = cfg(1000, 120000, -3); /* nonsense jitter is none */
  assert_int_equal(sl_retry_after_s(&c, 4 * SEC, ~0ull), 4);
}

/* Spread: bounded by [base, base*(1+j)], never below base, not all equal,
 * and roughly uniform over the window. */
static void test_spread(void **st) {
  (void)st;
  struct sl_reject_cfg c = cfg(1000, 120000, 0.5);
  const struct {
    uint64_t wait;
    uint32_t lo, hi;
  } cases[] = {
      {7 * SEC, 7, 11},       /* 7 + round(3.5) */
      {SEC / 2, 1, 2},        /* 1 s floor on the window */
      {20 * SEC, 20, 30},
      {100 * SEC, 100, 120},  /* window cut at max */
      {500 * SEC, 60, 120},   /* capped: [max - w, max] */
  };
  for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
    uint32_t hist[256] = {0};
    for (int i = 0; i < 20000; i++) {
      uint32_t r = sl_retry_after_s(&c, cases[k].wait, next());
      if (r < cases[k].lo || r > cases[k].hi)
        fail_msg("wait %llu: %u outside [%u,%u]", (unsigned long long)cases[k].wait, r, cases[k].lo, cases[k].hi);
      hist[r]++;
    }
    uint32_t span = cases[k].hi - cases[k].lo + 1;
    for (uint32_t v = cases[k].lo; v <= cases[k].hi; v++) {
      double expect = 20000.0 / span;
      if (hist[v] < expect * 0.8 || hist[v] > expect * 1.2)
        fail_msg("wait %llu: value %u seen %u times, expected ~%.0f", (unsigned long long)cases[k].wait,
                 v, hist[v], expect);
    }
  }
  /* Extremes of the random input hit both ends. */
  assert_int_equal(sl_retry_after_s(&c, 7 * SEC, 0), 7);
  assert_int_equal(sl_retry_after_s(&c, 7 * SEC, ~0ull), 11);
  c = cfg(1000, 120000, 1.0);
  assert_int_equal(sl_retry_after_s(&c, 10 * SEC, ~0ull), 20);
  c = cfg(1000, 120000, 7.0); /* clamped to 1 */
  assert_int_equal(sl_retry_after_s(&c, 10 * SEC, ~0ull), 20);
}

static void test_body_json(void **st) {
  (void)st;
  char buf[256];
  int n = sl_reject_body_json(buf, sizeof(buf), "rate_limited", "connect/client_ip", 7);
  assert_string_equal(buf, "{\"error\":\"rate_limited\",\"policy\":\"connect/client_ip\",\"retry_after\":7}");
  assert_int_equal(n, (int)strlen(buf));
  n = sl_reject_body_json(buf, sizeof(buf), "blocked", "a\"b\\c\nd\x01\te", 0);
  assert_string_equal(buf, "{\"error\":\"blocked\",\"policy\":\"a\\\"b\\\\c\\nd\\u0001\\u0009e\",\"retry_after\":0}");
  n = sl_reject_body_json(buf, sizeof(buf), "x", NULL, 4294967295u);
  assert_string_equal(buf, "{\"error\":\"x\",\"policy\":\"\",\"retry_after\":4294967295}");
  /* UTF-8 passes through. */
  sl_reject_body_json(buf, sizeof(buf), "x", "r\xc3\xa9gle", 1);
  assert_non_null(strstr(buf, "r\xc3\xa9gle"));
  /* Exact fit, one byte short, tiny buffers. */
  const char *want = "{\"error\":\"e\",\"policy\":\"p\",\"retry_after\":1}";
  size_t len = strlen(want);
  assert_int_equal(sl_reject_body_json(buf, len + 1, "e", "p", 1), (int)len);
  assert_string_equal(buf, want);
  assert_int_equal(sl_reject_body_json(buf, len, "e", "p", 1), -1);
  for (size_t cap = 0; cap < len; cap++) assert_int_equal(sl_reject_body_json(buf, cap, "e", "p", 1), -1);
  /* An escape that does not fit is not split. */
  char small[32];
  assert_int_equal(sl_reject_body_json(small, sizeof(small), "\x01\x01\x01\x01", "p", 1), -1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_no_jitter),
      cmocka_unit_test(test_spread),
      cmocka_unit_test(test_body_json),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
