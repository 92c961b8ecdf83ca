/*
 * sluice — circuit breaker report path microbenchmark.
 *
 * Every upstream response of every worker is reported to its upstream's
 * breaker (sl_breaker_report). This measures what one report costs with 1
 * and 2 threads reporting to the same breaker at once (the proxy's
 * workers), for healthy traffic (all successes) and for traffic with 1%
 * failures (below the ratio that would open it). Each thread admits and
 * reports REPORTS times; the figure is wall time / reports per thread
 * (median of ROUNDS rounds).
 *
 *   make build/bench/bench_breaker && ./build/bench/bench_breaker
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "sluice/breaker.h"

#define REPORTS 2000000
#define ROUNDS 5

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

struct job {
  struct sl_breaker *b;
  unsigned fail_every; /* 0: never */
  pthread_barrier_t *start;
  uint64_t ns;
};

static void *run(void *arg) {
  struct job *j = arg;
  struct sl_breaker_verdict v;
  pthread_barrier_wait(j->start);
  uint64_t a = now_ns();
  for (unsigned i = 0; i < REPORTS; i++) {
    uint64_t t = a + (uint64_t)i * 1000; /* fake clock: 1 us apart */
    if (!sl_breaker_admit(j->b, t, i, &v)) continue;
    bool fail = j->fail_every && i % j->fail_every == 0;
    sl_breaker_report(j->b, &v, fail ? SL_OUTCOME_FAILURE : SL_OUTCOME_SUCCESS, 1000000, t);
  }
  j->ns = now_ns() - a;
  return NULL;
}

static int cmp_double(const void *x, const void *y) {
  double a = *(const double *)x, b = *(const double *)y;
  return (a > b) - (a < b);
}

static double bench(int threads, unsigned fail_every) {
  double per[ROUNDS];
  for (int r = 0; r < ROUNDS; r++) {
    struct sl_breaker_cfg cfg = {.enabled = true, .consecutive_failures = 50, .failure_ratio = 0.5,
                                 .window_ms = 10000, .min_requests = 20, .open_for_ms = 5000,
                                 .half_open_probes = 5};
    struct sl_breaker *b = sl_breaker_new(&cfg);
    if (!b) exit(1);
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, (unsigned)threads);
    pthread_t tid[8];
    struct job jobs[8];
    for (int i = 0; i < threads; i++) {
      jobs[i] = (struct job){b, fail_every, &start, 0};
      pthread_create(&tid[i], NULL, run, &jobs[i]);
    }
    uint64_t worst = 0;
    for (int i = 0; i < threads; i++) {
      pthread_join(tid[i], NULL);
      if (jobs[i].ns > worst) worst = jobs[i].ns;
    }
    pthread_barrier_destroy(&start);
    if (sl_breaker_state(b) != SL_BREAKER_CLOSED) {
      fprintf(stderr, "breaker opened during the benchmark\n");
      exit(1);
    }
    sl_breaker_del(b);
    per[r] = (double)worst / REPORTS;
  }
  qsort(per, ROUNDS, sizeof(per[0]), cmp_double);
  return per[ROUNDS / 2];
}

int main(void) {
  printf("breaker admit+report, ns per report (median of %d rounds of %d per thread):\n", ROUNDS,
         REPORTS);
  printf("  1 thread,  all successes:  %.1f ns\n", bench(1, 0));
  printf("  2 threads, all successes:  %.1f ns\n", bench(2, 0));
  printf("  1 thread,  1%% failures:    %.1f ns\n", bench(1, 100));
  printf("  2 threads, 1%% failures:    %.1f ns\n", bench(2, 100));
  return 0;
}
