/* Unit tests for policies/horizon.c: the reservation horizon of a shared
 * key, on a fake clock (time is an argument). */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "sluice/horizon.h"
#include "sluice/retry.h"

#define SEC 1000000000ull
#define MS 1000000ull

/* A reject config: min, max (ms); jitter 0.5 (the cap window only). */
#define CFG(min_ms, max_ms)                                                          \
  ((struct sl_reject_cfg){.retry_after_min_ms = (min_ms), .retry_after_max_ms = (max_ms), \
                          .jitter = 0.5, .spread = SL_SPREAD_BACKLOG})

/* splitmix64: uniform draws for the jitter. */
static uint64_t draw_state = 0x9e3779b97f4a7c15ull;
static uint64_t next(void) {
  uint64_t z = (draw_state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* A key of period 100 ms at |now|, |n| refusals already given slots. */
static struct {
  struct sl_reject_cfg c;
  _Atomic uint64_t h;
  uint64_t now, P, max;
} fx;
static void fx_fill(uint64_t max_ms, uint64_t now, int n) {
  fx.c = CFG(1000, max_ms);
  atomic_store(&fx.h, 0);
  fx.now = now;
  fx.P = 100 * MS;
  fx.max = sl_horizon_max_ns(&fx.c);
  for (int k = 0; k < n; k++) sl_horizon_reserve(&fx.h, now, 0, fx.P, fx.max);
}

/* 300 refused at once by a 10/s key (P = 100 ms) whose limiter admits
 * again in 40 ms: slot k starts at 40 ms + k P, so the answers cover
 * 1 .. ceil(0.04 + 29.9 + P) = 31 s, monotone in k, and a second's value
 * n is told to the slots overlapping (n - 1, n]: at most 1 s / P + 1 = 11,
 * at least 1 s / P - 1 = 9 for every second the crowd fills (1..30); the
 * last slot's jitter may spill one into 31. */
static void test_crowd_spread(void **st) {
  (void)st;
  struct sl_reject_cfg c = CFG(1000, 120000);
  _Atomic uint64_t h = 0;
  uint64_t now = 1000 * SEC, P = 100 * MS;
  unsigned count[64] = {0};
  uint64_t prev = 0;
  uint32_t prev_s = 0;
  for (int k = 0; k < 300; k++) {
    uint64_t slot = sl_horizon_reserve(&h, now, 40 * MS, P, sl_horizon_max_ns(&c));
    assert_int_equal(slot, 40 * MS + (uint64_t)k * P);
    assert_true(k == 0 || slot > prev);
    prev = slot;
    uint32_t s = sl_horizon_retry_after_s(&c, slot, P, next());
    assert_true(s >= prev_s); /* slots are P apart and the jitter stays in one */
    prev_s = s;
    assert_true(s >= 1 && s <= 31);
    assert_true((uint64_t)s * SEC >= slot); /* never before the slot opens */
    count[s]++;
  }
  for (int s = 1; s <= 30; s++) assert_in_range(count[s], 9, 11);
  assert_in_range(count[31], 0, 1);
  assert_int_equal(h, now + 40 * MS + 300 * P);
}

/* Capped: the horizon never runs more than max ahead; those refused past
 * it are told the cap window (as sl_retry_after_s) and take no slot. */
static void test_capped(void **st) {
  (void)st;
  fx_fill(10000, 5 * SEC, 100);
  assert_int_equal(fx.h, fx.now + 100 * fx.P); /* 10 s: full */
  for (int k = 0; k < 50; k++) {
    uint64_t slot = sl_horizon_reserve(&fx.h, fx.now, 0, fx.P, fx.max);
    assert_int_equal(slot, fx.max);
    uint32_t s = sl_horizon_retry_after_s(&fx.c, slot, fx.P, next());
    assert_in_range(s, 5, 10); /* [max - round(10 * 0.5), max] */
  }
  assert_int_equal(fx.h, fx.now + 100 * fx.P);
}

/* Nobody comes back: the reserved slots pass with time, and a refusal
 * after the horizon starts from the limiter's own wait again. Half way
 * through, the horizon still holds the remaining half of the crowd. */
static void test_decay(void **st) {
  (void)st;
  fx_fill(120000, 7 * SEC, 300);
  uint64_t later = fx.now + 31 * SEC;
  assert_int_equal(sl_horizon_peek(&fx.h, fx.now + 15 * SEC, 0), 15 * SEC);
  assert_int_equal(sl_horizon_peek(&fx.h, later, 20 * MS), 20 * MS);
  assert_int_equal(sl_horizon_reserve(&fx.h, later, 20 * MS, fx.P, fx.max), 20 * MS);
  assert_int_equal(sl_horizon_retry_after_s(&fx.c, 20 * MS, fx.P, 0), 1);
}

/* The limiter's wait beyond the horizon wins (newcomers admitted in
 * between used the capacity): slot = max(H, now + wait). */
static void test_wait_wins(void **st) {
  (void)st;
  _Atomic uint64_t h = 0;
  uint64_t now = SEC, P = SEC;
  assert_int_equal(sl_horizon_reserve(&h, now, 0, P, 60 * SEC), 0);
  assert_int_equal(sl_horizon_reserve(&h, now, 5 * SEC, P, 60 * SEC), 5 * SEC);
  assert_int_equal(h, now + 6 * SEC);
  assert_int_equal(sl_horizon_peek(&h, now, 0), 6 * SEC);
}

/* A slot longer than a second (1/min): the jitter spreads the crowd over
 * the slot's seconds, never before it opens nor after it closes. */
static void test_slow_rate_jitter(void **st) {
  (void)st;
  struct sl_reject_cfg c = CFG(1000, 3600000);
  unsigned seen[61] = {0};
  for (int k = 0; k < 6000; k++) {
    uint32_t s = sl_horizon_retry_after_s(&c, 0, 60 * SEC, next());
    assert_in_range(s, 1, 60);
    seen[s]++;
  }
  /* 100 expected per value; binomial sd ~10: 50..150 is 5 sd. */
  for (int s = 1; s <= 60; s++) assert_in_range(seen[s], 50, 150);
}

/* min and max clamp the answer. */
static void test_clamps(void **st) {
  (void)st;
  struct sl_reject_cfg c = CFG(3000, 120000);
  assert_int_equal(sl_horizon_retry_after_s(&c, 0, 100 * MS, 0), 3);
  assert_int_equal(sl_horizon_retry_after_s(&c, 4 * SEC, 100 * MS, 0), 4);
  assert_int_equal(sl_horizon_retry_after_s(&c, 4 * SEC + 1, 100 * MS, 0), 5);
  struct sl_reject_cfg big = CFG(1000, UINT64_MAX);
  assert_int_equal(sl_horizon_max_ns(&big), UINT64_MAX);
}

/* Workers refused at the same instant: every refusal gets its own slot
 * (the CAS loses none and hands none out twice), H = the sum. */
enum { THREADS = 4, EACH = 2000 };
static _Atomic uint64_t shared_h;
static uint64_t slots[THREADS][EACH];
static pthread_barrier_t bar;
static void *reserver(void *arg) {
  uint64_t *out = arg;
  pthread_barrier_wait(&bar);
  for (int k = 0; k < EACH; k++) out[k] = sl_horizon_reserve(&shared_h, SEC, 0, MS, 3600 * SEC);
  return NULL;
}
static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}
static void test_concurrent_reserve(void **st) {
  (void)st;
  pthread_t th[THREADS];
  pthread_barrier_init(&bar, NULL, THREADS);
  for (int i = 0; i < THREADS; i++) pthread_create(&th[i], NULL, reserver, slots[i]);
  for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
  pthread_barrier_destroy(&bar);
  uint64_t *all = (uint64_t *)slots; /* THREADS * EACH in a row */
  qsort(all, THREADS * EACH, sizeof(uint64_t), cmp_u64);
  for (int k = 0; k < THREADS * EACH; k++) assert_int_equal(all[k], (uint64_t)k * MS);
  assert_int_equal(shared_h, SEC + THREADS * EACH * MS);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_crowd_spread), cmocka_unit_test(test_capped),
      cmocka_unit_test(test_decay),        cmocka_unit_test(test_wait_wins),
      cmocka_unit_test(test_slow_rate_jitter), cmocka_unit_test(test_clamps),
      cmocka_unit_test(test_concurrent_reserve),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
