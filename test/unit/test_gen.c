/*
 * Unit tests for proxy/core/gen.c: configuration generations. Publishing
 * numbers them and carries policy state over; a generation lives while
 * a reference is held; the last reference dropped on another thread is
 * handed to the main loop, which frees it; sl_gen_clear drops the current
 * one. No listener, no worker: generations are plain refcounted objects.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include <ev.h>

/* The statics (current generation, deferred list) are what is tested. */
#include "../../proxy/core/gen.c"

#define EXAMPLE "deploy/examples/sluice.yaml"

static struct sl_config *load(void) {
  struct sl_config_errors errs = {0};
  struct sl_config *cfg = sl_config_load(EXAMPLE, &errs);
  if (!cfg) sl_config_errors_print(&errs, stderr);
  assert_non_null(cfg);
  return cfg;
}

static long refs(struct sl_gen *g) { return atomic_load(&g->refs); }

static void test_publish_numbers_and_current(void **st) {
  (void)st;
  uint64_t n = sl_gen_next_number();
  struct sl_gen *g1 = sl_gen_publish(load(), NULL, 0);
  assert_int_equal(g1->cfg->generation, n);
  assert_int_equal(sl_gen_next_number(), n + 1);
  assert_non_null(g1->blocklist);
  assert_int_equal(refs(g1), 1); /* the current generation's own reference */
  struct sl_gen *c = sl_gen_current_ref();
  assert_ptr_equal(c, g1);
  assert_int_equal(refs(g1), 2);
  sl_gen_unref(c);
  struct sl_gen *g2 = sl_gen_publish(load(), NULL, 0);
  assert_int_equal(g2->cfg->generation, n + 1);
  c = sl_gen_current_ref();
  assert_ptr_equal(c, g2);
  sl_gen_unref(c);
  sl_gen_clear();
  assert_null(gen_current);
}

/* A stream's reference keeps its generation (and configuration) alive
 * across a reload; the policy state of the unchanged policies is the
 * same object in both (ASan reports a use after free if the old
 * generation went away, or if detaching it freed the carried state). */
static void test_old_generation_lives_and_state_carries(void **st) {
  (void)st;
  sl_gen_publish(load(), NULL, 0);
  struct sl_gen *old = sl_gen_current_ref();
  void *state = old->policies->routes[0].rate_limits[0];
  assert_non_null(state);
  struct sl_gen *cur = sl_gen_publish(load(), NULL, 0);
  assert_int_equal(refs(old), 1); /* only ours now */
  assert_ptr_equal(cur->policies->routes[0].rate_limits[0], state);
  assert_int_equal(old->cfg->generation + 1, cur->cfg->generation);
  assert_string_equal(old->cfg->routes[0].name, "connect");
  sl_gen_unref(old); /* main thread, no deferring: freed in place */
  assert_ptr_equal(cur->policies->routes[0].rate_limits[0], state);
  sl_gen_clear();
}

static void *drop_ref(void *g) {
  sl_gen_unref(g);
  return NULL;
}

static struct sl_gen *deferred_head(void) {
  pthread_mutex_lock(&retired_lock);
  struct sl_gen *g = retired_gens;
  pthread_mutex_unlock(&retired_lock);
  return g;
}

/* The last reference dropped on a worker thread: the generation waits on
 * the main loop's list, and the loop's next iteration frees it. A drop
 * that is not the last frees nothing. */
static void test_last_ref_on_other_thread_is_deferred(void **st) {
  (void)st;
  struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
  assert_non_null(loop);
  sl_gen_defer_start(loop);
  sl_gen_publish(load(), NULL, 0);
  struct sl_gen *old = sl_gen_current_ref();
  struct sl_gen *extra = sl_gen_ref(old);
  sl_gen_publish(load(), NULL, 0);
  assert_int_equal(refs(old), 2);

  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, drop_ref, extra), 0);
  pthread_join(t, NULL);
  assert_int_equal(refs(old), 1);
  assert_null(deferred_head());

  assert_int_equal(pthread_create(&t, NULL, drop_ref, old), 0);
  pthread_join(t, NULL);
  assert_ptr_equal(deferred_head(), old);
  assert_null(old->retired_next);

  ev_run(loop, EVRUN_NOWAIT);
  assert_null(deferred_head());

  /* On the main thread a last reference is freed at once. */
  struct sl_gen *c = sl_gen_current_ref();
  sl_gen_clear();
  assert_int_equal(refs(c), 1);
  sl_gen_unref(c);
  assert_null(deferred_head());

  sl_gen_defer_stop();
  ev_loop_destroy(loop);
}

/* After sl_gen_defer_stop a drop on another thread frees in place (the
 * loop is gone at exit), and what was still queued is freed by the stop. */
static void test_defer_stop_frees_pending(void **st) {
  (void)st;
  struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
  sl_gen_defer_start(loop);
  sl_gen_publish(load(), NULL, 0);
  struct sl_gen *old = sl_gen_current_ref();
  sl_gen_publish(load(), NULL, 0);
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, drop_ref, old), 0);
  pthread_join(t, NULL);
  assert_ptr_equal(deferred_head(), old);
  sl_gen_defer_stop();
  assert_null(deferred_head());

  old = sl_gen_current_ref();
  sl_gen_publish(load(), NULL, 0);
  assert_int_equal(pthread_create(&t, NULL, drop_ref, old), 0);
  pthread_join(t, NULL);
  assert_null(deferred_head());
  sl_gen_clear();
  ev_loop_destroy(loop);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_publish_numbers_and_current),
      cmocka_unit_test(test_old_generation_lives_and_state_carries),
      cmocka_unit_test(test_last_ref_on_other_thread_is_deferred),
      cmocka_unit_test(test_defer_stop_frees_pending),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
