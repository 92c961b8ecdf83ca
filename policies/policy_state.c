/*
 * sluice — refcounted policy state and its hand-over across reloads.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "sluice/breaker.h"
#include "sluice/concurrency.h"
#include "sluice/policy_state.h"
#include "sluice/ratelimit.h"

struct sl_policy_state {
  _Atomic uint32_t refs;
  enum sl_policy_kind kind;
  uint64_t identity;
  union {
    struct sl_ratelimit_table *rl;
    struct sl_concurrency *cc;
    struct sl_breaker *br;
  } u;
};

static struct sl_policy_state *state_alloc(enum sl_policy_kind kind, uint64_t identity) {
  struct sl_policy_state *s = calloc(1, sizeof(*s));
  if (!s) return NULL;
  atomic_init(&s->refs, 1);
  s->kind = kind;
  s->identity = identity;
  return s;
}

struct sl_policy_state *sl_policy_state_new_ratelimit(uint64_t identity, uint32_t max_keys,
                                                      const uint8_t seed[16]) {
  struct sl_policy_state *s = state_alloc(SL_POLICY_RATELIMIT, identity);
  if (s && !(s->u.rl = sl_ratelimit_table_new(max_keys, seed))) {
    free(s);
    return NULL;
  }
  return s;
}

struct sl_policy_state *sl_policy_state_new_concurrency(uint64_t identity) {
  struct sl_policy_state *s = state_alloc(SL_POLICY_CONCURRENCY, identity);
  if (s && !(s->u.cc = sl_concurrency_new())) {
    free(s);
    return NULL;
  }
  return s;
}

struct sl_policy_state *sl_policy_state_new_breaker(uint64_t identity, const struct sl_breaker_cfg *cfg) {
  struct sl_policy_state *s = state_alloc(SL_POLICY_BREAKER, identity);
  if (s && !(s->u.br = sl_breaker_new(cfg))) {
    free(s);
    return NULL;
  }
  return s;
}

struct sl_policy_state *sl_policy_state_ref(struct sl_policy_state *s) {
  if (s) atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
  return s;
}

void sl_policy_state_unref(struct sl_policy_state *s) {
  if (!s || atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1) return;
  switch (s->kind) {
  case SL_POLICY_RATELIMIT: sl_ratelimit_table_del(s->u.rl); break;
  case SL_POLICY_CONCURRENCY: sl_concurrency_del(s->u.cc); break;
  case SL_POLICY_BREAKER: sl_breaker_del(s->u.br); break;
  }
  free(s);
}

enum sl_policy_kind sl_policy_state_kind(const struct sl_policy_state *s) { return s->kind; }
uint64_t sl_policy_state_identity(const struct sl_policy_state *s) { return s->identity; }
uint32_t sl_policy_state_refs(const struct sl_policy_state *s) {
  return atomic_load_explicit(&s->refs, memory_order_relaxed);
}

struct sl_ratelimit_table *sl_policy_state_ratelimit(const struct sl_policy_state *s) {
  return s && s->kind == SL_POLICY_RATELIMIT ? s->u.rl : NULL;
}
struct sl_concurrency *sl_policy_state_concurrency(const struct sl_policy_state *s) {
  return s && s->kind == SL_POLICY_CONCURRENCY ? s->u.cc : NULL;
}
struct sl_breaker *sl_policy_state_breaker(const struct sl_policy_state *s) {
  return s && s->kind == SL_POLICY_BREAKER ? s->u.br : NULL;
}

/* ---- attach / detach ----------------------------------------------- */

/* Visits every state slot of |cfg| with its kind and identity. */
typedef int (*slot_fn)(void *ctx, enum sl_policy_kind kind, uint64_t identity,
                       struct sl_policy_state **slot, const void *policy);

static int for_each_slot(struct sl_config *cfg, slot_fn fn, void *ctx) {
  for (size_t r = 0; r < cfg->n_routes; r++) {
    struct sl_route_cfg *route = &cfg->routes[r];
    for (size_t i = 0; i < route->n_rate_limits; i++) {
      struct sl_rate_limit_cfg *rl = &route->rate_limits[i];
      if (fn(ctx, SL_POLICY_RATELIMIT, rl->identity, &rl->state, rl) < 0) return -1;
    }
    if (fn(ctx, SL_POLICY_CONCURRENCY, route->concurrency.identity, &route->concurrency.state, route) < 0)
      return -1;
  }
  for (size_t u = 0; u < cfg->n_upstreams; u++) {
    struct sl_upstream_cfg *up = &cfg->upstreams[u];
    if (fn(ctx, SL_POLICY_BREAKER, up->breaker.identity, &up->breaker_state, up) < 0) return -1;
  }
  /* Shaping rate caps: one limiter (one key) per capped rule. */
  for (size_t i = 0; i < cfg->n_shaping; i++) {
    struct sl_shaping_rule *sr = &cfg->shaping[i];
    if (!sr->rate_cap.period_ns) continue;
    if (fn(ctx, SL_POLICY_RATELIMIT, sr->identity, &sr->state, NULL) < 0) return -1;
  }
  /* Connection-rate limits at accept: a limiter table per listener (the
   * NULL policy tells give() it is one; only listeners with a rate). */
  for (size_t l = 0; l < cfg->n_listeners; l++) {
    struct sl_listener_cfg *lc = &cfg->listeners[l];
    if (!lc->connect_rate.per_ip.period_ns) continue;
    if (fn(ctx, SL_POLICY_RATELIMIT, lc->connect_rate.identity, &lc->connect_rate.state, NULL) < 0)
      return -1;
  }
  return 0;
}

struct candidate {
  struct sl_policy_state *state;
  bool taken;
};

struct attach_ctx {
  struct candidate *c;
  size_t n, cap;
};

static int collect(void *ctx, enum sl_policy_kind kind, uint64_t identity, struct sl_policy_state **slot,
                   const void *policy) {
  struct attach_ctx *a = ctx;
  if (!*slot) return 0;
  if (a->n == a->cap) {
    size_t cap = a->cap ? a->cap * 2 : 16;
    struct candidate *p = realloc(a->c, cap * sizeof(*p));
    if (!p) return -1;
    a->c = p;
    a->cap = cap;
  }
  a->c[a->n++] = (struct candidate){*slot, false};
  return 0;
}

static void random_seed(uint8_t seed[16]) {
  size_t got = 0;
  while (got < 16) {
    ssize_t n = getrandom(seed + got, 16 - got, 0);
    if (n <= 0) break;
    got += (size_t)n;
  }
  if (got < 16) { /* no entropy source: still vary per table and per run */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t a = (uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15ull ^ (uint64_t)(uintptr_t)seed;
    uint64_t b = (uint64_t)ts.tv_sec * 0xBF58476D1CE4E5B9ull ^ (uint64_t)(uintptr_t)&ts;
    memcpy(seed, &a, 8);
    memcpy(seed + 8, &b, 8);
  }
}

static bool rate_limit_has_rate(const struct sl_rate_limit_cfg *rl) {
  if (rl->rate.period_ns) return true;
  for (size_t i = 0; i < rl->n_overrides; i++)
    if (rl->overrides[i].rate.period_ns) return true;
  return false;
}

static int give(void *ctx, enum sl_policy_kind kind, uint64_t identity, struct sl_policy_state **slot,
                const void *policy) {
  struct attach_ctx *a = ctx;
  *slot = NULL;
  for (size_t i = 0; i < a->n; i++) {
    struct candidate *c = &a->c[i];
    if (!c->taken && c->state->kind == kind && c->state->identity == identity) {
      c->taken = true;
      *slot = sl_policy_state_ref(c->state);
      return 0;
    }
  }
  switch (kind) {
  case SL_POLICY_RATELIMIT: {
    /* NULL: a listener's connect rate or a shaping cap (always rated). */
    const struct sl_rate_limit_cfg *rl = policy;
    if (rl && !rate_limit_has_rate(rl)) return 0;
    uint8_t seed[16];
    random_seed(seed);
    *slot = sl_policy_state_new_ratelimit(identity, rl ? rl->max_keys : 0, seed);
    break;
  }
  case SL_POLICY_CONCURRENCY:
    *slot = sl_policy_state_new_concurrency(identity);
    break;
  case SL_POLICY_BREAKER:
    *slot = sl_policy_state_new_breaker(identity, &((const struct sl_upstream_cfg *)policy)->breaker);
    break;
  }
  return *slot ? 0 : -1;
}

static int drop(void *ctx, enum sl_policy_kind kind, uint64_t identity, struct sl_policy_state **slot,
                const void *policy) {
  sl_policy_state_unref(*slot);
  *slot = NULL;
  return 0;
}

int sl_policies_attach(struct sl_config *next, const struct sl_config *prev) {
  struct attach_ctx a = {0};
  /* for_each_slot() only reads |prev| through collect(). */
  if (prev && for_each_slot((struct sl_config *)prev, collect, &a) < 0) goto fail;
  if (for_each_slot(next, give, &a) < 0) goto fail;
  free(a.c);
  return 0;
fail:
  free(a.c);
  sl_policies_detach(next);
  return -1;
}

void sl_policies_detach(struct sl_config *cfg) {
  if (cfg) for_each_slot(cfg, drop, NULL);
}
