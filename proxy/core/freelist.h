/*
 * sluice — per-thread bounded freelists with counters: the one recycler
 * behind pipe chunks (core/pipe.c), streams (core/stream.c) and nghttp2's
 * blocks (front/h2mem.c). After h2o's thread-local buffer bins and
 * HAProxy's per-thread pool caches.
 *
 * A class (`struct sl_freelist_class`, static, one per kind of object)
 * names the pool and bounds how many free objects each thread keeps; a
 * freelist (`struct sl_freelist`, __thread, one per thread per class) holds
 * them, linked through their first word. Taking and giving back cost no
 * lock and no atomic read-modify-write: a hit pops the list; a miss
 * returns NULL and the caller allocates (and initialises) the object
 * itself; an object given back to a full list is destroyed (the class's
 * `destroy`, else free()).
 *
 * Counters. Each thread's counts live in a small heap record registered
 * with its class the first time the thread uses it (a mutex, once), and
 * written only by that thread (relaxed atomic loads and stores, no lock
 * prefix); sl_freelist_collect() sums them on the scraping thread into
 * the metric families
 *
 *   sluice_pool_objects{pool,state="cached"|"in_use"}          gauge
 *   sluice_pool_allocations_total{pool}  misses: the caller allocated
 *   sluice_pool_reuses_total{pool}       hits: served from a freelist
 *   sluice_pool_frees_total{pool}        destroyed: list full, or drained
 *
 * with in_use = allocations - frees - cached. A thread's record outlives
 * the thread, so the totals never go backwards.
 */
#ifndef SLUICE_PROXY_FREELIST_H
#define SLUICE_PROXY_FREELIST_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One thread's counts for one class (see above). */
struct sl_freelist_counts {
  _Atomic uint64_t allocations, reuses, frees, cached;
  struct sl_freelist_counts *next; /* the class's records */
};

struct sl_freelist_class {
  const char *name;     /* the `pool` label */
  uint32_t max_cached;  /* free objects each thread keeps */
  void (*destroy)(void *obj); /* NULL: free() */
  /* Registry (sl_freelist.c): guarded by its mutex. */
  struct sl_freelist_counts *counts;
  struct sl_freelist_class *next;
  bool registered;
};

struct sl_freelist {
  struct sl_freelist_class *cls;
  void *head;
  uint32_t n_cached;
  /* cls->max_cached, copied at this thread's first use (0 until then, so
   * that first put takes the cold path that registers the counts). */
  uint32_t max_cached;
  struct sl_freelist_counts *counts; /* NULL until this thread's first use */
};

/* Initialiser of a __thread freelist of |cls|:
 *   static __thread struct sl_freelist fl = SL_FREELIST_INIT(&cls); */
#define SL_FREELIST_INIT(c) {.cls = (c)}

/* Cold paths (freelist.c). */
void *sl_freelist_miss(struct sl_freelist *fl);
void sl_freelist_overflow(struct sl_freelist *fl, void *obj);

static inline void sl_freelist_count(_Atomic uint64_t *ctr, uint64_t v) {
  atomic_store_explicit(ctr, v, memory_order_relaxed);
}
static inline uint64_t sl_freelist_counted(_Atomic uint64_t *ctr) {
  return atomic_load_explicit(ctr, memory_order_relaxed);
}

/* A free object of the class, or NULL: then allocate one (counted as an
 * allocation). A reused object holds whatever it held when given back. */
static inline void *sl_freelist_get(struct sl_freelist *fl) {
  void *obj = fl->head;
  if (__builtin_expect(obj == NULL, 0)) return sl_freelist_miss(fl);
  fl->head = *(void **)obj;
  fl->n_cached--;
  struct sl_freelist_counts *k = fl->counts; /* set: |obj| was given back here */
  sl_freelist_count(&k->reuses, sl_freelist_counted(&k->reuses) + 1);
  sl_freelist_count(&k->cached, fl->n_cached);
  return obj;
}

/* Gives |obj| back: kept for reuse, or destroyed if the list is full.
 * Its first word is overwritten. */
static inline void sl_freelist_put(struct sl_freelist *fl, void *obj) {
  if (__builtin_expect(fl->n_cached >= fl->max_cached, 0)) {
    sl_freelist_overflow(fl, obj);
    return;
  }
  *(void **)obj = fl->head;
  fl->head = obj;
  fl->n_cached++;
  sl_freelist_count(&fl->counts->cached, fl->n_cached);
}

/* Destroys |obj| at once instead of keeping it, counted as a free: for
 * memory the caller wants back in the system now (an idle h2 session put
 * to sleep, front/h2sleep.h), where a cached block would stay resident. */
void sl_freelist_destroy(struct sl_freelist *fl, void *obj);

/* Destroys the calling thread's free objects of |fl| (worker exit, tests). */
void sl_freelist_drain(struct sl_freelist *fl);

/* Sums every thread's counts into the sluice_pool_* families (registered
 * on the first call). Call on the thread that renders /metrics, before
 * rendering. */
void sl_freelist_collect(void);

/* The summed counts of class |name| (tests, /explain); false if no thread
 * used it yet. */
struct sl_freelist_totals {
  uint64_t allocations, reuses, frees, cached;
};
bool sl_freelist_totals(const char *name, struct sl_freelist_totals *out);

#endif
