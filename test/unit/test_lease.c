/* Unit tests for policies/lease.c: local shares of a global limit on a
 * fake clock, against a fake backend with the Redis script's maths (a
 * GCRA bucket that grants min(asked, available)). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "sluice/lease.h"

#define US 1000ull
#define MS 1000000ull
#define SEC 1000000000ull

/* The backend's bucket: what proxy/global/script.lua does, in integers. */
struct fake_bucket {
  uint64_t tat, period, burst;
  uint64_t commands;
};

static uint32_t bucket_take(struct fake_bucket *b, uint32_t ask, uint64_t now, uint64_t *retry) {
  b->commands++;
  uint64_t tat = b->tat > now ? b->tat : now;
  uint64_t room = now + b->burst * b->period - tat;
  uint64_t avail = room / b->period;
  uint32_t g = ask < avail ? ask : (uint32_t)avail;
  b->tat = tat + g * b->period;
  /* time until one more token */
  uint64_t next = b->tat + b->period;
  *retry = next > now + b->burst * b->period ? next - (now + b->burst * b->period) : 0;
  return g;
}

static struct sl_lease_params params(uint64_t period, uint32_t burst, uint32_t replicas) {
  return (struct sl_lease_params){.period_ns = period,
                                  .burst = burst,
                                  .expected_replicas = replicas,
                                  .lease_ns = 100 * MS,
                                  .lead_ns = 10 * MS,
                                  .fallback = SL_FALLBACK_LOCAL};
}

/* One replica's view of one key, with the lease it has in flight. */
struct replica {
  struct sl_lease l;
  double rate;          /* offered requests per second */
  double owed;          /* fractional arrivals */
  uint64_t reply_at;    /* 0: nothing in flight */
  uint32_t ask;
  uint64_t admitted, seen, debt_admits, asks;
};

/* Runs |n| replicas against |b| for |dur| in steps of |step|, the backend
 * answering each ask after |rtt|. Returns total admitted. */
static uint64_t simulate(struct replica *r, size_t n, const struct sl_lease_params *p,
                         struct fake_bucket *b, uint64_t start, uint64_t dur, uint64_t step,
                         uint64_t rtt) {
  uint64_t total = 0;
  for (uint64_t now = start; now < start + dur; now += step) {
    for (size_t i = 0; i < n; i++) {
      struct replica *x = &r[i];
      if (x->reply_at && now >= x->reply_at) {
        uint64_t retry;
        uint32_t g = bucket_take(b, x->ask, now - rtt / 2, &retry);
        sl_lease_grant(&x->l, p, g, retry, now);
        x->reply_at = 0;
      }
      x->owed += x->rate * (double)step / (double)SEC;
      while (x->owed >= 1.0) {
        x->owed -= 1.0;
        struct sl_lease_verdict v;
        x->seen++;
        if (sl_lease_admit(&x->l, p, true, now, &v)) {
          x->admitted++;
          total++;
          if (v.source == SL_LEASE_FROM_DEBT) x->debt_admits++;
        }
        if (v.want_refill) {
          assert_false(x->reply_at); /* one ask in flight per key */
          x->ask = sl_lease_ask(&x->l, p, now);
          x->reply_at = now + rtt;
          x->asks++;
        }
      }
    }
  }
  return total;
}

/* A replica's asks follow its demand: about demand x lease_ns each once
 * the EWMA has settled (2 x lease_ns time constant: after 2 s, within
 * e^-10 of the new rate; the rest is rounding up to whole tokens and one
 * window's granularity). */
static void test_share_follows_demand(void **st) {
  (void)st;
  struct sl_lease_params p = params(100 * US, 100000, 1); /* 10,000/s: never the bottleneck */
  struct fake_bucket b = {.period = p.period_ns, .burst = p.burst};
  struct replica r = {.rate = 200};
  simulate(&r, 1, &p, &b, 10 * SEC, 2 * SEC, 100 * US, 1 * MS);
  assert_in_range((uint64_t)sl_lease_demand(&r.l), 190, 210);
  uint32_t ask = sl_lease_ask(&r.l, &p, 12 * SEC);
  assert_in_range(ask, 19, 22); /* 200/s x 100 ms = 20 */
  sl_lease_failed(&r.l);
  r.rate = 2000;
  simulate(&r, 1, &p, &b, 12 * SEC, 2 * SEC, 100 * US, 1 * MS);
  assert_in_range((uint64_t)sl_lease_demand(&r.l), 1900, 2100);
  ask = sl_lease_ask(&r.l, &p, 14 * SEC);
  assert_in_range(ask, 190, 220);
  sl_lease_failed(&r.l);
  /* Under its share, nothing is refused, and a lease of 100 ms of demand
   * means about 10 asks per second: 2 s x 10/s = 20 (+ the warm-up). */
  assert_int_equal(r.admitted, r.seen);
}

/* 8 replicas share 1000/s (burst 100); one sees half of 2000/s offered,
 * the other seven share the rest (arrivals out of phase, as independent
 * clients are). Over 10 s the fleet admits at most rate x T + burst +
 * 8 x (provisional bucket, 100/8 = 12): the bucket never grants more, and
 * each replica's debt is at most its provisional bucket. At least 95% of
 * rate x T: what replicas hold unspent at the end is at most one short
 * grant each. The busy replica gets about half: the split is
 * proportional to poll rates for Poisson polls (PASTA, see lease.c), and
 * polls are spaced quantum / demand. Two deviations make the tolerance:
 * after each of its own polls a replica is blind for one RTT (1 ms of a
 * ~13.5 ms mean interval for the busy one, so it sees up to 7% more than
 * its Poisson share: 0.535), and sampling: ~730 busy polls over 10 s give
 * a standard error of about 0.5 / sqrt(730) = 0.019 on its share; 3 of
 * them either side: [0.445, 0.59]. */
static void test_uneven_fleet(void **st) {
  (void)st;
  struct sl_lease_params p = params(1 * MS, 100, 8);
  struct fake_bucket b = {.period = p.period_ns, .burst = p.burst};
  struct replica r[8];
  memset(r, 0, sizeof(r));
  r[0].rate = 1000;
  for (int i = 1; i < 8; i++) {
    r[i].rate = 1000.0 / 7;
    r[i].owed = i / 8.0;
  }
  uint64_t total = simulate(r, 8, &p, &b, 100 * SEC, 10 * SEC, 100 * US, 1 * MS);
  uint64_t upper = 10 * 1000 + 100 + 8 * sl_lease_local_burst(&p);
  if (total > upper) fail_msg("admitted %llu > bound %llu", (unsigned long long)total,
                              (unsigned long long)upper);
  if (total < 10000 - 500) fail_msg("admitted %llu, under 95%% of 10,000", (unsigned long long)total);
  double share = (double)r[0].admitted / (double)total;
  if (share < 0.445 || share > 0.59) fail_msg("busy replica's share %.3f, not about 0.5", share);
  /* Command rate: each ask is one EVALSHA. */
  double per_1000 = (double)b.commands * 1000.0 / (double)total;
  print_message("uneven fleet: admitted %llu (bound %llu), busy share %.3f, %.1f commands per "
                "1000 admitted\n",
                (unsigned long long)total, (unsigned long long)upper, share, per_1000);
}

/* The backend grants a fixed number of tokens and then nothing: a
 * replica admits at most those plus its provisional bucket (debt). */
static void test_nothing_beyond_lease_and_debt(void **st) {
  (void)st;
  struct sl_lease_params p = params(1 * MS, 80, 8); /* local bucket 10, 125/s */
  struct sl_lease l = {0};
  struct sl_lease_verdict v;
  uint64_t now = 5 * SEC, admitted = 0, granted = 0;
  for (int i = 0; i < 100000; i++, now += 10 * US) { /* 1 s at 100,000/s */
    admitted += sl_lease_admit(&l, &p, true, now, &v);
    if (v.want_refill) {
      uint32_t ask = sl_lease_ask(&l, &p, now);
      uint32_t g = granted < 50 ? ask : 0; /* first asks granted, then an empty bucket */
      if (granted + g > 50) g = (uint32_t)(50 - granted);
      granted += g;
      sl_lease_grant(&l, &p, g, 1 * MS, now);
    }
  }
  assert_int_equal(granted, 50);
  assert_true(admitted <= granted + sl_lease_local_burst(&p));
  assert_true(admitted >= granted);
  /* The refused ones say when to come back. */
  assert_false(sl_lease_admit(&l, &p, true, now, &v));
  assert_int_equal(v.source, SL_LEASE_EXHAUSTED);
  assert_true(v.retry_after_ns > 0);
}

/* Debt is paid from the next grant: a key admitted before its first
 * lease arrived ends with tokens = granted - debt. */
static void test_debt_paid(void **st) {
  (void)st;
  struct sl_lease_params p = params(1 * MS, 80, 8);
  struct sl_lease l = {0};
  struct sl_lease_verdict v;
  uint64_t now = 5 * SEC;
  assert_true(sl_lease_admit(&l, &p, true, now, &v));
  assert_int_equal(v.source, SL_LEASE_FROM_DEBT);
  assert_true(v.want_refill);
  uint32_t ask = sl_lease_ask(&l, &p, now);
  assert_true(ask >= 2); /* demand plus the debt of one */
  for (int i = 0; i < 3; i++) {
    assert_true(sl_lease_admit(&l, &p, true, now, &v));
    assert_false(v.want_refill); /* one in flight */
  }
  assert_int_equal(l.tokens, -4);
  sl_lease_grant(&l, &p, 10, 0, now + MS);
  assert_int_equal(l.tokens, 6);
  assert_true(sl_lease_admit(&l, &p, true, now + MS, &v));
  assert_int_equal(v.source, SL_LEASE_FROM_TOKENS);
}

/* Backend down: leased tokens are spent first, then the fallback mode
 * decides: local at rate / expected_replicas (over 1 s: 125 + bucket 12
 * for 1000/s, 8 replicas), open, closed; back up, it asks again. */
static void test_fallback(void **st) {
  (void)st;
  struct sl_lease_params p = params(1 * MS, 100, 8);
  struct sl_lease l = {0};
  struct sl_lease_verdict v;
  uint64_t now = 5 * SEC;
  sl_lease_ask(&l, &p, now);
  sl_lease_grant(&l, &p, 5, 0, now);
  uint64_t admitted = 0, from_tokens = 0;
  for (int i = 0; i < 10000; i++, now += 100 * US) { /* 1 s at 10,000/s */
    if (sl_lease_admit(&l, &p, false, now, &v)) {
      admitted++;
      from_tokens += v.source == SL_LEASE_FROM_TOKENS;
    }
    assert_false(v.want_refill); /* no asks while down */
  }
  assert_int_equal(from_tokens, 5);
  /* 5 leased + 12 bucket + 1 s x 125/s, +-1 for the window's edges */
  assert_in_range(admitted, 5 + 12 + 125 - 1, 5 + 12 + 125 + 1);

  p.fallback = SL_FALLBACK_OPEN;
  assert_true(sl_lease_admit(&l, &p, false, now, &v));
  assert_int_equal(v.source, SL_LEASE_FROM_FALLBACK);
  p.fallback = SL_FALLBACK_CLOSED;
  assert_false(sl_lease_admit(&l, &p, false, now, &v));
  assert_true(v.retry_after_ns > 0);

  /* Back up: the next request asks for a lease. */
  p.fallback = SL_FALLBACK_LOCAL;
  now += 1 * SEC;
  assert_true(sl_lease_admit(&l, &p, true, now, &v));
  assert_true(v.want_refill);
  sl_lease_ask(&l, &p, now);
  sl_lease_failed(&l); /* timed out: may ask again */
  sl_lease_admit(&l, &p, true, now, &v);
  assert_true(v.want_refill);
}

/* A short grant holds asks back for poll_ns: quantum / demand, clamped to
 * [lease / 32, lease]. */
static void test_poll_spacing(void **st) {
  (void)st;
  struct sl_lease_params p = params(1 * MS, 100, 8); /* quantum 12.5 tokens */
  struct sl_lease l = {.demand_mrps = 1000 * 1000};   /* 1000/s -> 12.5 ms */
  assert_int_equal(sl_lease_poll_ns(&l, &p), 12500 * US);
  l.demand_mrps = 10 * 1000; /* 10/s -> 1.25 s, clamped to 100 ms */
  assert_int_equal(sl_lease_poll_ns(&l, &p), 100 * MS);
  l.demand_mrps = 100000 * 1000; /* -> 125 us, clamped to 100 ms / 32 */
  assert_int_equal(sl_lease_poll_ns(&l, &p), 3125 * US);
  /* The wait after a short grant is exponential around poll_ns, cut at
   * 4x, counted from the ask: asks stay held until then. */
  l.asked = 10;
  l.asked_ns = 1 * SEC;
  sl_lease_grant(&l, &p, 3, 0, 1 * SEC + 1 * MS);
  assert_in_range(l.not_before_ns, 1 * SEC, 1 * SEC + 4 * 3125 * US);
  struct sl_lease_verdict v;
  l.tokens = 0;
  if (l.not_before_ns > 1 * SEC) {
    sl_lease_admit(&l, &p, true, l.not_before_ns - 1, &v);
    assert_false(v.want_refill);
  }
  sl_lease_admit(&l, &p, true, l.not_before_ns, &v);
  assert_true(v.want_refill);
  /* Mean of many waits: poll_ns x (1 - e^-4) = 3.068 ms for 3.125 ms;
   * 2000 draws of an exponential have a relative standard error of 2.2%,
   * so 4 of them (9%): 2.79 .. 3.35 ms. */
  uint64_t sum = 0;
  for (int i = 0; i < 2000; i++) {
    struct sl_lease m = {.demand_mrps = 100000 * 1000, .asked = 10, .seen = (uint32_t)i};
    uint64_t t = 2 * SEC + (uint64_t)i * 977;
    m.asked_ns = t;
    sl_lease_grant(&m, &p, 0, 0, t);
    sum += m.not_before_ns - t;
  }
  assert_in_range(sum / 2000, 2790 * US, 3350 * US);
}

static void test_idle(void **st) {
  (void)st;
  struct sl_lease_params p = params(1 * MS, 100, 8);
  struct sl_lease l = {0};
  struct sl_lease_verdict v;
  sl_lease_admit(&l, &p, true, 1 * SEC, &v); /* debt of one */
  assert_false(sl_lease_idle(&l, 100 * SEC, 10 * SEC));
  sl_lease_ask(&l, &p, 1 * SEC);
  sl_lease_grant(&l, &p, 3, 0, 1 * SEC);
  assert_false(sl_lease_idle(&l, 5 * SEC, 10 * SEC));
  assert_true(sl_lease_idle(&l, 11 * SEC, 10 * SEC));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_share_follows_demand),
      cmocka_unit_test(test_uneven_fleet),
      cmocka_unit_test(test_nothing_beyond_lease_and_debt),
      cmocka_unit_test(test_debt_paid),
      cmocka_unit_test(test_fallback),
      cmocka_unit_test(test_poll_spacing),
      cmocka_unit_test(test_idle),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
