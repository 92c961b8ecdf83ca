/*
 * sluice — configuration generations. See gen.h.
 */
#include <ev.h>
#include <pthread.h>
#include <stdlib.h>

#include "sluice/blocklist.h"
#include "sluice/config.h"
#include "sluice/policy_state.h"
#include "core/clock.h"
#include "core/gen.h"
#include "core/stats.h"

static pthread_mutex_t gen_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sl_gen *gen_current;
static uint64_t gen_counter;

struct sl_gen *sl_gen_ref(struct sl_gen *g) {
  atomic_fetch_add_explicit(&g->refs, 1, memory_order_relaxed);
  return g;
}

static void gen_free(struct sl_gen *g) {
  sl_blocklist_del(g->blocklist);
  sl_policy_set_del(g->policies);
  sl_config_free(g->cfg);
  free(g->listeners);
  free(g);
}

/* Retired generations whose last reference a worker dropped: freeing a
 * large configuration (thousands of blocklist entries) is work for the
 * main thread, not for a worker between two requests. */
static pthread_mutex_t retired_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sl_gen *retired_gens;
static struct ev_loop *retired_loop; /* the main loop, once it runs */
static ev_async retired_async;
static pthread_t main_thread;

static void retired_free_all(void) {
  pthread_mutex_lock(&retired_lock);
  struct sl_gen *g = retired_gens;
  retired_gens = NULL;
  pthread_mutex_unlock(&retired_lock);
  while (g) {
    struct sl_gen *next = g->retired_next;
    gen_free(g);
    g = next;
  }
}

static void retired_cb(struct ev_loop *loop, ev_async *w, int revents) {
  (void)loop;
  (void)w;
  (void)revents;
  retired_free_all();
}

void sl_gen_unref(struct sl_gen *g) {
  if (!g) return;
  if (atomic_fetch_sub_explicit(&g->refs, 1, memory_order_acq_rel) != 1) return;
  if (!retired_loop || pthread_equal(pthread_self(), main_thread)) {
    gen_free(g);
    return;
  }
  pthread_mutex_lock(&retired_lock);
  g->retired_next = retired_gens;
  retired_gens = g;
  pthread_mutex_unlock(&retired_lock);
  ev_async_send(retired_loop, &retired_async);
}

struct sl_gen *sl_gen_current_ref(void) {
  pthread_mutex_lock(&gen_lock);
  struct sl_gen *g = sl_gen_ref(gen_current);
  pthread_mutex_unlock(&gen_lock);
  return g;
}

struct sl_gen *sl_gen_publish(struct sl_config *cfg, struct sl_listener *const *listeners, int n) {
  struct sl_gen *g = calloc(1, sizeof(*g));
  if (!g) abort();
  pthread_mutex_lock(&gen_lock);
  const struct sl_policy_set *prev = gen_current ? gen_current->policies : NULL;
  g->policies = sl_policy_set_new(cfg, prev, sl_now_ns());
  pthread_mutex_unlock(&gen_lock);
  if (!g->policies) abort();
  g->blocklist = sl_blocklist_new(&cfg->blocklist, cfg->mode);
  if (!g->blocklist) abort();
  g->cfg = cfg;
  g->n_listeners = n;
  g->listeners = calloc(n > 0 ? (size_t)n : 1, sizeof(*g->listeners));
  if (!g->listeners) abort();
  for (int i = 0; i < n; i++) g->listeners[i] = listeners[i];
  atomic_init(&g->refs, 1);
  sl_stats_set_rejection_log_rate(cfg->rejection_log_per_sec);
  cfg->generation = ++gen_counter;
  pthread_mutex_lock(&gen_lock);
  struct sl_gen *old = gen_current;
  gen_current = g;
  pthread_mutex_unlock(&gen_lock);
  sl_gen_unref(old);
  return g;
}

uint64_t sl_gen_next_number(void) { return gen_counter + 1; }

void sl_gen_clear(void) {
  pthread_mutex_lock(&gen_lock);
  struct sl_gen *last = gen_current;
  gen_current = NULL;
  pthread_mutex_unlock(&gen_lock);
  sl_gen_unref(last);
}

void sl_gen_defer_start(struct ev_loop *loop) {
  main_thread = pthread_self();
  ev_async_init(&retired_async, retired_cb);
  ev_async_start(loop, &retired_async);
  retired_loop = loop;
}

void sl_gen_defer_stop(void) {
  if (retired_loop) ev_async_stop(retired_loop, &retired_async);
  retired_loop = NULL; /* from here on the main thread frees directly */
  retired_free_all();
}
