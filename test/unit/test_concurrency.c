/* Unit tests for policies/concurrency.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <stdatomic.h>
#include <cmocka.h>

#include "sluice/concurrency.h"

static void test_limits(void **st) {
  (void)st;
  assert_int_equal(sl_concurrency_limit(0, SL_PRIORITY_LOW), 0);
  assert_int_equal(sl_concurrency_limit(512, SL_PRIORITY_HIGH), 512);
  assert_int_equal(sl_concurrency_limit(512, SL_PRIORITY_NORMAL), 512);
  assert_int_equal(sl_concurrency_limit(512, SL_PRIORITY_LOW), 410);
  assert_int_equal(sl_concurrency_limit(10, SL_PRIORITY_LOW), 8);
  assert_int_equal(sl_concurrency_limit(1, SL_PRIORITY_LOW), 1);
  assert_int_equal(sl_concurrency_limit(UINT32_MAX, SL_PRIORITY_LOW), 3435973836u);
}

static void test_acquire_release(void **st) {
  (void)st;
  struct sl_concurrency *c = sl_concurrency_new();
  assert_non_null(c);
  for (int i = 0; i < 8; i++) assert_true(sl_concurrency_try_acquire(c, 10, SL_PRIORITY_LOW));
  /* low is shed at 80% ... */
  assert_false(sl_concurrency_try_acquire(c, 10, SL_PRIORITY_LOW));
  /* ... while normal and high still get the rest */
  assert_true(sl_concurrency_try_acquire(c, 10, SL_PRIORITY_NORMAL));
  assert_true(sl_concurrency_try_acquire(c, 10, SL_PRIORITY_HIGH));
  assert_false(sl_concurrency_try_acquire(c, 10, SL_PRIORITY_HIGH));
  assert_int_equal(sl_concurrency_in_flight(c), 10);
  sl_concurrency_release(c);
  assert_false(sl_concurrency_try_acquire(c, 10, SL_PRIORITY_LOW));
  assert_true(sl_concurrency_try_acquire(c, 10, SL_PRIORITY_HIGH));
  for (int i = 0; i < 10; i++) sl_concurrency_release(c);
  assert_int_equal(sl_concurrency_in_flight(c), 0);
  /* unlimited still counts */
  for (int i = 0; i < 1000; i++) assert_true(sl_concurrency_try_acquire(c, 0, SL_PRIORITY_LOW));
  assert_int_equal(sl_concurrency_in_flight(c), 1000);
  sl_concurrency_del(c);
}

struct worker {
  struct sl_concurrency *c;
  _Atomic uint32_t *peak;
  uint64_t taken;
};

static void *worker_main(void *arg) {
  struct worker *w = arg;
  for (int i = 0; i < 200000; i++) {
    if (!sl_concurrency_try_acquire(w->c, 7, SL_PRIORITY_NORMAL)) continue;
    w->taken++;
    uint32_t now = sl_concurrency_in_flight(w->c), p = atomic_load(w->peak);
    while (now > p && !atomic_compare_exchange_weak(w->peak, &p, now)) {
    }
    sl_concurrency_release(w->c);
  }
  return NULL;
}

/* Never more than max in flight, and everything released. */
static void test_threads(void **st) {
  (void)st;
  struct sl_concurrency *c = sl_concurrency_new();
  _Atomic uint32_t peak = 0;
  struct worker w[4];
  pthread_t th[4];
  for (int i = 0; i < 4; i++) {
    w[i] = (struct worker){c, &peak, 0};
    pthread_create(&th[i], NULL, worker_main, &w[i]);
  }
  for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
  assert_true(atomic_load(&peak) <= 7);
  assert_int_equal(sl_concurrency_in_flight(c), 0);
  assert_true(w[0].taken + w[1].taken + w[2].taken + w[3].taken > 0);
  sl_concurrency_del(c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_limits),
      cmocka_unit_test(test_acquire_release),
      cmocka_unit_test(test_threads),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
