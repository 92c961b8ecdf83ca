/*
 * sluice — the lease engine of fleet-wide rate limits (see lease.h for
 * the model and its accuracy bound).
 *
 * Demand. Requests seen (admitted or not: a replica starved by the
 * global bucket must still ask for its part, or the split would drift
 * towards whoever was served first) are counted per window of
 * lease_ns / 2 and folded into an EWMA with time constant 2 x lease_ns,
 * weighted by the window's real length (a key idle for minutes folds one
 * long, nearly empty window). Until the first window closes, the window
 * so far, over at least one window's length, stands in for the EWMA, so
 * a new hot key's asks grow within a few round trips.
 *
 * Units: demand in milli-requests per second (integer), time in ns;
 * products go through unsigned __int128 and saturate.
 */
#include <math.h>
#include <stdint.h>

#include "sluice/lease.h"
#include "sluice/ratelimit.h"

#define NS_PER_S 1000000000ull

static inline uint64_t sat64(unsigned __int128 x) {
  return x > UINT64_MAX ? UINT64_MAX : (uint64_t)x;
}

/* splitmix64's finaliser: a well-mixed 64-bit value from |x|. */
static inline uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

static inline uint64_t window_len(const struct sl_lease_params *p) {
  uint64_t w = p->lease_ns / 2;
  return w ? w : 1;
}

static inline uint32_t replicas(const struct sl_lease_params *p) {
  return p->expected_replicas ? p->expected_replicas : 1;
}

uint64_t sl_lease_local_period(const struct sl_lease_params *p) {
  return sat64((unsigned __int128)p->period_ns * replicas(p));
}

uint32_t sl_lease_local_burst(const struct sl_lease_params *p) {
  uint32_t b = (p->burst ? p->burst : 1) / replicas(p);
  return b ? b : 1;
}

/* Closes the demand window if it has lasted long enough. */
static void fold_demand(struct sl_lease *l, const struct sl_lease_params *p, uint64_t now) {
  if (l->window_ns == 0) {
    l->window_ns = now ? now : 1;
    return;
  }
  uint64_t dt = now > l->window_ns ? now - l->window_ns : 0;
  uint64_t w = window_len(p);
  if (dt < w) return;
  uint64_t sample = sat64((unsigned __int128)l->seen * 1000u * NS_PER_S / dt);
  uint64_t tau = p->lease_ns ? 2 * p->lease_ns : 1;
  /* ewma += (sample - ewma) * dt / (dt + tau), exact in integers. */
  l->demand_mrps = sat64(((unsigned __int128)l->demand_mrps * tau + (unsigned __int128)sample * dt) /
                         ((unsigned __int128)tau + dt));
  l->seen = 0;
  l->window_ns = now;
}

/* The demand to size asks with: the EWMA, or the open window's rate when
 * that is higher (a key warming up, a surge). */
static uint64_t demand_now(const struct sl_lease *l, const struct sl_lease_params *p, uint64_t now) {
  uint64_t d = l->demand_mrps;
  if (l->window_ns && l->seen) {
    uint64_t dt = now > l->window_ns ? now - l->window_ns : 0;
    uint64_t w = window_len(p);
    if (dt < w) dt = w;
    uint64_t cur = sat64((unsigned __int128)l->seen * 1000u * NS_PER_S / dt);
    if (cur > d) d = cur;
  }
  return d;
}

double sl_lease_demand(const struct sl_lease *l) {
  return (double)l->demand_mrps / 1000.0;
}

/* Tokens that |d| milli-requests per second use in |ns|, rounded up. */
static uint64_t tokens_for(uint64_t d, uint64_t ns) {
  unsigned __int128 m = (unsigned __int128)d * ns;
  return sat64((m + 1000u * NS_PER_S - 1) / (1000u * NS_PER_S));
}

uint64_t sl_lease_poll_ns(const struct sl_lease *l, const struct sl_lease_params *p) {
  /* Not below lease_ns / 32 (bounds one key's commands per replica: 320/s
   * for 100 ms leases), nor the lead: a floor above quantum / demand
   * would cut the busiest replicas' poll rate, and so their share. */
  uint64_t lo = p->lease_ns / 32, hi = p->lease_ns;
  if (lo == 0) lo = 1;
  if (hi < lo) hi = lo;
  uint64_t d = l->demand_mrps;
  if (l->seen && l->window_ns) d = d > 1 ? d : 1;
  if (d == 0 || p->period_ns == 0) return hi;
  /* quantum: the fleet's tokens of one lease period, per replica
   * (milli-tokens), and poll = quantum / demand. */
  unsigned __int128 quantum_mt = (unsigned __int128)p->lease_ns * 1000u / p->period_ns / replicas(p);
  if (quantum_mt < 1000u) quantum_mt = 1000u; /* at least one token */
  uint64_t poll = sat64(quantum_mt * NS_PER_S / d);
  return poll < lo ? lo : poll > hi ? hi : poll;
}

bool sl_lease_admit(struct sl_lease *l, const struct sl_lease_params *p, bool backend_up,
                    uint64_t now_ns, struct sl_lease_verdict *v) {
  fold_demand(l, p, now_ns);
  if (l->seen < UINT32_MAX) l->seen++;
  l->last_ns = now_ns;
  v->want_refill = false;
  v->retry_after_ns = 0;

  struct sl_rl_verdict g = {0};
  if (l->tokens > 0) {
    l->tokens--;
    v->admitted = true;
    v->source = SL_LEASE_FROM_TOKENS;
  } else if (backend_up) {
    /* Debt, at the local share's rate and at most its bucket deep. */
    uint32_t lb = sl_lease_local_burst(p);
    if (l->tokens > -(int64_t)lb &&
        sl_gcra_step(&l->prov_tat, sl_lease_local_period(p), lb, now_ns, true, &g)) {
      l->tokens--;
      v->admitted = true;
      v->source = SL_LEASE_FROM_DEBT;
    } else {
      v->admitted = false;
      v->source = SL_LEASE_EXHAUSTED;
      uint64_t wait = l->not_before_ns > now_ns ? l->not_before_ns - now_ns : 0;
      if (l->tokens > -(int64_t)lb && g.retry_after_ns > wait) wait = g.retry_after_ns;
      v->retry_after_ns = wait ? wait : p->period_ns;
    }
  } else {
    v->source = SL_LEASE_FROM_FALLBACK;
    switch (p->fallback) {
      case SL_FALLBACK_OPEN:
        v->admitted = true;
        break;
      case SL_FALLBACK_CLOSED:
        v->admitted = false;
        v->retry_after_ns = p->lease_ns;
        break;
      case SL_FALLBACK_LOCAL:
      default:
        v->admitted = sl_gcra_step(&l->prov_tat, sl_lease_local_period(p),
                                   sl_lease_local_burst(p), now_ns, true, &g);
        v->retry_after_ns = v->admitted ? 0 : g.retry_after_ns;
        break;
    }
  }

  if (backend_up && !l->inflight && now_ns >= l->not_before_ns) {
    uint64_t low = tokens_for(demand_now(l, p, now_ns), p->lead_ns);
    if (l->tokens <= 0 || (uint64_t)l->tokens <= low) v->want_refill = true;
  }
  return v->admitted;
}

uint32_t sl_lease_ask(struct sl_lease *l, const struct sl_lease_params *p, uint64_t now_ns) {
  uint64_t n = tokens_for(demand_now(l, p, now_ns), p->lease_ns);
  if (l->tokens < 0) n += (uint64_t)(-l->tokens);
  uint64_t cap = p->burst ? p->burst : 1;
  if (n > cap) n = cap;
  if (n == 0) n = 1;
  l->inflight = true;
  l->asked = (uint32_t)n;
  l->asked_ns = now_ns;
  return (uint32_t)n;
}

void sl_lease_grant(struct sl_lease *l, const struct sl_lease_params *p, uint32_t granted,
                    uint64_t retry_ns, uint64_t now_ns) {
  l->inflight = false;
  l->tokens += granted;
  if (granted < l->asked) {
    /* Exponentially distributed with mean poll_ns (cut at 4x): the
     * replicas' polls form Poisson streams, and Poisson arrivals see time
     * averages (PASTA), so every poll finds on average the same
     * accumulation, whoever makes it: the rate is split in proportion to
     * poll rates, i.e. to demand. Fixed intervals lock into an order in
     * which whoever polls just after the busiest replica finds nothing. */
    uint64_t poll = sl_lease_poll_ns(l, p);
    uint64_t r = mix64(now_ns ^ (uint64_t)(uintptr_t)l ^ ((uint64_t)l->seen << 32));
    double u = ((double)(r >> 11) + 1.0) / 9007199254740992.0; /* (0, 1] */
    double e = -log(u);
    poll = (uint64_t)((double)poll * (e < 4.0 ? e : 4.0));
    /* from when the ask left: the interval is between bucket visits */
    uint64_t base = l->asked_ns && l->asked_ns <= now_ns ? l->asked_ns : now_ns;
    l->not_before_ns = base + (retry_ns > poll ? retry_ns : poll);
  } else {
    l->not_before_ns = 0;
  }
  l->asked = 0;
}

bool sl_lease_peek(const struct sl_lease *l, const struct sl_lease_params *p, bool backend_up,
                   uint64_t now_ns, struct sl_lease_verdict *v) {
  struct sl_lease copy = *l;
  return sl_lease_admit(&copy, p, backend_up, now_ns, v);
}

void sl_lease_refund(struct sl_lease *l, const struct sl_lease_params *p, enum sl_lease_source src) {
  switch (src) {
    case SL_LEASE_FROM_DEBT:
      /* the provisional bucket was charged too */
      l->prov_tat = l->prov_tat > sl_lease_local_period(p) ? l->prov_tat - sl_lease_local_period(p) : 0;
      /* fall through */
    case SL_LEASE_FROM_TOKENS:
      l->tokens++;
      break;
    case SL_LEASE_FROM_FALLBACK:
      if (p->fallback == SL_FALLBACK_LOCAL)
        l->prov_tat = l->prov_tat > sl_lease_local_period(p) ? l->prov_tat - sl_lease_local_period(p) : 0;
      break;
    case SL_LEASE_EXHAUSTED:
      break;
  }
}

void sl_lease_failed(struct sl_lease *l) {
  l->inflight = false;
  l->asked = 0;
}

bool sl_lease_idle(const struct sl_lease *l, uint64_t now_ns, uint64_t idle_ns) {
  return !l->inflight && l->tokens >= 0 && now_ns >= l->last_ns && now_ns - l->last_ns >= idle_ns;
}
