/*
 * sluice — per-thread bounded freelists. See freelist.h.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/metrics.h"
#include "core/freelist.h"

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sl_freelist_class *classes;

/* The calling thread's first use of |fl|: its counts record, registered
 * with the class (and the class with the registry). Aborts on OOM: a few
 * dozen bytes per worker and class, at the first request. */
static struct sl_freelist_counts *freelist_counts(struct sl_freelist *fl) {
  if (fl->counts) return fl->counts;
  struct sl_freelist_counts *k = calloc(1, sizeof(*k));
  if (!k) abort();
  pthread_mutex_lock(&registry_lock);
  struct sl_freelist_class *c = fl->cls;
  if (!c->registered) {
    c->registered = true;
    c->next = classes;
    classes = c;
  }
  k->next = c->counts;
  c->counts = k;
  pthread_mutex_unlock(&registry_lock);
  fl->counts = k;
  fl->max_cached = c->max_cached;
  return k;
}

static void freelist_destroy(struct sl_freelist *fl, void *obj) {
  if (fl->cls->destroy)
    fl->cls->destroy(obj);
  else
    free(obj);
}

void *sl_freelist_miss(struct sl_freelist *fl) {
  struct sl_freelist_counts *k = freelist_counts(fl);
  sl_freelist_count(&k->allocations, sl_freelist_counted(&k->allocations) + 1);
  return NULL;
}

void sl_freelist_overflow(struct sl_freelist *fl, void *obj) {
  struct sl_freelist_counts *k = freelist_counts(fl);
  if (fl->n_cached < fl->max_cached) {
    sl_freelist_put(fl, obj); /* first use on this thread: now counted */
    return;
  }
  sl_freelist_count(&k->frees, sl_freelist_counted(&k->frees) + 1);
  freelist_destroy(fl, obj);
}

void sl_freelist_destroy(struct sl_freelist *fl, void *obj) {
  struct sl_freelist_counts *k = freelist_counts(fl);
  sl_freelist_count(&k->frees, sl_freelist_counted(&k->frees) + 1);
  freelist_destroy(fl, obj);
}

void sl_freelist_drain(struct sl_freelist *fl) {
  uint32_t n = 0;
  while (fl->head) {
    void *obj = fl->head;
    fl->head = *(void **)obj;
    freelist_destroy(fl, obj);
    n++;
  }
  fl->n_cached = 0;
  struct sl_freelist_counts *k = fl->counts;
  if (!k) return;
  sl_freelist_count(&k->frees, sl_freelist_counted(&k->frees) + n);
  sl_freelist_count(&k->cached, 0);
}

/* Sums |c|'s records; the registry lock is held. */
static void class_totals(const struct sl_freelist_class *c, struct sl_freelist_totals *t) {
  memset(t, 0, sizeof(*t));
  for (struct sl_freelist_counts *k = c->counts; k; k = k->next) {
    t->allocations += sl_freelist_counted(&k->allocations);
    t->reuses += sl_freelist_counted(&k->reuses);
    t->frees += sl_freelist_counted(&k->frees);
    t->cached += sl_freelist_counted(&k->cached);
  }
}

bool sl_freelist_totals(const char *name, struct sl_freelist_totals *out) {
  bool found = false;
  memset(out, 0, sizeof(*out));
  pthread_mutex_lock(&registry_lock);
  for (struct sl_freelist_class *c = classes; c; c = c->next) {
    if (strcmp(c->name, name) != 0) continue;
    class_totals(c, out);
    found = true;
    break;
  }
  pthread_mutex_unlock(&registry_lock);
  return found;
}

static struct sl_metric_series *series_of(struct sl_metric_family *f, const char *pool,
                                          const char *state) {
  const char *values[2] = {pool, state};
  return sl_metrics_series(f, values);
}

/* Counters only move forward: add what was counted since the last scrape
 * (the registry lock serialises scrapes). */
static void publish(struct sl_metric_family *f, const char *pool, uint64_t total) {
  struct sl_metric_series *s = series_of(f, pool, NULL);
  if (!s) return;
  uint64_t shown = sl_metric_counter_value(s);
  if (total > shown) sl_metric_add(s, total - shown);
}

/* Families and series are looked up at each scrape, not kept: the
 * registry may have been reset since (tests). */
void sl_freelist_collect(void) {
  struct sl_metric_family *objects = sl_metrics_family(
      "sluice_pool_objects",
      "Objects of a recycling pool: held free for reuse (cached) or handed out (in_use).",
      SL_METRIC_GAUGE, "pool,state");
  struct sl_metric_family *allocations = sl_metrics_family(
      "sluice_pool_allocations_total",
      "Objects a recycling pool could not serve from its freelists (allocated).",
      SL_METRIC_COUNTER, "pool");
  struct sl_metric_family *reuses =
      sl_metrics_family("sluice_pool_reuses_total",
                        "Objects a recycling pool served from its freelists.", SL_METRIC_COUNTER,
                        "pool");
  struct sl_metric_family *frees = sl_metrics_family(
      "sluice_pool_frees_total",
      "Objects a recycling pool gave back to the allocator (freelist full, or drained).",
      SL_METRIC_COUNTER, "pool");
  pthread_mutex_lock(&registry_lock);
  for (struct sl_freelist_class *c = classes; c; c = c->next) {
    struct sl_freelist_totals t;
    class_totals(c, &t);
    /* Each record is read at a slightly different instant: clamp. */
    uint64_t gone = t.frees + t.cached;
    int64_t in_use = t.allocations > gone ? (int64_t)(t.allocations - gone) : 0;
    struct sl_metric_series *s = series_of(objects, c->name, "cached");
    if (s) sl_metric_gauge_set(s, (int64_t)t.cached);
    s = series_of(objects, c->name, "in_use");
    if (s) sl_metric_gauge_set(s, in_use);
    publish(allocations, c->name, t.allocations);
    publish(reuses, c->name, t.reuses);
    publish(frees, c->name, t.frees);
  }
  pthread_mutex_unlock(&registry_lock);
}
