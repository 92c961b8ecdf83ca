/* Unit tests for policies/ratelimit.c: GCRA arithmetic on a fake clock and
 * the shared limiter table (eviction, overflow bucket, threads). */
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

#include "sluice/ratelimit.h"

#define MS 1000000ull
#define SEC 1000000000ull

static const uint8_t seed[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};

static struct sl_ratelimit_table *mk(uint32_t max_keys) {
  struct sl_ratelimit_table *t = sl_ratelimit_table_new(max_keys, seed);
  assert_non_null(t);
  return t;
}

static bool admit_s(struct sl_ratelimit_table *t, const char *key, uint64_t period, uint32_t burst,
                    uint64_t now, struct sl_rl_verdict *v) {
  return sl_ratelimit_admit(t, key, strlen(key), period, burst, now, v);
}

/* A client sending 10x the rate for 10 s gets rate*10s + burst, within 1%. */
static void test_exact_rate_10s(void **st) {
  (void)st;
  struct sl_ratelimit_table *t = mk(1000);
  struct sl_rl_verdict v;
  const uint64_t start = 1000 * SEC;
  /* 5/s burst 10, one attempt every 20 ms; and 1000/s burst 20, every 100 us. */
  struct {
    uint64_t period, step;
    uint32_t burst;
  } cases[] = {{200 * MS, 20 * MS, 10}, {1 * MS, MS / 10, 20}, {3 * MS, 1 * MS + 7, 1}};
  for (size_t c = 0; c < 3; c++) {
    char key[32];
    snprintf(key, sizeof(key), "k%zu", c);
    uint64_t admitted = 0;
    for (uint64_t now = start; now <= start + 10 * SEC; now += cases[c].step)
      admitted += admit_s(t, key, cases[c].period, cases[c].burst, now, &v);
    double want = (double)(10 * SEC / cases[c].period) + cases[c].burst;
    double err = ((double)admitted - want) / (double)(10 * SEC / cases[c].period);
    if (err > 0.01 || err < -0.01)
      fail_msg("case %zu: admitted %llu want %.0f", c, (unsigned long long)admitted, want);
  }
  sl_ratelimit_table_del(t);
}

static void test_burst(void **st) {
  (void)st;
  struct sl_ratelimit_table *t = mk(100);
  struct sl_rl_verdict v;
  uint64_t now = 5 * SEC;
  for (uint32_t i = 0; i < 10; i++) {
    assert_true(admit_s(t, "ip", 200 * MS, 10, now, &v));
    assert_int_equal(v.remaining, 9 - i);
  }
  assert_false(admit_s(t, "ip", 200 * MS, 10, now, &v));
  assert_int_equal(v.retry_after_ns, 200 * MS);
  assert_int_equal(v.reset_ns, 2 * SEC);
  /* burst 0 is burst 1 */
  assert_true(admit_s(t, "b0", 200 * MS, 0, now, &v));
  assert_false(admit_s(t, "b0", 200 * MS, 0, now, &v));
  /* another key is independent */
  assert_true(admit_s(t, "other", 200 * MS, 10, now, &v));
  /* a whole bucket refills after burst * period */
  now += 2 * SEC;
  for (int i = 0; i < 10; i++) assert_true(admit_s(t, "ip", 200 * MS, 10, now, &v));
  assert_false(admit_s(t, "ip", 200 * MS, 10, now, &v));
  sl_ratelimit_table_del(t);
}

/* Rejected requests consume nothing: a client hammering the limit (a
 * crash loop) still gets exactly the rate, never locked out. */
static void test_reject_consumes_nothing(void **st) {
  (void)st;
  struct sl_ratelimit_table *t = mk(100);
  struct sl_rl_verdict v;
  uint64_t now = SEC;
  assert_true(admit_s(t, "x", SEC, 1, now, &v));
  for (int i = 0; i < 100000; i++) assert_false(admit_s(t, "x", SEC, 1, now + (uint64_t)i * 1000, &v));
  /* Exactly one period after the admitted request, it is admitted again. */
  assert_true(admit_s(t, "x", SEC, 1, now + SEC, &v));
  /* Hammering at 1000/s against 1/s for 60 s: 60 admitted. */
  uint64_t n = 0, base = 100 * SEC;
  for (uint64_t ts = base; ts < base + 60 * SEC; ts += MS) n += admit_s(t, "y", SEC, 1, ts, &v);
  assert_int_equal(n, 60);
  sl_ratelimit_table_del(t);
}

static void test_retry_after_accuracy(void **st) {
  (void)st;
  struct sl_ratelimit_table *t = mk(100);
  struct sl_rl_verdict v;
  const uint64_t period = 333333333; /* 3/s */
  uint64_t now = 77 * SEC + 12345;
  for (int i = 0; i < 4; i++) assert_true(admit_s(t, "r", period, 4, now, &v));
  for (int round = 0; round < 50; round++) {
    uint64_t probe = now + (uint64_t)round * 7919 * 1000;
    if (admit_s(t, "r", period, 4, probe, &v)) continue;
    uint64_t ra = v.retry_after_ns;
    assert_true(ra > 0 && ra <= period);
    struct sl_rl_verdict p;
    assert_false(sl_ratelimit_peek(t, "r", 1, period, 4, probe + ra - 1, &p));
    assert_int_equal(p.retry_after_ns, 1);
    assert_true(sl_ratelimit_peek(t, "r", 1, period, 4, probe + ra, &p));
  }
  sl_ratelimit_table_del(t);
}

static void test_peek_changes_nothing(void **st) {
  (void)st;
  struct sl_ratelimit_table *t = mk(100);
  struct sl_rl_verdict v;
  for (int i = 0; i < 100; i++) assert_true(sl_ratelimit_peek(t, "p", 1, SEC, 2, SEC, &v));
  assert_int_equal(sl_ratelimit_keys(t), 0);
  assert_int_equal(v.remaining, 1);
  assert_true(admit_s(t, "p", SEC, 2, SEC, &v));
  assert_true(admit_s(t, "p", SEC, 2, SEC, &v));
  for (int i = 0; i < 10; i++) assert_false(sl_ratelimit_peek(t, "p", 1, SEC, 2, SEC, &v));
  assert_int_equal(v.retry_after_ns, SEC);
  assert_int_equal(sl_ratelimit_keys(t), 1);
  sl_ratelimit_table_del(t);
}

/* Periods and bursts near the limits of uint64 must saturate, not wrap. */
static void test_saturation(void **st) {
  (void)st;
  struct sl_ratelimit_table *t = mk(10);
  struct sl_rl_verdict v;
  const uint64_t hour = 3600 * SEC;
  assert_true(admit_s(t, "h", hour, UINT32_MAX, 1, &v));
  assert_true(admit_s(t, "h", hour, UINT32_MAX, 2, &v));
  assert_true(admit_s(t, "z", UINT64_MAX / 2, 3, UINT64_MAX - 10, &v));
  admit_s(t, "z", UINT64_MAX / 2, 3, UINT64_MAX - 10, &v); /* degenerate, but no wrap */
  assert_true(v.retry_after_ns <= UINT64_MAX / 2);
  assert_true(admit_s(t, "u", 0, 1, 5, &v)); /* period 0: unlimited */
  assert_true(admit_s(t, "u", 0, 1, 5, &v));
  uint64_t tat = 0;
  assert_true(sl_gcra_step(&tat, hour, 1, 10, true, &v));
  assert_int_equal(tat, 10 + hour);
  assert_false(sl_gcra_step(&tat, hour, 1, 11, true, &v));
  assert_int_equal(v.retry_after_ns, hour - 1);
  sl_ratelimit_table_del(t);
}

/* max_keys 7 gives two buckets, so every key's two candidate buckets are
 * the whole table: eviction and overflow are deterministic. */
static void test_eviction_prefers_idle_keys(void **st) {
  (void)st;
  struct sl_ratelimit_table *t = mk(7);
  struct sl_rl_verdict v;
  char key[32];
  uint64_t now = 10 * SEC;
  for (int i = 0; i < 3; i++) { /* active: one request per hour, exhausted */
    snprintf(key, sizeof(key), "active%d", i);
    assert_true(admit_s(t, key, 3600 * SEC, 1, now, &v));
  }
  for (int i = 0; i < 4; i++) { /* idle soon: full again 1 ms later */
    snprintf(key, sizeof(key), "idle%d", i);
    assert_true(admit_s(t, key, MS, 1, now, &v));
  }
  assert_int_equal(sl_ratelimit_keys(t), 7);
  now += SEC;
  for (int i = 0; i < 4; i++) {
    snprintf(key, sizeof(key), "new%d", i);
    assert_true(admit_s(t, key, 3600 * SEC, 1, now, &v));
    assert_false(v.overflow);
  }
  struct sl_rl_stats s;
  sl_ratelimit_stats(t, &s);
  assert_int_equal(s.keys, 7);
  assert_int_equal(s.evictions, 4);
  /* The active keys kept their state: still exhausted. */
  for (int i = 0; i < 3; i++) {
    snprintf(key, sizeof(key), "active%d", i);
    assert_false(sl_ratelimit_peek(t, key, strlen(key), 3600 * SEC, 1, now, &v));
    assert_false(v.overflow);
  }
  for (int i = 0; i < 4; i++) {
    snprintf(key, sizeof(key), "new%d", i);
    assert_false(sl_ratelimit_peek(t, key, strlen(key), 3600 * SEC, 1, now, &v));
  }
  sl_ratelimit_table_del(t);
}

static void test_overflow_bucket_when_all_active(void **st) {
  (void)st;
  struct sl_ratelimit_table *t = mk(7);
  struct sl_rl_verdict v;
  char key[32];
  const uint64_t now = 10 * SEC;
  for (int i = 0; i < 7; i++) {
    snprintf(key, sizeof(key), "a%d", i);
    assert_true(admit_s(t, key, 60 * SEC, 1, now, &v));
  }
  /* Every new key shares one bucket of burst 2: two admitted, then none. */
  int admitted = 0;
  for (int i = 0; i < 50; i++) {
    snprintf(key, sizeof(key), "n%d", i);
    admitted += admit_s(t, key, 60 * SEC, 2, now, &v);
    assert_true(v.overflow);
  }
  assert_int_equal(admitted, 2);
  assert_int_equal(v.retry_after_ns, 60 * SEC);
  assert_int_equal(sl_ratelimit_keys(t), 7);
  struct sl_rl_stats s;
  sl_ratelimit_stats(t, &s);
  assert_int_equal(s.overflow, 50);
  assert_int_equal(s.evictions, 0);
  /* Once the residents are full again, new keys get their own buckets. */
  assert_true(admit_s(t, "later", 60 * SEC, 2, now + 61 * SEC, &v));
  assert_false(v.overflow);
  sl_ratelimit_table_del(t);
}

static void test_sweep(void **st) {
  (void)st;
  struct sl_ratelimit_table *t = mk(1000);
  struct sl_rl_verdict v;
  char key[32];
  for (int i = 0; i < 500; i++) {
    snprintf(key, sizeof(key), "s%d", i);
    assert_true(admit_s(t, key, (i % 2) ? MS : 3600 * SEC, 1, SEC, &v));
  }
  assert_int_equal(sl_ratelimit_keys(t), 500);
  size_t removed = 0;
  for (int i = 0; i < 100; i++) removed += sl_ratelimit_sweep(t, 2 * SEC, 10);
  assert_int_equal(removed, 250);
  assert_int_equal(sl_ratelimit_keys(t), 250);
  for (int i = 0; i < 500; i += 2) { /* the active half is intact */
    snprintf(key, sizeof(key), "s%d", i);
    assert_false(sl_ratelimit_peek(t, key, strlen(key), 3600 * SEC, 1, 2 * SEC, &v));
  }
  sl_ratelimit_table_del(t);
}

/* Fills a 1M-key table; checks the bound and the memory per key. */
static void test_million_keys(void **st) {
  (void)st;
  struct sl_ratelimit_table *t = mk(1000000);
  struct sl_rl_verdict v;
  uint64_t overflow = 0;
  for (uint32_t i = 0; i < 1100000; i++) {
    uint8_t ip[16] = {0};
    memcpy(ip, &i, 4);
    sl_ratelimit_admit(t, ip, 16, SEC, 5, SEC, &v);
    overflow += v.overflow;
  }
  struct sl_rl_stats s;
  sl_ratelimit_stats(t, &s);
  assert_true(s.keys <= 1000000);
  assert_true(s.keys >= 999000); /* two choices: the table really fills */
  assert_int_equal(overflow, 1100000 - s.keys);
  assert_true(s.memory_bytes <= 64ull * 1000000);
  printf("1M keys: %llu resident, %.1f MiB, %.1f bytes/key\n", (unsigned long long)s.keys,
         (double)s.memory_bytes / (1 << 20), (double)s.memory_bytes / 1e6);
  sl_ratelimit_table_del(t);
}

/* ---- threads ------------------------------------------------------- */

struct hammer {
  struct sl_ratelimit_table *t;
  pthread_barrier_t *bar;
  uint64_t admitted;
  int steps, tries;
  uint64_t step_ns;
};

static void *hammer_main(void *arg) {
  struct hammer *h = arg;
  struct sl_rl_verdict v;
  for (int s = 0; s < h->steps; s++) {
    pthread_barrier_wait(h->bar);
    uint64_t now = SEC + (uint64_t)s * h->step_ns;
    for (int i = 0; i < h->tries; i++) h->admitted += sl_ratelimit_admit(h->t, "hot", 3, MS, 10, now, &v);
  }
  return NULL;
}

/* Two threads hammer one key in lock-step with a shared fake clock: the
 * total is exactly what one thread alone would get. */
static void test_two_threads_same_key(void **st) {
  (void)st;
  const int steps = 4000, tries = 50;
  const uint64_t step_ns = 250000; /* 4 steps per period of 1 ms */
  /* Reference: one caller, same instants, same attempts. */
  uint64_t tat = 0, want = 0;
  struct sl_rl_verdict v;
  for (int s = 0; s < steps; s++)
    for (int i = 0; i < 2 * tries; i++) want += sl_gcra_step(&tat, MS, 10, SEC + (uint64_t)s * step_ns, true, &v);
  assert_int_equal(want, 10 + (steps - 1) / 4);

  struct sl_ratelimit_table *t = mk(100);
  pthread_barrier_t bar;
  pthread_barrier_init(&bar, NULL, 2);
  struct hammer h[2];
  pthread_t th[2];
  for (int i = 0; i < 2; i++) {
    h[i] = (struct hammer){.t = t, .bar = &bar, .steps = steps, .tries = tries, .step_ns = step_ns};
    pthread_create(&th[i], NULL, hammer_main, &h[i]);
  }
  for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
  pthread_barrier_destroy(&bar);
  assert_int_equal(h[0].admitted + h[1].admitted, want);
  sl_ratelimit_table_del(t);
}

struct churn {
  struct sl_ratelimit_table *t;
  int id;
  uint64_t admitted;
};

static void *churn_main(void *arg) {
  struct churn *c = arg;
  struct sl_rl_verdict v;
  for (uint32_t i = 0; i < 200000; i++) {
    uint32_t k = (i * 2654435761u) % 3000; /* both threads share keys */
    c->admitted += sl_ratelimit_admit(c->t, &k, sizeof(k), SEC, 1, SEC, &v);
  }
  return NULL;
}

/* Many keys, inserts racing with evictions and overflow: each of the 3000
 * keys (1 per second, burst 1, frozen clock) is admitted once at most,
 * plus at most one overflow admission. */
static void test_two_threads_churn(void **st) {
  (void)st;
  struct sl_ratelimit_table *t = mk(2000);
  struct churn c[2] = {{t, 0, 0}, {t, 1, 0}};
  pthread_t th[2];
  for (int i = 0; i < 2; i++) pthread_create(&th[i], NULL, churn_main, &c[i]);
  for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
  struct sl_rl_stats s;
  sl_ratelimit_stats(t, &s);
  assert_true(s.keys <= 2000);
  assert_int_equal(c[0].admitted + c[1].admitted, s.keys + 1);
  sl_ratelimit_table_del(t);
}

/* A located key gives the same answers as the keyed calls, look and
 * commit alike, including for keys new to the table. */
static void test_located_key_matches_keyed_calls(void **state) {
  (void)state;
  struct sl_ratelimit_table *a = mk(1000), *b = mk(1000);
  uint64_t now = 1000000000000ull;
  for (int round = 0; round < 50; round++) {
    for (int k = 0; k < 20; k++) {
      char key[16];
      int n = snprintf(key, sizeof(key), "key-%d", k);
      struct sl_rl_verdict va, vb;
      struct sl_rl_ref ref;
      sl_ratelimit_locate(b, key, (size_t)n, &ref);
      bool pa = sl_ratelimit_peek(a, key, (size_t)n, 100000000, 3, now, &va);
      bool pb = sl_ratelimit_decide_ref(b, &ref, 100000000, 3, now, false, &vb);
      assert_int_equal(pa, pb);
      assert_int_equal(va.retry_after_ns, vb.retry_after_ns);
      bool ca = sl_ratelimit_admit(a, key, (size_t)n, 100000000, 3, now, &va);
      bool cb = sl_ratelimit_decide_ref(b, &ref, 100000000, 3, now, true, &vb);
      assert_int_equal(ca, cb);
      assert_int_equal(va.remaining, vb.remaining);
    }
    now += 40000000; /* 40 ms: some admitted, some refused each round */
  }
  assert_int_equal(sl_ratelimit_keys(a), sl_ratelimit_keys(b));
  sl_ratelimit_table_del(a);
  sl_ratelimit_table_del(b);
}

/* A refund gives back exactly one charge: after it the key decides as if
 * the refunded request had never been admitted (also a key's first
 * charge, and a charge taken by the overflow bucket). */
static void test_refund(void **st) {
  (void)st;
  struct sl_ratelimit_table *t = mk(1000);
  struct sl_rl_verdict v;
  struct sl_rl_ref ref;
  const uint64_t now = 100 * SEC;
  sl_ratelimit_locate(t, "k", 1, &ref);
  for (int i = 0; i < 3; i++) assert_true(sl_ratelimit_decide_ref(t, &ref, SEC, 3, now, true, &v));
  assert_false(sl_ratelimit_decide_ref(t, &ref, SEC, 3, now, false, &v));
  sl_ratelimit_refund(t, &ref, SEC);
  assert_true(sl_ratelimit_decide_ref(t, &ref, SEC, 3, now, false, &v));
  assert_int_equal(v.remaining, 0); /* exactly one given back */
  sl_ratelimit_refund(t, &ref, SEC);
  sl_ratelimit_refund(t, &ref, SEC);
  assert_true(sl_ratelimit_decide_ref(t, &ref, SEC, 3, now, false, &v));
  assert_int_equal(v.remaining, 2); /* full again */
  sl_ratelimit_table_del(t);

  /* The overflow bucket: a one-key table, its key busy, a second key is
   * decided (and refunded) by the shared bucket. */
  t = mk(1);
  assert_true(admit_s(t, "busy", SEC, 1, now, &v));
  sl_ratelimit_locate(t, "new", 3, &ref);
  assert_true(sl_ratelimit_decide_ref(t, &ref, SEC, 1, now, true, &v));
  assert_true(v.overflow);
  assert_false(sl_ratelimit_decide_ref(t, &ref, SEC, 1, now, false, &v));
  sl_ratelimit_refund(t, &ref, SEC);
  assert_true(sl_ratelimit_decide_ref(t, &ref, SEC, 1, now, false, &v));
  assert_false(admit_s(t, "busy", SEC, 1, now, &v)); /* untouched */
  sl_ratelimit_table_del(t);
}

/* Keys are compared in full: keys of 200 bytes that differ only in their
 * last byte (a JWT, a long device id) have buckets of their own. */
static void test_long_keys_distinct(void **st) {
  (void)st;
  struct sl_ratelimit_table *t = mk(1000);
  struct sl_rl_verdict v;
  char a[201], b[201];
  memset(a, 'e', 200);
  a[200] = '\0';
  memcpy(b, a, sizeof(a));
  b[199] = 'f';
  assert_true(admit_s(t, a, SEC, 1, SEC, &v));
  assert_false(admit_s(t, a, SEC, 1, SEC, &v));
  assert_true(admit_s(t, b, SEC, 1, SEC, &v));
  /* A prefix is another key too. */
  a[64] = '\0';
  assert_true(admit_s(t, a, SEC, 1, SEC, &v));
  assert_int_equal(sl_ratelimit_keys(t), 3);
  sl_ratelimit_table_del(t);
}

/* Reparametrisation keeps each key's consumed tokens: an exhausted key
 * stays exhausted under a tighter rate and burst (and is never given more
 * than a whole new bucket of debt); a half-used key keeps its share; keys
 * charged under an override convert with that override's period. */
static void test_reparam(void **st) {
  (void)st;
  struct sl_ratelimit_table *t = mk(1000);
  struct sl_rl_verdict v;
  struct sl_rl_ref ex, half, ov;
  const uint64_t now = 100 * SEC;
  const uint64_t fast = 100 * MS, slow = SEC; /* 10/s -> 1/s */
  sl_ratelimit_locate(t, "exhausted", 9, &ex);
  sl_ratelimit_locate(t, "half", 4, &half);
  sl_ratelimit_locate(t, "override", 8, &ov);
  ov.cls = 1;
  for (int i = 0; i < 10; i++) assert_true(sl_ratelimit_decide_ref(t, &ex, fast, 10, now, true, &v));
  for (int i = 0; i < 5; i++) assert_true(sl_ratelimit_decide_ref(t, &half, fast, 10, now, true, &v));
  for (int i = 0; i < 4; i++) assert_true(sl_ratelimit_decide_ref(t, &ov, 10 * MS, 4, now, true, &v));
  /* Base: 10/s burst 10 -> 1/s burst 5. Override: 100/s burst 4 -> 10/s burst 8. */
  const struct sl_rl_reparam map[2] = {
      {.from_period_ns = fast, .to_period_ns = slow, .to_burst = 5, .to_cls = 0},
      {.from_period_ns = 10 * MS, .to_period_ns = 100 * MS, .to_burst = 8, .to_cls = 1},
  };
  assert_int_equal(sl_ratelimit_reparam(t, map, 2, now), 3);
  /* Exhausted: still none (10 consumed, clamped to the new 5), for a
   * whole new period. */
  assert_false(sl_ratelimit_decide_ref(t, &ex, slow, 5, now, false, &v));
  assert_int_equal(v.retry_after_ns, slow);
  /* Half used: 5 of 10 consumed -> 5 of 5: none left either. */
  assert_false(sl_ratelimit_decide_ref(t, &half, slow, 5, now, false, &v));
  /* Override: 4 of 4 consumed at 100/s -> 4 of 8 at 10/s: 4 left. */
  ov.cls = 1;
  assert_true(sl_ratelimit_decide_ref(t, &ov, 100 * MS, 8, now, false, &v));
  assert_int_equal(v.remaining, 3);
  /* Loosening converts the other way: 1/s burst 5 -> 10/s burst 20. */
  const struct sl_rl_reparam loose = {.from_period_ns = slow, .to_period_ns = fast,
                                      .to_burst = 20, .to_cls = 0};
  sl_ratelimit_reparam(t, &loose, 1, now);
  assert_true(sl_ratelimit_decide_ref(t, &ex, fast, 20, now, false, &v));
  assert_int_equal(v.remaining, 14); /* 5 consumed of 20: 15 left, this one included */
  sl_ratelimit_table_del(t);
}

struct churner {
  struct sl_ratelimit_table *t;
  int id;
  _Atomic int *stop;
  _Atomic unsigned long rounds;
};

static void *churner_main(void *arg) {
  struct churner *c = arg;
  char key[32];
  struct sl_rl_verdict v;
  struct sl_rl_ref ref;
  for (unsigned long i = 0; !atomic_load(c->stop) && i < 2000000; i++) {
    int n = snprintf(key, sizeof(key), "k%d-%lu", c->id, i % 64);
    sl_ratelimit_locate(c->t, key, (size_t)n, &ref);
    if (sl_ratelimit_decide_ref(c->t, &ref, MS, 4, 10 * SEC, true, &v) && (i & 1))
      sl_ratelimit_refund(c->t, &ref, MS);
    c->rounds++;
  }
  return NULL;
}

/* Reparametrisation (a reload, main thread) while workers decide and
 * refund: every bucket is converted under its lock (ThreadSanitizer). */
static void test_reparam_while_deciding(void **st) {
  (void)st;
  struct sl_ratelimit_table *t = mk(200); /* small: the overflow bucket is used too */
  _Atomic int stop = 0;
  struct churner c[2] = {{t, 0, &stop, 0}, {t, 1, &stop, 0}};
  pthread_t th[2];
  for (int i = 0; i < 2; i++) pthread_create(&th[i], NULL, churner_main, &c[i]);
  const struct sl_rl_reparam up = {.from_period_ns = MS, .to_period_ns = 2 * MS, .to_burst = 4};
  const struct sl_rl_reparam down = {.from_period_ns = 2 * MS, .to_period_ns = MS, .to_burst = 4};
  /* Until both workers have decided a while, at most a bounded number. */
  for (int i = 0; i < 200000 && (atomic_load(&c[0].rounds) < 5000 || atomic_load(&c[1].rounds) < 5000); i++)
    sl_ratelimit_reparam(t, i & 1 ? &down : &up, 1, 10 * SEC);
  atomic_store(&stop, 1);
  for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
  assert_true(c[0].rounds > 0 && c[1].rounds > 0);
  assert_true(sl_ratelimit_keys(t) <= 200);
  sl_ratelimit_table_del(t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_exact_rate_10s),
      cmocka_unit_test(test_located_key_matches_keyed_calls),
      cmocka_unit_test(test_burst),
      cmocka_unit_test(test_reject_consumes_nothing),
      cmocka_unit_test(test_retry_after_accuracy),
      cmocka_unit_test(test_peek_changes_nothing),
      cmocka_unit_test(test_saturation),
      cmocka_unit_test(test_eviction_prefers_idle_keys),
      cmocka_unit_test(test_overflow_bucket_when_all_active),
      cmocka_unit_test(test_sweep),
      cmocka_unit_test(test_million_keys),
      cmocka_unit_test(test_two_threads_same_key),
      cmocka_unit_test(test_two_threads_churn),
      cmocka_unit_test(test_refund),
      cmocka_unit_test(test_long_keys_distinct),
      cmocka_unit_test(test_reparam),
      cmocka_unit_test(test_reparam_while_deciding),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
