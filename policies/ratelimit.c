/*
 * sluice — GCRA rate limiting and the shared limiter table.
 *
 * GCRA (virtual scheduling form). With period T and burst B, a key's state
 * is its theoretical arrival time TAT. A request at `now` computes
 *
 *   t       = max(TAT, now)
 *   new_tat = t + T
 *   allow   = new_tat - B*T
 *
 * and is admitted iff allow <= now, in which case TAT := new_tat. A request
 * that is refused writes nothing, so a client hammering a limit is limited
 * to the rate and never locked out. retry_after = allow - now is exact: at
 * that instant the same request is admitted. TAT <= now means the bucket is
 * full again: such a state carries no information and is equivalent to
 * the key being absent, which is what makes eviction of idle keys safe.
 *
 * Table layout. The whole key, however long, is hashed with SipHash-1-3
 * in its 128-bit output form, keyed with a per-table random seed (a client
 * must not be able to aim many keys at one bucket nor choose a collision).
 * The two 64-bit halves are independent: the high half picks the key's two
 * buckets, the low half is the stored fingerprint (0 marks an empty slot).
 * Two keys share a state only if they agree on the fingerprint and share a
 * bucket, so a state is identified by about 64 + log2(buckets) - 1 bits
 * (81 bits for 1M keys): the chance that any two of 1M resident keys are
 * confused is about 1e12 / 2^82 = 2e-13, and the per-table key makes it
 * impossible to aim for. The full key is not stored (memory: below).
 *
 * Each bucket is 128 bytes, two cache lines:
 *
 *   line 0: lock (4) | pad (4) | fp[7] (56)
 *   line 1: tat[7] (56) | cls[7] (7) | spare (1)
 *
 * `cls` is the parameter class that last charged the slot (0: the limit's
 * own rate, 1 + i: its override i), so that a reload changing a rate or a
 * burst can convert each key's state with the parameters it was charged
 * with (sl_ratelimit_reparam).
 *
 * A key may live in either of two buckets (b1, b2 derived from its hash) and
 * is inserted into the less loaded one: "power of two choices" keeps the
 * fullest bucket near the mean, so a bucket fills (forcing eviction or the
 * overflow bucket) only when the table is nearly full, where one choice
 * would start failing at half load (P(Poisson(3.5) >= 7) = 6.5%). The
 * table has ceil(max_keys * 1.25 / 7) buckets: 128 * 1.25 / 7 = 22.9 bytes
 * per key, so 1,000,000 keys take 21.8 MiB, well inside the 64 bytes/key
 * budget. The array comes from calloc (mmap for large sizes), so memory is
 * faulted in as buckets are first used.
 *
 * Locking. One spinlock per bucket, embedded in the bucket's first cache
 * line, the line a lookup reads anyway (so taking the lock costs no extra
 * miss and there are as many locks as buckets: contention only between
 * requests for keys of the same bucket). Per-entry CAS was rejected: an
 * eviction must replace fingerprint and TAT together, and a 16-byte CAS is
 * not portable C11 (libatomic locks, or -mcx16). A spinlock rather than a
 * mutex because the critical section is a few dozen instructions with no
 * call, no allocation and no syscall; a waiter spins with a pause hint
 * and yields the CPU after ~1000 spins in case the holder was preempted.
 * A lookup takes b1's lock; if the key is not there it also takes b2's,
 * always in address order (b1 may be dropped and re-taken to respect that),
 * so most hits cost one uncontended atomic exchange. A key is inserted only
 * with both of its buckets locked after checking it is in neither, so a
 * key is never resident twice.
 *
 * Capacity. The resident key count is one atomic, touched only on insert
 * and removal, never on a hit. A new key is inserted into a free slot of its
 * buckets while the count is below max_keys; otherwise it replaces the
 * longest-idle key among its 14 candidate slots whose TAT <= now (full
 * again: no information lost, an active abuser never gets a fresh bucket);
 * when every candidate is active, the request is decided by one overflow
 * GCRA state shared by all such keys (at the rate/burst of the request),
 * so new keys are limited together rather than going unlimited.
 */
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/hash.h"
#include "sluice/ratelimit.h"

#define SLOTS 7

struct bucket {
  _Atomic uint32_t lock;
  uint32_t pad;
  uint64_t fp[SLOTS]; /* 0: empty */
  uint64_t tat[SLOTS];
  uint8_t cls[SLOTS]; /* parameter class of the last charge */
  uint8_t spare;
};

_Static_assert(sizeof(struct bucket) == 128, "bucket must be two cache lines");

struct sl_ratelimit_table {
  struct bucket *buckets; /* 64-byte aligned inside |mem| */
  void *mem;
  uint64_t nbuckets;
  uint64_t max_keys;
  struct sl_hash_key key; /* SipHash key (sluice/hash.h) */
  size_t bytes;
  _Alignas(64) _Atomic uint64_t nkeys;
  _Atomic uint64_t evictions;
  _Atomic uint64_t overflow_hits;
  _Atomic uint64_t sweep_cursor;
  _Alignas(64) _Atomic uint64_t overflow_tat;
};

/* ---- GCRA ---------------------------------------------------------- */

static inline uint64_t sat_add(uint64_t a, uint64_t b) {
  uint64_t r;
  return __builtin_add_overflow(a, b, &r) ? UINT64_MAX : r;
}

static inline uint64_t sat_mul(uint64_t a, uint64_t b) {
  uint64_t r;
  return __builtin_mul_overflow(a, b, &r) ? UINT64_MAX : r;
}

/* The decision for a state |tat| (not written). Returns the TAT to store
 * if admitted. */
static inline uint64_t gcra(uint64_t tat, uint64_t period, uint32_t burst, uint64_t now,
                            struct sl_rl_verdict *v) {
  if (burst == 0) burst = 1;
  v->overflow = false;
  v->fresh = tat <= now;
  if (period == 0) { /* no limit */
    v->admitted = true;
    v->remaining = burst;
    v->retry_after_ns = v->reset_ns = 0;
    return tat;
  }
  uint64_t tau = sat_mul(period, burst);
  uint64_t t = tat > now ? tat : now;
  uint64_t new_tat = sat_add(t, period);
  uint64_t allow = new_tat > tau ? new_tat - tau : 0;
  if (allow <= now) {
    v->admitted = true;
    v->retry_after_ns = 0;
    v->reset_ns = new_tat - now;
    /* Room left after this one: (now + tau - new_tat) / T. */
    uint64_t room = tau - (new_tat - now);
    uint64_t rem = room / period;
    v->remaining = rem > UINT32_MAX ? UINT32_MAX : (uint32_t)rem;
    return new_tat;
  }
  v->admitted = false;
  v->retry_after_ns = allow - now;
  v->reset_ns = t - now;
  v->remaining = 0;
  return tat;
}

bool sl_gcra_step(uint64_t *tat, uint64_t period_ns, uint32_t burst, uint64_t now_ns, bool commit,
                  struct sl_rl_verdict *v) {
  uint64_t n = gcra(*tat, period_ns, burst, now_ns, v);
  if (commit && v->admitted) *tat = n;
  return v->admitted;
}

/* ---- spinlock ------------------------------------------------------ */

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

static inline void spin_lock(_Atomic uint32_t *l) {
  unsigned spins = 0;
  for (;;) {
    if (!atomic_exchange_explicit(l, 1, memory_order_acquire)) return;
    while (atomic_load_explicit(l, memory_order_relaxed)) {
      cpu_relax();
      if (++spins >= 1024) { /* the holder may have been preempted */
        sched_yield();
        spins = 0;
      }
    }
  }
}

static inline bool spin_trylock(_Atomic uint32_t *l) {
  return !atomic_load_explicit(l, memory_order_relaxed) &&
         !atomic_exchange_explicit(l, 1, memory_order_acquire);
}

static inline void spin_unlock(_Atomic uint32_t *l) {
  atomic_store_explicit(l, 0, memory_order_release);
}

/* ---- table --------------------------------------------------------- */

struct sl_ratelimit_table *sl_ratelimit_table_new(uint32_t max_keys, const uint8_t seed[16]) {
  struct sl_ratelimit_table *t = calloc(1, sizeof(*t));
  if (!t) return NULL;
  if (max_keys == 0) max_keys = SL_RATELIMIT_DEFAULT_MAX_KEYS;
  uint64_t nb = ((uint64_t)max_keys * 5 / 4 + SLOTS - 1) / SLOTS;
  if (nb < 2) nb = 2; /* two distinct choices */
  t->nbuckets = nb;
  t->max_keys = max_keys;
  t->bytes = (size_t)nb * sizeof(struct bucket) + 64;
  t->mem = calloc(1, t->bytes);
  if (!t->mem) {
    free(t);
    return NULL;
  }
  t->buckets = (struct bucket *)(((uintptr_t)t->mem + 63) & ~(uintptr_t)63);
  t->key = sl_hash_key_from(seed);
  return t;
}

void sl_ratelimit_table_del(struct sl_ratelimit_table *t) {
  if (!t) return;
  free(t->mem);
  free(t);
}

/* Multiply-shift range reduction (Lemire): uniform in [0, n) from the high
 * bits of |h|, no division. */
static inline uint64_t reduce(uint64_t h, uint64_t n) {
  return (uint64_t)(((unsigned __int128)h * n) >> 64);
}

struct keyref {
  uint64_t fp;
  struct bucket *b1, *b2;
  uint8_t cls;
};

static inline void key_locate(const struct sl_ratelimit_table *t, const void *key, size_t len,
                              struct keyref *k) {
  uint64_t hh[2];
  sl_siphash128(&t->key, key, len, hh);
  k->fp = hh[0] ? hh[0] : 1;
  k->cls = 0;
  uint64_t h = hh[1];
  uint64_t h2 = (h ^ (h >> 31)) * 0xbf58476d1ce4e5b9ULL;
  h2 ^= h2 >> 27;
  uint64_t i1 = reduce(h, t->nbuckets), i2 = reduce(h2 * 0x94d049bb133111ebULL, t->nbuckets);
  if (i2 == i1) i2 = i1 + 1 == t->nbuckets ? 0 : i1 + 1;
  k->b1 = &t->buckets[i1];
  k->b2 = &t->buckets[i2];
  /* A large table lives in DRAM: start both buckets' misses now so they
   * overlap (the second is needed for about half of the keys). */
  __builtin_prefetch(k->b1, 1);
  __builtin_prefetch(k->b2, 1);
}

static inline int bucket_find(const struct bucket *b, uint64_t fp) {
  for (int i = 0; i < SLOTS; i++)
    if (b->fp[i] == fp) return i;
  return -1;
}

static inline int bucket_load(const struct bucket *b) {
  int n = 0;
  for (int i = 0; i < SLOTS; i++) n += b->fp[i] != 0;
  return n;
}

/* Takes b2's lock while b1's is held, keeping the address order. */
static void lock_second(struct bucket *held, struct bucket *other) {
  if (other > held) {
    spin_lock(&other->lock);
  } else if (!spin_trylock(&other->lock)) {
    spin_unlock(&held->lock);
    spin_lock(&other->lock);
    spin_lock(&held->lock);
  }
}

/* Where a new key would go, both buckets locked. Returns the bucket and
 * sets *slot, with *is_free telling whether the slot is empty (else it
 * holds an idle key to evict); NULL when the key must use the overflow
 * bucket. */
static struct bucket *choose_slot(const struct sl_ratelimit_table *t, const struct keyref *k,
                                  uint64_t now, int *slot, bool *is_free) {
  uint64_t nkeys = atomic_load_explicit(&t->nkeys, memory_order_relaxed);
  if (nkeys < t->max_keys) {
    int l1 = bucket_load(k->b1), l2 = bucket_load(k->b2);
    struct bucket *b = l2 < l1 ? k->b2 : k->b1;
    if (bucket_load(b) < SLOTS) {
      *slot = bucket_find(b, 0);
      *is_free = true;
      return b;
    }
  }
  struct bucket *best = NULL;
  uint64_t best_tat = UINT64_MAX;
  struct bucket *bs[2] = {k->b1, k->b2};
  for (int j = 0; j < 2; j++)
    for (int i = 0; i < SLOTS; i++) {
      if (bs[j]->fp[i] && bs[j]->tat[i] <= now && (!best || bs[j]->tat[i] < best_tat)) {
        best = bs[j];
        best_tat = bs[j]->tat[i];
        *slot = i;
      }
    }
  *is_free = false;
  return best;
}

static bool overflow_decide(struct sl_ratelimit_table *t, uint64_t period, uint32_t burst,
                            uint64_t now, bool commit, struct sl_rl_verdict *v) {
  uint64_t cur = atomic_load_explicit(&t->overflow_tat, memory_order_relaxed);
  for (;;) {
    uint64_t next = gcra(cur, period, burst, now, v);
    if (!commit || !v->admitted) break;
    if (atomic_compare_exchange_weak_explicit(&t->overflow_tat, &cur, next, memory_order_relaxed,
                                              memory_order_relaxed))
      break;
  }
  v->overflow = true;
  v->fresh = true;
  if (commit) atomic_fetch_add_explicit(&t->overflow_hits, 1, memory_order_relaxed);
  return v->admitted;
}

static bool decide_located(struct sl_ratelimit_table *t, const struct keyref *kr, uint64_t period,
                           uint32_t burst, uint64_t now, bool commit, struct sl_rl_verdict *v) {
  struct keyref k = *kr;

  /* Fast path: the key is in its first bucket. */
  spin_lock(&k.b1->lock);
  int i = bucket_find(k.b1, k.fp);
  if (i >= 0) {
    uint64_t n = gcra(k.b1->tat[i], period, burst, now, v);
    if (commit && v->admitted) {
      k.b1->tat[i] = n;
      k.b1->cls[i] = k.cls;
    }
    spin_unlock(&k.b1->lock);
    return v->admitted;
  }
  lock_second(k.b1, k.b2);
  struct bucket *b = k.b1;
  if ((i = bucket_find(k.b1, k.fp)) < 0) { /* b1 may have been re-locked */
    b = k.b2;
    i = bucket_find(k.b2, k.fp);
  }
  if (i >= 0) {
    uint64_t n = gcra(b->tat[i], period, burst, now, v);
    if (commit && v->admitted) {
      b->tat[i] = n;
      b->cls[i] = k.cls;
    }
    goto out;
  }

  /* A new key: a full bucket, so the decision itself does not depend on
   * where it goes; only whether it has a place at all. */
  bool is_free;
  b = choose_slot(t, &k, now, &i, &is_free);
  if (!b) {
    spin_unlock(&k.b1->lock);
    spin_unlock(&k.b2->lock);
    return overflow_decide(t, period, burst, now, commit, v);
  }
  uint64_t n = gcra(0, period, burst, now, v);
  if (commit && v->admitted) {
    if (is_free) {
      /* Reserve a place in the count; another thread may have taken the
       * last one since choose_slot() looked. */
      if (atomic_fetch_add_explicit(&t->nkeys, 1, memory_order_relaxed) >= t->max_keys) {
        atomic_fetch_sub_explicit(&t->nkeys, 1, memory_order_relaxed);
        spin_unlock(&k.b1->lock);
        spin_unlock(&k.b2->lock);
        return overflow_decide(t, period, burst, now, commit, v);
      }
    } else {
      atomic_fetch_add_explicit(&t->evictions, 1, memory_order_relaxed);
    }
    b->fp[i] = k.fp;
    b->tat[i] = n;
    b->cls[i] = k.cls;
  }
out:
  spin_unlock(&k.b1->lock);
  spin_unlock(&k.b2->lock);
  return v->admitted;
}

static bool decide(struct sl_ratelimit_table *t, const void *key, size_t len, uint64_t period,
                   uint32_t burst, uint64_t now, bool commit, struct sl_rl_verdict *v) {
  struct keyref k;
  key_locate(t, key, len, &k);
  return decide_located(t, &k, period, burst, now, commit, v);
}

void sl_ratelimit_locate(const struct sl_ratelimit_table *t, const void *key, size_t len,
                         struct sl_rl_ref *ref) {
  struct keyref k;
  key_locate(t, key, len, &k);
  ref->fp = k.fp;
  ref->b1 = k.b1;
  ref->b2 = k.b2;
  ref->cls = 0;
}

bool sl_ratelimit_decide_ref(struct sl_ratelimit_table *t, const struct sl_rl_ref *ref,
                             uint64_t period_ns, uint32_t burst, uint64_t now_ns, bool commit,
                             struct sl_rl_verdict *v) {
  struct keyref k = {ref->fp, ref->b1, ref->b2, ref->cls};
  return decide_located(t, &k, period_ns, burst, now_ns, commit, v);
}

/* Gives back one charge of |period| to a state: the inverse of an
 * admission (TAT := max(TAT, now) + T), whatever was charged since,
 * because charges add up. A TAT that falls to or below now is a full
 * bucket, as if the key had not been charged. */
static inline uint64_t uncharge(uint64_t tat, uint64_t period) {
  return tat > period ? tat - period : 0;
}

void sl_ratelimit_refund(struct sl_ratelimit_table *t, const struct sl_rl_ref *ref,
                         uint64_t period_ns) {
  if (period_ns == 0) return;
  struct bucket *b1 = ref->b1, *b2 = ref->b2;
  spin_lock(&b1->lock);
  lock_second(b1, b2);
  /* A key charged moments ago has its TAT in the future, so neither
   * eviction nor the sweep (both take only TAT <= now) has removed it: if
   * it is not resident, its charge went to the overflow bucket. */
  struct bucket *b = b1;
  int i = bucket_find(b1, ref->fp);
  if (i < 0) i = bucket_find(b = b2, ref->fp);
  if (i >= 0) b->tat[i] = uncharge(b->tat[i], period_ns);
  spin_unlock(&b2->lock);
  spin_unlock(&b1->lock);
  if (i >= 0) return;
  uint64_t cur = atomic_load_explicit(&t->overflow_tat, memory_order_relaxed);
  while (!atomic_compare_exchange_weak_explicit(&t->overflow_tat, &cur, uncharge(cur, period_ns),
                                                memory_order_relaxed, memory_order_relaxed)) {
  }
}

/* The debt of a state (TAT - now, the time until its bucket is full) in
 * the units of another period: the same number of tokens consumed
 * (fractions kept), at most a whole new bucket. */
static uint64_t reparam_tat(uint64_t tat, uint64_t now, const struct sl_rl_reparam *r) {
  if (tat <= now || r->from_period_ns == 0 || r->to_period_ns == 0) return tat;
  unsigned __int128 debt = (unsigned __int128)(tat - now) * r->to_period_ns / r->from_period_ns;
  uint64_t cap = sat_mul(r->to_period_ns, r->to_burst ? r->to_burst : 1);
  if (debt > cap) debt = cap;
  return sat_add(now, (uint64_t)debt);
}

size_t sl_ratelimit_reparam(struct sl_ratelimit_table *t, const struct sl_rl_reparam *map,
                            size_t n, uint64_t now_ns) {
  size_t changed = 0;
  if (n == 0) return 0;
  for (uint64_t j = 0; j < t->nbuckets; j++) {
    struct bucket *b = &t->buckets[j];
    spin_lock(&b->lock);
    for (int i = 0; i < SLOTS; i++) {
      if (!b->fp[i] || b->tat[i] <= now_ns) continue;
      const struct sl_rl_reparam *r = &map[b->cls[i] < n ? b->cls[i] : 0];
      b->tat[i] = reparam_tat(b->tat[i], now_ns, r);
      b->cls[i] = r->to_cls;
      changed++;
    }
    spin_unlock(&b->lock);
  }
  uint64_t cur = atomic_load_explicit(&t->overflow_tat, memory_order_relaxed);
  while (!atomic_compare_exchange_weak_explicit(&t->overflow_tat, &cur,
                                                reparam_tat(cur, now_ns, &map[0]),
                                                memory_order_relaxed, memory_order_relaxed)) {
  }
  return changed;
}

bool sl_ratelimit_admit(struct sl_ratelimit_table *t, const void *key, size_t len,
                        uint64_t period_ns, uint32_t burst, uint64_t now_ns,
                        struct sl_rl_verdict *v) {
  return decide(t, key, len, period_ns, burst, now_ns, true, v);
}

bool sl_ratelimit_peek(struct sl_ratelimit_table *t, const void *key, size_t len,
                       uint64_t period_ns, uint32_t burst, uint64_t now_ns,
                       struct sl_rl_verdict *v) {
  return decide(t, key, len, period_ns, burst, now_ns, false, v);
}

uint64_t sl_ratelimit_keys(const struct sl_ratelimit_table *t) {
  return atomic_load_explicit(&t->nkeys, memory_order_relaxed);
}

void sl_ratelimit_stats(const struct sl_ratelimit_table *t, struct sl_rl_stats *out) {
  out->keys = atomic_load_explicit(&t->nkeys, memory_order_relaxed);
  out->max_keys = t->max_keys;
  out->evictions = atomic_load_explicit(&t->evictions, memory_order_relaxed);
  out->overflow = atomic_load_explicit(&t->overflow_hits, memory_order_relaxed);
  out->memory_bytes = t->bytes + sizeof(*t);
}

size_t sl_ratelimit_sweep(struct sl_ratelimit_table *t, uint64_t now_ns, size_t max_buckets) {
  size_t removed = 0;
  if (max_buckets > t->nbuckets) max_buckets = t->nbuckets;
  uint64_t start = atomic_fetch_add_explicit(&t->sweep_cursor, max_buckets, memory_order_relaxed);
  for (size_t j = 0; j < max_buckets; j++) {
    struct bucket *b = &t->buckets[(start + j) % t->nbuckets];
    spin_lock(&b->lock);
    for (int i = 0; i < SLOTS; i++) {
      if (b->fp[i] && b->tat[i] <= now_ns) {
        b->fp[i] = 0;
        b->tat[i] = 0;
        removed++;
      }
    }
    spin_unlock(&b->lock);
  }
  if (removed) atomic_fetch_sub_explicit(&t->nkeys, removed, memory_order_relaxed);
  return removed;
}
