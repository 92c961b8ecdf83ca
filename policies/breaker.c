/*
 * sluice — per-upstream circuit breaker (see breaker.h for the states).
 *
 * Shared state read without the mutex: `state`, `epoch`, `open_until`, the
 * ramp bounds and the outcome counts, all atomics. Writers hold the mutex and publish `state`
 * last (release), so an admission that sees a state (acquire) also sees
 * the open_until / ramp values that came with it.
 *
 * The report path (every upstream response of every worker) takes no lock
 * while the breaker is closed. Outcomes are counted in per-thread shards
 * (NSHARDS; a thread takes the next shard on its first report, so workers
 * up to NSHARDS never share one) and the shards are summed only when a
 * failure asks whether to open. Each shard's failure-ratio window is a
 * ring of 10 slots, each window/10 wide, tagged with the breaker epoch and
 * the slot number (now / width), so old slots expire by themselves and a
 * state change empties the window without touching it: the ratio is over
 * the last 9 to 10 tenths of `window`, in the current epoch. The
 * consecutive-failure count is one shared atomic, written by a success
 * only when it is not 0 already (healthy traffic only reads it). The mutex
 * is taken to change state (rare) and in half-open (a handful of probes).
 * Threads that share a shard can lose a count when they race at a slot
 * change, and outcomes racing a state change may be counted in the epoch
 * they were admitted in: the breaker works on rates, not exact tallies.
 *
 * Epochs. Every transition increments `epoch`, and a verdict carries the
 * epoch it was given in; a report from another epoch is ignored. That keeps
 * the state machine honest with slow responses: a request admitted while
 * closed that fails after the breaker opened does not extend the open
 * period, nor count as a failed probe in half-open, nor as a failure of the
 * new closed period.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/breaker.h"

#define NSLOTS 10
#define NSHARDS 16
#define MS 1000000ull
#define SLOT_ID_BITS 40 /* a slot's tag: epoch (low 24 bits) << 40 | slot number */
#define SLOT_UNUSED UINT64_MAX

struct slot {
  _Atomic uint64_t tag; /* SLOT_UNUSED, or slot_tag() when last written */
  _Atomic uint32_t total, failures;
};

struct shard {
  _Alignas(64) struct slot slots[NSLOTS];
};

/* The settings a reload may change while the breaker keeps its state
 * (sl_breaker_retune): read lock-free by every worker, hence atomics. */
struct tunables {
  _Atomic bool enabled;
  _Atomic uint32_t consecutive_failures, min_requests, half_open_probes;
  _Atomic uint64_t failure_ratio_bits; /* a double */
  _Atomic uint64_t slot_ns;            /* window / NSLOTS */
  _Atomic uint64_t slow_call_ns, open_for_ns, recovery_ramp_ns;
};

#define TUN(b, f) atomic_load_explicit(&(b)->tun.f, memory_order_relaxed)

struct sl_breaker {
  struct tunables tun;
  _Atomic uint32_t state;
  _Atomic uint32_t epoch;
  _Atomic uint64_t open_until;
  _Atomic uint64_t ramp_start, ramp_end; /* ramp_end 0: no ramp */
  _Atomic uint64_t opened_total;
  /* What the upstream served while the breaker was last closed: one
   * success every serve_period_ns over the window before it opened (0:
   * none seen, unknown). The crowd the breaker refuses is spread at that
   * rate over `horizon` (sluice/horizon.h), from the time it half-opens. */
  _Atomic uint64_t serve_period_ns;
  _Atomic uint64_t horizon;
  pthread_mutex_t mu;
  /* Under mu: */
  uint32_t probes_in_flight, probe_successes;
  /* Lock-free (closed state): */
  _Alignas(64) _Atomic uint32_t consecutive;
  struct shard shards[NSHARDS];
};

static uint64_t sat_add(uint64_t a, uint64_t b) {
  uint64_t r;
  return __builtin_add_overflow(a, b, &r) ? UINT64_MAX : r;
}

static uint64_t ms_to_ns(uint64_t ms) {
  uint64_t r;
  return __builtin_mul_overflow(ms, MS, &r) ? UINT64_MAX : r;
}

static void window_init(struct sl_breaker *b) {
  for (int j = 0; j < NSHARDS; j++)
    for (int i = 0; i < NSLOTS; i++) atomic_init(&b->shards[j].slots[i].tag, SLOT_UNUSED);
}

static double failure_ratio(const struct sl_breaker *b) {
  uint64_t bits = TUN(b, failure_ratio_bits);
  double r;
  memcpy(&r, &bits, sizeof(r));
  return r;
}

/* Stores |cfg|'s settings; returns whether the window width changed. */
static bool tunables_set(struct sl_breaker *b, const struct sl_breaker_cfg *cfg) {
  uint64_t win = ms_to_ns(cfg->window_ms ? cfg->window_ms : 10000);
  uint64_t slot = win / NSLOTS ? win / NSLOTS : 1, bits;
  memcpy(&bits, &cfg->failure_ratio, sizeof(bits));
  atomic_store_explicit(&b->tun.enabled, cfg->enabled, memory_order_relaxed);
  atomic_store_explicit(&b->tun.consecutive_failures, cfg->consecutive_failures, memory_order_relaxed);
  atomic_store_explicit(&b->tun.min_requests, cfg->min_requests, memory_order_relaxed);
  atomic_store_explicit(&b->tun.half_open_probes, cfg->half_open_probes ? cfg->half_open_probes : 1,
                        memory_order_relaxed);
  atomic_store_explicit(&b->tun.failure_ratio_bits, bits, memory_order_relaxed);
  atomic_store_explicit(&b->tun.slow_call_ns, ms_to_ns(cfg->slow_call_ms), memory_order_relaxed);
  atomic_store_explicit(&b->tun.open_for_ns, ms_to_ns(cfg->open_for_ms), memory_order_relaxed);
  atomic_store_explicit(&b->tun.recovery_ramp_ns, ms_to_ns(cfg->recovery_ramp_ms), memory_order_relaxed);
  return atomic_exchange_explicit(&b->tun.slot_ns, slot, memory_order_relaxed) != slot;
}

struct sl_breaker *sl_breaker_new(const struct sl_breaker_cfg *cfg) {
  struct sl_breaker *b = aligned_alloc(64, sizeof(*b));
  if (!b) return NULL;
  memset(b, 0, sizeof(*b));
  tunables_set(b, cfg);
  if (pthread_mutex_init(&b->mu, NULL) != 0) {
    free(b);
    return NULL;
  }
  window_init(b);
  return b;
}

void sl_breaker_del(struct sl_breaker *b) {
  if (!b) return;
  pthread_mutex_destroy(&b->mu);
  free(b);
}

enum sl_breaker_state sl_breaker_state(const struct sl_breaker *b) {
  return (enum sl_breaker_state)atomic_load_explicit(&b->state, memory_order_acquire);
}

void sl_breaker_retune(struct sl_breaker *b, const struct sl_breaker_cfg *cfg) {
  if (!tunables_set(b, cfg)) return;
  /* Slots of the old width would be summed as if they had the new one:
   * start an empty window (a new epoch; half-open probes start over). */
  pthread_mutex_lock(&b->mu);
  b->probes_in_flight = b->probe_successes = 0;
  atomic_fetch_add_explicit(&b->epoch, 1, memory_order_relaxed);
  uint32_t st = atomic_load_explicit(&b->state, memory_order_relaxed);
  atomic_store_explicit(&b->state, st, memory_order_release);
  pthread_mutex_unlock(&b->mu);
}

enum sl_breaker_state sl_breaker_state_at(const struct sl_breaker *b, uint64_t now_ns) {
  uint32_t st = atomic_load_explicit(&b->state, memory_order_acquire);
  if (st == SL_BREAKER_OPEN && now_ns >= atomic_load_explicit(&b->open_until, memory_order_relaxed))
    return SL_BREAKER_HALF_OPEN;
  return (enum sl_breaker_state)st;
}

/* Admitted share while ramping, in permille: 100 -> 1000 linearly. */
static uint32_t ramp_permille(const struct sl_breaker *b, uint64_t now) {
  uint64_t end = atomic_load_explicit(&b->ramp_end, memory_order_relaxed);
  if (!end || now >= end) return 1000;
  uint64_t start = atomic_load_explicit(&b->ramp_start, memory_order_relaxed);
  if (now <= start || end <= start) return 100;
  return (uint32_t)(100 + (unsigned __int128)900 * (now - start) / (end - start));
}

/* ---- transitions (mu held) ----------------------------------------- */

/* Transitions also empty the window: slots are tagged with the epoch. */
static void trip(struct sl_breaker *b, uint64_t now) {
  atomic_store_explicit(&b->consecutive, 0, memory_order_relaxed);
  b->probes_in_flight = b->probe_successes = 0;
  atomic_store_explicit(&b->ramp_end, 0, memory_order_relaxed);
  atomic_store_explicit(&b->open_until, sat_add(now, TUN(b, open_for_ns)), memory_order_relaxed);
  atomic_fetch_add_explicit(&b->epoch, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&b->opened_total, 1, memory_order_relaxed);
  atomic_store_explicit(&b->state, SL_BREAKER_OPEN, memory_order_release);
}

static void close_breaker(struct sl_breaker *b, uint64_t now) {
  atomic_store_explicit(&b->consecutive, 0, memory_order_relaxed);
  b->probes_in_flight = b->probe_successes = 0;
  atomic_store_explicit(&b->ramp_start, now, memory_order_relaxed);
  atomic_store_explicit(&b->ramp_end, TUN(b, recovery_ramp_ns) ? sat_add(now, TUN(b, recovery_ramp_ns)) : 0,
                        memory_order_relaxed);
  atomic_fetch_add_explicit(&b->epoch, 1, memory_order_relaxed);
  atomic_store_explicit(&b->state, SL_BREAKER_CLOSED, memory_order_release);
}

static void half_open(struct sl_breaker *b) {
  b->probes_in_flight = b->probe_successes = 0;
  atomic_fetch_add_explicit(&b->epoch, 1, memory_order_relaxed);
  atomic_store_explicit(&b->state, SL_BREAKER_HALF_OPEN, memory_order_release);
}

static inline uint64_t slot_tag(uint32_t epoch, uint64_t id) {
  return (uint64_t)(epoch & 0xffffff) << SLOT_ID_BITS | (id & ((1ull << SLOT_ID_BITS) - 1));
}

/* This thread's shard: taken on its first report, round robin. */
static struct shard *my_shard(struct sl_breaker *b) {
  static _Atomic unsigned next;
  static _Thread_local unsigned mine = UINT32_MAX;
  if (mine == UINT32_MAX) mine = atomic_fetch_add_explicit(&next, 1, memory_order_relaxed) % NSHARDS;
  return &b->shards[mine];
}

/* Counts one outcome of |epoch| in this thread's shard. Lock-free. */
static void window_add(struct sl_breaker *b, uint32_t epoch, uint64_t now, bool failure) {
  uint64_t id = now / TUN(b, slot_ns);
  struct slot *s = &my_shard(b)->slots[id % NSLOTS];
  uint64_t tag = slot_tag(epoch, id);
  if (atomic_load_explicit(&s->tag, memory_order_acquire) != tag) {
    /* A new slot: zero the counts, then publish the tag (release), so a
     * reader that sees the tag sees these counts or later ones. */
    atomic_store_explicit(&s->total, 0, memory_order_relaxed);
    atomic_store_explicit(&s->failures, 0, memory_order_relaxed);
    atomic_store_explicit(&s->tag, tag, memory_order_release);
  }
  atomic_fetch_add_explicit(&s->total, 1, memory_order_relaxed);
  if (failure) atomic_fetch_add_explicit(&s->failures, 1, memory_order_relaxed);
}

/* Outcomes of |epoch| over the window ending at |now|, all shards. */
static void window_sum(const struct sl_breaker *b, uint32_t epoch, uint64_t now, uint32_t *total,
                       uint32_t *failures) {
  uint64_t id = now / TUN(b, slot_ns);
  uint64_t lo = id >= NSLOTS - 1 ? id - (NSLOTS - 1) : 0;
  *total = *failures = 0;
  for (int j = 0; j < NSHARDS; j++) {
    for (int i = 0; i < NSLOTS; i++) {
      const struct slot *s = &b->shards[j].slots[i];
      uint64_t tag = atomic_load_explicit(&s->tag, memory_order_acquire);
      if (tag == SLOT_UNUSED || tag < slot_tag(epoch, lo) || tag > slot_tag(epoch, id)) continue;
      *total += atomic_load_explicit(&s->total, memory_order_relaxed);
      *failures += atomic_load_explicit(&s->failures, memory_order_relaxed);
    }
  }
}

static bool should_trip(const struct sl_breaker *b, uint32_t epoch, uint64_t now,
                        uint32_t consecutive) {
  uint32_t in_a_row = TUN(b, consecutive_failures);
  if (in_a_row && consecutive >= in_a_row) return true;
  double ratio = failure_ratio(b);
  if (ratio > 0) {
    uint32_t total, failures;
    window_sum(b, epoch, now, &total, &failures);
    if (total && total >= TUN(b, min_requests) && (double)failures >= ratio * (double)total)
      return true;
  }
  return false;
}

/* Before the breaker opens from closed (mu held): the rate at which the
 * upstream served successes over the window of |epoch|, the closed state
 * that is ending. The window's slots cover (NSLOTS - 1) whole slots and
 * the current one's elapsed part. A breaker that reopens from half-open
 * keeps what it learnt when it first opened. */
#define SERVE_MIN_SAMPLES 10
#define SERVE_MAX_PERIOD_NS (1000 * MS)

static void learn_serve_rate(struct sl_breaker *b, uint32_t epoch, uint64_t now) {
  uint32_t total, failures;
  window_sum(b, epoch, now, &total, &failures);
  uint64_t slot = TUN(b, slot_ns);
  uint64_t span = (NSLOTS - 1) * slot + now % slot;
  uint32_t ok = total - failures;
  /* Fewer successes than SERVE_MIN_SAMPLES say little: unknown. And the
   * crowd is never spread slower than one a second (SERVE_MAX_PERIOD):
   * an upstream that served little before it failed may serve more when
   * it comes back, and Retry-After is capped by `max` anyway. */
  uint64_t period = ok >= SERVE_MIN_SAMPLES ? span / ok : 0;
  if (period > SERVE_MAX_PERIOD_NS) period = SERVE_MAX_PERIOD_NS;
  atomic_store_explicit(&b->serve_period_ns, period, memory_order_relaxed);
}

_Atomic uint64_t *sl_breaker_horizon(struct sl_breaker *b) { return &b->horizon; }

/* ---- admission and outcomes ---------------------------------------- */

bool sl_breaker_admit(struct sl_breaker *b, uint64_t now_ns, uint64_t rnd,
                      struct sl_breaker_verdict *v) {
  v->probe = false;
  v->retry_after_ns = 0;
  v->serve_period_ns = atomic_load_explicit(&b->serve_period_ns, memory_order_relaxed);
  uint32_t st = atomic_load_explicit(&b->state, memory_order_acquire);
  v->epoch = atomic_load_explicit(&b->epoch, memory_order_relaxed);
  v->state = (enum sl_breaker_state)st;
  if (!TUN(b, enabled)) {
    v->admitted = true;
    return true;
  }
  if (st == SL_BREAKER_CLOSED) {
    uint32_t p = ramp_permille(b, now_ns);
    v->admitted = p >= 1000 || (uint32_t)(((rnd >> 32) * 1000) >> 32) < p;
    return v->admitted;
  }
  if (st == SL_BREAKER_OPEN) {
    uint64_t until = atomic_load_explicit(&b->open_until, memory_order_relaxed);
    if (now_ns < until) {
      v->admitted = false;
      v->retry_after_ns = until - now_ns;
      return false;
    }
  }
  pthread_mutex_lock(&b->mu);
  st = atomic_load_explicit(&b->state, memory_order_relaxed);
  if (st == SL_BREAKER_OPEN && now_ns >= atomic_load_explicit(&b->open_until, memory_order_relaxed)) {
    half_open(b);
    st = SL_BREAKER_HALF_OPEN;
  }
  v->state = (enum sl_breaker_state)st;
  v->epoch = atomic_load_explicit(&b->epoch, memory_order_relaxed);
  if (st == SL_BREAKER_HALF_OPEN) {
    v->admitted = b->probes_in_flight + b->probe_successes < TUN(b, half_open_probes);
    if (v->admitted) {
      b->probes_in_flight++;
      v->probe = true;
    }
  } else if (st == SL_BREAKER_OPEN) {
    v->admitted = false;
    v->retry_after_ns = atomic_load_explicit(&b->open_until, memory_order_relaxed) - now_ns;
  } else { /* closed meanwhile */
    uint32_t p = ramp_permille(b, now_ns);
    v->admitted = p >= 1000 || (uint32_t)(((rnd >> 32) * 1000) >> 32) < p;
  }
  pthread_mutex_unlock(&b->mu);
  return v->admitted;
}

void sl_breaker_report(struct sl_breaker *b, const struct sl_breaker_verdict *v,
                       enum sl_outcome outcome, uint64_t latency_ns, uint64_t now_ns) {
  if (!TUN(b, enabled) || !v->admitted) return;
  uint64_t slow = TUN(b, slow_call_ns);
  bool failure = outcome == SL_OUTCOME_FAILURE ||
                 (outcome == SL_OUTCOME_SUCCESS && slow && latency_ns >= slow);
  /* State first (acquire): a transition bumps the epoch before it
   * publishes the state, so a closed state read here comes with an epoch
   * at least as new as the one it was published with. */
  uint32_t st = atomic_load_explicit(&b->state, memory_order_acquire);
  uint32_t epoch = atomic_load_explicit(&b->epoch, memory_order_relaxed);
  if (v->epoch != epoch) return;
  if (st == SL_BREAKER_CLOSED) {
    if (outcome == SL_OUTCOME_CANCELLED) return;
    window_add(b, epoch, now_ns, failure);
    if (!failure) {
      if (atomic_load_explicit(&b->consecutive, memory_order_relaxed))
        atomic_store_explicit(&b->consecutive, 0, memory_order_relaxed);
      return;
    }
    uint32_t n = atomic_fetch_add_explicit(&b->consecutive, 1, memory_order_relaxed) + 1;
    if (!should_trip(b, epoch, now_ns, n)) return;
    pthread_mutex_lock(&b->mu);
    if (atomic_load_explicit(&b->epoch, memory_order_relaxed) == epoch &&
        atomic_load_explicit(&b->state, memory_order_relaxed) == SL_BREAKER_CLOSED) {
      learn_serve_rate(b, epoch, now_ns);
      trip(b, now_ns); /* else another report moved it first */
    }
    pthread_mutex_unlock(&b->mu);
    return;
  }
  if (st != SL_BREAKER_HALF_OPEN || !v->probe) return;
  pthread_mutex_lock(&b->mu);
  if (v->epoch != atomic_load_explicit(&b->epoch, memory_order_relaxed)) goto out;
  st = atomic_load_explicit(&b->state, memory_order_relaxed);
  if (st == SL_BREAKER_HALF_OPEN) {
    if (b->probes_in_flight) b->probes_in_flight--;
    if (outcome == SL_OUTCOME_CANCELLED) goto out;
    if (failure) {
      trip(b, now_ns);
    } else if (++b->probe_successes >= TUN(b, half_open_probes)) {
      close_breaker(b, now_ns);
    }
  }
out:
  pthread_mutex_unlock(&b->mu);
}

void sl_breaker_snapshot(struct sl_breaker *b, uint64_t now_ns, struct sl_breaker_snapshot *out) {
  memset(out, 0, sizeof(*out));
  pthread_mutex_lock(&b->mu);
  out->state = (enum sl_breaker_state)atomic_load_explicit(&b->state, memory_order_relaxed);
  out->consecutive_failures = atomic_load_explicit(&b->consecutive, memory_order_relaxed);
  window_sum(b, atomic_load_explicit(&b->epoch, memory_order_relaxed), now_ns, &out->window_requests,
             &out->window_failures);
  out->probes_in_flight = b->probes_in_flight;
  out->probe_successes = b->probe_successes;
  out->admit_permille = out->state == SL_BREAKER_CLOSED ? ramp_permille(b, now_ns) : 0;
  uint64_t until = atomic_load_explicit(&b->open_until, memory_order_relaxed);
  out->open_remaining_ns = out->state == SL_BREAKER_OPEN && until > now_ns ? until - now_ns : 0;
  out->serve_period_ns = atomic_load_explicit(&b->serve_period_ns, memory_order_relaxed);
  out->opened_total = atomic_load_explicit(&b->opened_total, memory_order_relaxed);
  pthread_mutex_unlock(&b->mu);
}
