/*
 * Unit tests for proxy/core/freelist.c: per-thread bounded freelists, their
 * counters, and the sluice_pool_* series they are summed into at scrape
 * time. Also run under ThreadSanitizer (make tsan): several threads use
 * one class while another thread scrapes.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/metrics.h"
#include "core/freelist.h"
#include "core/pipe.h"

static unsigned destroyed;

static void count_destroy(void *obj) {
  destroyed++;
  free(obj);
}

static struct sl_freelist_class small_class = {
    .name = "test_small", .max_cached = 4, .destroy = count_destroy};
static __thread struct sl_freelist small = SL_FREELIST_INIT(&small_class);

static void expect_totals(const char *name, uint64_t allocations, uint64_t reuses,
                          uint64_t frees, uint64_t cached) {
  struct sl_freelist_totals t;
  assert_true(sl_freelist_totals(name, &t));
  assert_int_equal(t.allocations, allocations);
  assert_int_equal(t.reuses, reuses);
  assert_int_equal(t.frees, frees);
  assert_int_equal(t.cached, cached);
}

/* Misses return NULL and count an allocation; given-back objects come
 * back LIFO; past the bound they are destroyed; a drain destroys the
 * rest. */
static void test_get_put_bound_drain(void **state) {
  (void)state;
  void *objs[6];
  for (int i = 0; i < 6; i++) {
    assert_null(sl_freelist_get(&small));
    objs[i] = malloc(32);
  }
  expect_totals("test_small", 6, 0, 0, 0);
  for (int i = 0; i < 6; i++) sl_freelist_put(&small, objs[i]);
  assert_int_equal(small.n_cached, 4);
  assert_int_equal(destroyed, 2); /* objs[4], objs[5]: the list was full */
  expect_totals("test_small", 6, 0, 2, 4);
  assert_ptr_equal(sl_freelist_get(&small), objs[3]);
  assert_ptr_equal(sl_freelist_get(&small), objs[2]);
  expect_totals("test_small", 6, 2, 2, 2);
  sl_freelist_put(&small, objs[2]);
  sl_freelist_put(&small, objs[3]);
  sl_freelist_drain(&small);
  assert_int_equal(destroyed, 6);
  assert_int_equal(small.n_cached, 0);
  assert_null(small.head);
  expect_totals("test_small", 6, 2, 6, 0);
  assert_false(sl_freelist_totals("no_such_pool", &(struct sl_freelist_totals){0}));
}

static bool has_line(const char *text, const char *line) {
  char want[256];
  snprintf(want, sizeof(want), "\n%s\n", line);
  return strstr(text, want) != NULL;
}

/* Scrapes (collect, then render) and expects each of |lines|. */
static void expect_scrape(const char *const *lines) {
  sl_freelist_collect();
  char *text;
  size_t len;
  assert_int_equal(sl_metrics_render(&text, &len), 0);
  for (; *lines; lines++) {
    if (!has_line(text, *lines)) fail_msg("no line \"%s\" in the scrape", *lines);
  }
  free(text);
}

/* The pipe's chunks go through the freelist: a pipe filled and cleared
 * twice allocates once per chunk and then reuses; the scrape shows it
 * as sluice_pool_* series. */
static void test_pipe_chunks_in_metrics(void **state) {
  (void)state;
  struct sl_pipe p;
  sl_pipe_init(&p, 1 << 20);
  static char buf[3 * SL_CHUNK_SIZE];
  for (int round = 0; round < 2; round++) {
    assert_int_equal(sl_pipe_write(&p, buf, sizeof(buf)), 0);
    sl_pipe_clear(&p);
  }
  expect_totals("pipe_chunk", 3, 3, 0, 3);
  expect_scrape((const char *const[]){
      "# TYPE sluice_pool_objects gauge",
      "sluice_pool_objects{pool=\"pipe_chunk\",state=\"cached\"} 3",
      "sluice_pool_objects{pool=\"pipe_chunk\",state=\"in_use\"} 0",
      "# TYPE sluice_pool_allocations_total counter",
      "sluice_pool_allocations_total{pool=\"pipe_chunk\"} 3",
      "sluice_pool_reuses_total{pool=\"pipe_chunk\"} 3",
      "sluice_pool_frees_total{pool=\"pipe_chunk\"} 0", NULL});

  /* One chunk handed out shows as in use; a second scrape adds only the
   * new counts (counters never double). */
  assert_int_equal(sl_pipe_write(&p, buf, 10), 0);
  sl_chunk_cache_drain();
  expect_scrape((const char *const[]){
      "sluice_pool_objects{pool=\"pipe_chunk\",state=\"cached\"} 0",
      "sluice_pool_objects{pool=\"pipe_chunk\",state=\"in_use\"} 1",
      "sluice_pool_allocations_total{pool=\"pipe_chunk\"} 3",
      "sluice_pool_reuses_total{pool=\"pipe_chunk\"} 4",
      "sluice_pool_frees_total{pool=\"pipe_chunk\"} 2", NULL});
  sl_pipe_clear(&p);
  sl_chunk_cache_drain();
}

/* Threads: each uses its own freelist of one class while this thread
 * scrapes; the sums come out exact once they are done. */
enum { N_THREADS = 4, ROUNDS = 20000, HELD = 8 };

static struct sl_freelist_class shared_class = {.name = "test_threads", .max_cached = 4};
static __thread struct sl_freelist shared = SL_FREELIST_INIT(&shared_class);

static void *worker(void *arg) {
  (void)arg;
  void *held[HELD];
  for (int r = 0; r < ROUNDS; r++) {
    for (int i = 0; i < HELD; i++) {
      held[i] = sl_freelist_get(&shared);
      if (!held[i]) held[i] = malloc(64);
    }
    for (int i = 0; i < HELD; i++) sl_freelist_put(&shared, held[i]);
  }
  sl_freelist_drain(&shared);
  return NULL;
}

static void test_threads_and_scrapes(void **state) {
  (void)state;
  pthread_t th[N_THREADS];
  for (int i = 0; i < N_THREADS; i++) assert_int_equal(pthread_create(&th[i], NULL, worker, NULL), 0);
  for (int i = 0; i < 200; i++) {
    sl_freelist_collect();
    struct sl_freelist_totals t;
    if (sl_freelist_totals("test_threads", &t)) assert_true(t.cached <= N_THREADS * 4);
  }
  for (int i = 0; i < N_THREADS; i++) pthread_join(th[i], NULL);
  /* Per round and thread: 4 hits and 4 misses (4 cached), 4 destroyed
   * on the way back; the drain destroys the last 4. */
  struct sl_freelist_totals t;
  assert_true(sl_freelist_totals("test_threads", &t));
  uint64_t gets = (uint64_t)N_THREADS * ROUNDS * HELD;
  assert_int_equal(t.allocations + t.reuses, gets);
  assert_int_equal(t.reuses, (uint64_t)N_THREADS * (ROUNDS - 1) * 4);
  assert_int_equal(t.cached, 0);
  assert_int_equal(t.frees, t.allocations); /* nothing left in use */
  char line[128];
  snprintf(line, sizeof(line), "sluice_pool_reuses_total{pool=\"test_threads\"} %llu",
           (unsigned long long)t.reuses);
  expect_scrape((const char *const[]){
      line, "sluice_pool_objects{pool=\"test_threads\",state=\"in_use\"} 0", NULL});
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_get_put_bound_drain),
      cmocka_unit_test(test_pipe_chunks_in_metrics),
      cmocka_unit_test(test_threads_and_scrapes),
  };
  int rv = cmocka_run_group_tests(tests, NULL, NULL);
  sl_metrics_reset();
  return rv;
}
