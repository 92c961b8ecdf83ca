/* Unit tests for policies/conc_table.c: per-key in-flight counts. */
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

#include "sluice/conc_table.h"

static const uint8_t SEED[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};

static void test_per_key_limit_and_release(void **st) {
  (void)st;
  struct sl_conc_table *t = sl_conc_table_new(100, SEED);
  assert_non_null(t);
  uint64_t h1, h2, h3, hb;
  assert_int_equal(sl_conc_table_acquire(t, "dev-a", 5, 2, &h1), SL_CONC_TAKEN);
  assert_int_equal(sl_conc_table_acquire(t, "dev-a", 5, 2, &h2), SL_CONC_TAKEN);
  assert_int_equal(h1, h2); /* one entry per key */
  assert_int_equal(sl_conc_table_acquire(t, "dev-a", 5, 2, &h3), SL_CONC_LIMITED);
  /* Every byte counts: a prefix is another key. */
  assert_int_equal(sl_conc_table_acquire(t, "dev-", 4, 2, &hb), SL_CONC_TAKEN);
  assert_int_equal(sl_conc_table_count(t, "dev-a", 5), 2);
  assert_int_equal(sl_conc_table_keys(t), 2);
  sl_conc_table_release(t, h1);
  assert_int_equal(sl_conc_table_acquire(t, "dev-a", 5, 2, &h3), SL_CONC_TAKEN);
  sl_conc_table_release(t, h2);
  sl_conc_table_release(t, h3);
  /* Count 0: the entry is gone. */
  assert_int_equal(sl_conc_table_count(t, "dev-a", 5), 0);
  assert_int_equal(sl_conc_table_keys(t), 1);
  sl_conc_table_release(t, hb);
  assert_int_equal(sl_conc_table_keys(t), 0);
  /* limit 0: unlimited, still counted. */
  for (int i = 0; i < 1000; i++) assert_int_equal(sl_conc_table_acquire(t, "x", 1, 0, &h1), SL_CONC_TAKEN);
  assert_int_equal(sl_conc_table_count(t, "x", 1), 1000);
  for (int i = 0; i < 1000; i++) sl_conc_table_release(t, h1);
  assert_int_equal(sl_conc_table_keys(t), 0);
  sl_conc_table_del(t);
}

static void test_full_table(void **st) {
  (void)st;
  struct sl_conc_table *t = sl_conc_table_new(3, SEED);
  uint64_t h[4], again;
  char k[16];
  for (int i = 0; i < 3; i++) {
    snprintf(k, sizeof(k), "k%d", i);
    assert_int_equal(sl_conc_table_acquire(t, k, strlen(k), 1, &h[i]), SL_CONC_TAKEN);
  }
  /* A fourth key finds no room; a resident key is still limited, not full. */
  assert_int_equal(sl_conc_table_acquire(t, "k3", 2, 1, &h[3]), SL_CONC_TABLE_FULL);
  assert_int_equal(sl_conc_table_acquire(t, "k0", 2, 1, &again), SL_CONC_LIMITED);
  assert_int_equal(sl_conc_table_acquire(t, "k0", 2, 2, &again), SL_CONC_TAKEN);
  sl_conc_table_release(t, again);
  /* One key's last release frees room. */
  sl_conc_table_release(t, h[1]);
  assert_int_equal(sl_conc_table_acquire(t, "k3", 2, 1, &h[3]), SL_CONC_TAKEN);
  assert_int_equal(sl_conc_table_max_keys(t), 3);
  sl_conc_table_release(t, h[0]);
  sl_conc_table_release(t, h[2]);
  sl_conc_table_release(t, h[3]);
  assert_int_equal(sl_conc_table_keys(t), 0);
  sl_conc_table_del(t);
}

/* Threads race on few keys: at no time more than LIMIT of a key are held
 * (each thread checks its own view through a shared per-key counter),
 * and every key's count returns to 0. */
enum { THREADS = 4, ROUNDS = 20000, KEYS = 3, LIMIT = 2 };
static struct sl_conc_table *race_t;
static _Atomic int holders[KEYS], over, taken;

static void *racer(void *arg) {
  unsigned seed = (unsigned)(uintptr_t)arg;
  for (int i = 0; i < ROUNDS; i++) {
    seed = seed * 1103515245u + 12345u;
    int k = (int)(seed >> 16) % KEYS;
    char key = (char)('a' + k);
    uint64_t h;
    if (sl_conc_table_acquire(race_t, &key, 1, LIMIT, &h) != SL_CONC_TAKEN) continue;
    if (atomic_fetch_add(&holders[k], 1) + 1 > LIMIT) atomic_fetch_add(&over, 1);
    atomic_fetch_add(&taken, 1);
    atomic_fetch_sub(&holders[k], 1);
    sl_conc_table_release(race_t, h);
  }
  return NULL;
}

static void test_exact_under_threads(void **st) {
  (void)st;
  race_t = sl_conc_table_new(10, SEED);
  pthread_t th[THREADS];
  for (uintptr_t i = 0; i < THREADS; i++) assert_int_equal(pthread_create(&th[i], NULL, racer, (void *)(i + 1)), 0);
  for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
  assert_int_equal(atomic_load(&over), 0);
  assert_true(atomic_load(&taken) > 0);
  for (int k = 0; k < KEYS; k++) {
    char key = (char)('a' + k);
    assert_int_equal(sl_conc_table_count(race_t, &key, 1), 0);
  }
  assert_int_equal(sl_conc_table_keys(race_t), 0);
  sl_conc_table_del(race_t);
}

/* Many keys, each held once: exactly max_keys fit (the bucket slack of
 * twice max_keys slots keeps every bucket below full here). */
static void test_many_keys(void **st) {
  (void)st;
  enum { N = 65536 };
  struct sl_conc_table *t = sl_conc_table_new(N, SEED);
  static uint64_t h[N];
  char k[16];
  for (int i = 0; i < N; i++) {
    int n = snprintf(k, sizeof(k), "dev-%d", i);
    assert_int_equal(sl_conc_table_acquire(t, k, (size_t)n, 1, &h[i]), SL_CONC_TAKEN);
  }
  assert_int_equal(sl_conc_table_keys(t), N);
  assert_int_equal(sl_conc_table_acquire(t, "one more", 8, 1, &h[0]), SL_CONC_TABLE_FULL);
  for (int i = 0; i < N; i++) sl_conc_table_release(t, h[i]);
  assert_int_equal(sl_conc_table_keys(t), 0);
  sl_conc_table_del(t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_per_key_limit_and_release),
      cmocka_unit_test(test_full_table),
      cmocka_unit_test(test_exact_under_threads),
      cmocka_unit_test(test_many_keys),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
