/*
 * sluice — per-key in-flight counters (see conc_table.h).
 *
 * Layout: 2^k buckets of SLOTS slots, at least 2 * max_keys slots in
 * all. A slot is one 64-bit word: the key's fingerprint in the high 40
 * bits (never 0) and its count in the low 24 (counts never reach 2^24:
 * the loader caps `max` at 10^7 and a count above the limit is refused),
 * 0 when free. Writers hold the bucket's lock; readers of explain load
 * words relaxed. A handle is the slot's index + 1.
 */
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

#include "sluice/conc_table.h"
#include "sluice/hash.h"

#define SLOTS 16u
#define COUNT_BITS 24
#define COUNT_MASK ((UINT64_C(1) << COUNT_BITS) - 1)

struct bucket {
  atomic_flag lock;
  _Atomic uint64_t slot[SLOTS];
};

struct sl_conc_table {
  struct sl_hash_key key;
  uint64_t mask; /* buckets - 1 */
  uint32_t max_keys;
  _Alignas(64) _Atomic uint32_t keys;
  struct bucket *b;
};

struct sl_conc_table *sl_conc_table_new(uint32_t max_keys, const uint8_t seed[16]) {
  if (max_keys == 0) max_keys = 1000000u;
  uint64_t n = 1;
  while (n * SLOTS < 2 * (uint64_t)max_keys) n <<= 1;
  struct sl_conc_table *t = calloc(1, sizeof(*t));
  if (!t) return NULL;
  t->b = calloc(n, sizeof(*t->b)); /* atomic_flag: clear is all-zero on every target we build */
  if (!t->b) {
    free(t);
    return NULL;
  }
  t->key = sl_hash_key_from(seed);
  t->mask = n - 1;
  t->max_keys = max_keys;
  atomic_init(&t->keys, 0);
  return t;
}

void sl_conc_table_del(struct sl_conc_table *t) {
  if (!t) return;
  free(t->b);
  free(t);
}

/* The key's two candidate buckets (the same one when the hash says so)
 * and its fingerprint (high 40 bits, never 0). Two choices keep buckets
 * even: at 2 * max_keys slots no bucket of 16 fills before the table. */
static void locate(const struct sl_conc_table *t, const void *key, size_t len, uint64_t *fp,
                   struct bucket **b1, struct bucket **b2) {
  uint64_t h[2];
  sl_siphash128(&t->key, key, len, h);
  *fp = h[1] >> COUNT_BITS;
  if (!*fp) *fp = 1;
  uint64_t i = h[0] & t->mask, j = (h[0] >> 32 ^ h[1]) & t->mask;
  *b1 = &t->b[i < j ? i : j];
  *b2 = &t->b[i < j ? j : i];
}

static void lock(struct bucket *b) {
  while (atomic_flag_test_and_set_explicit(&b->lock, memory_order_acquire)) sched_yield();
}

static void unlock(struct bucket *b) { atomic_flag_clear_explicit(&b->lock, memory_order_release); }

/* One more key in flight, if fewer than max_keys are (a CAS: exact). */
static bool take_key(struct sl_conc_table *t) {
  uint32_t n = atomic_load_explicit(&t->keys, memory_order_relaxed);
  do {
    if (n >= t->max_keys) return false;
  } while (!atomic_compare_exchange_weak_explicit(&t->keys, &n, n + 1, memory_order_relaxed,
                                                  memory_order_relaxed));
  return true;
}

/* |fp|'s slot in |b|, or -1; |*free_at| its first free slot (-1: none) and
 * |*used| its slots in use. */
static int find(struct bucket *b, uint64_t fp, int *free_at, unsigned *used) {
  *free_at = -1;
  *used = 0;
  for (unsigned i = 0; i < SLOTS; i++) {
    uint64_t w = atomic_load_explicit(&b->slot[i], memory_order_relaxed);
    if (w >> COUNT_BITS == fp) return (int)i;
    if (w) (*used)++;
    else if (*free_at < 0) *free_at = (int)i;
  }
  return -1;
}

/* Under |b|'s lock (and its twin's): |fp| found at slot |at| or, if -1,
 * new in free slot |free_at|. */
static enum sl_conc_result take(struct sl_conc_table *t, struct bucket *b, int at, int free_at,
                                uint64_t fp, uint32_t limit, uint64_t *handle) {
  if (at >= 0) {
    uint64_t w = atomic_load_explicit(&b->slot[at], memory_order_relaxed);
    if ((limit && (w & COUNT_MASK) >= limit) || (w & COUNT_MASK) == COUNT_MASK)
      return SL_CONC_LIMITED;
    atomic_store_explicit(&b->slot[at], w + 1, memory_order_relaxed);
  } else {
    if (free_at < 0 || !take_key(t)) return SL_CONC_TABLE_FULL;
    atomic_store_explicit(&b->slot[free_at], fp << COUNT_BITS | 1, memory_order_relaxed);
    at = free_at;
  }
  *handle = (uint64_t)(b - t->b) * SLOTS + (uint64_t)at + 1;
  return SL_CONC_TAKEN;
}

enum sl_conc_result sl_conc_table_acquire(struct sl_conc_table *t, const void *key, size_t len,
                                          uint32_t limit, uint64_t *handle) {
  uint64_t fp;
  struct bucket *b1, *b2;
  locate(t, key, len, &fp, &b1, &b2);
  lock(b1); /* in address order: no deadlock with another pair */
  if (b2 != b1) lock(b2);
  int f1, f2;
  unsigned u1, u2;
  int at1 = find(b1, fp, &f1, &u1), at2 = b2 != b1 ? find(b2, fp, &f2, &u2) : -1;
  enum sl_conc_result res;
  if (at1 >= 0 || b2 == b1)
    res = take(t, b1, at1, f1, fp, limit, handle);
  else if (at2 >= 0)
    res = take(t, b2, at2, f2, fp, limit, handle);
  else /* new: the emptier bucket */
    res = (f2 >= 0 && (f1 < 0 || u2 < u1)) ? take(t, b2, -1, f2, fp, limit, handle)
                                           : take(t, b1, -1, f1, fp, limit, handle);
  if (b2 != b1) unlock(b2);
  unlock(b1);
  return res;
}

void sl_conc_table_release(struct sl_conc_table *t, uint64_t handle) {
  if (handle == 0 || handle - 1 > t->mask * SLOTS + SLOTS - 1) abort(); /* a proxy bug */
  struct bucket *b = &t->b[(handle - 1) / SLOTS];
  _Atomic uint64_t *s = &b->slot[(handle - 1) % SLOTS];
  lock(b);
  uint64_t w = atomic_load_explicit(s, memory_order_relaxed);
  if ((w & COUNT_MASK) == 0) abort(); /* a release without an acquire */
  w--;
  if ((w & COUNT_MASK) == 0) w = 0; /* the key's last: its entry is free */
  atomic_store_explicit(s, w, memory_order_relaxed);
  unlock(b);
  if (!w) atomic_fetch_sub_explicit(&t->keys, 1, memory_order_relaxed);
}

uint32_t sl_conc_table_count(const struct sl_conc_table *t, const void *key, size_t len) {
  uint64_t fp;
  struct bucket *b[2];
  locate(t, key, len, &fp, &b[0], &b[1]);
  for (unsigned k = 0; k < 2; k++)
    for (unsigned i = 0; i < SLOTS; i++) {
      uint64_t w = atomic_load_explicit(&b[k]->slot[i], memory_order_relaxed);
      if (w >> COUNT_BITS == fp) return (uint32_t)(w & COUNT_MASK);
    }
  return 0;
}

uint32_t sl_conc_table_keys(const struct sl_conc_table *t) {
  return atomic_load_explicit(&t->keys, memory_order_relaxed);
}

uint32_t sl_conc_table_max_keys(const struct sl_conc_table *t) { return t->max_keys; }
