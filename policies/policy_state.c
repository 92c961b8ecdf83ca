/*
 * sluice — refcounted policy state and its hand-over across reloads.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "sluice/admission.h"
#include "sluice/breaker.h"
#include "sluice/concurrency.h"
#include "sluice/policy.h"
#include "sluice/policy_state.h"
#include "sluice/ratelimit.h"
#include "sluice/horizon-t.h"

struct sl_policy_state {
  _Atomic uint32_t refs;
  enum sl_policy_kind kind;
  uint64_t identity;
  struct sl_horizons hz; /* a rate limit's shared keys (sluice/horizon.h) */
  union {
    struct sl_ratelimit_table *rl;
    struct sl_concurrency *cc;
    struct sl_breaker *br;
    struct {
      const struct sl_kind *kind;
      void *data;
    } k;
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

struct sl_policy_state *sl_policy_state_new_kind(const struct sl_policy_cfg *p) {
  struct sl_policy_state *s = state_alloc(SL_POLICY_KIND, p->identity);
  if (!s) return NULL;
  s->u.k.kind = p->kind;
  if (!(s->u.k.data = p->kind->state_new(p))) {
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
  case SL_POLICY_KIND: s->u.k.kind->state_del(s->u.k.data); break;
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
struct sl_horizons *sl_policy_state_horizons(struct sl_policy_state *s) {
  return s && s->kind == SL_POLICY_RATELIMIT ? &s->hz : NULL;
}
struct sl_concurrency *sl_policy_state_concurrency(const struct sl_policy_state *s) {
  return s && s->kind == SL_POLICY_CONCURRENCY ? s->u.cc : NULL;
}
struct sl_breaker *sl_policy_state_breaker(const struct sl_policy_state *s) {
  return s && s->kind == SL_POLICY_BREAKER ? s->u.br : NULL;
}
void *sl_policy_state_kind_data(const struct sl_policy_state *s, const struct sl_kind *kind) {
  return s && s->kind == SL_POLICY_KIND && s->u.k.kind == kind ? s->u.k.data : NULL;
}

/* ---- the policy set: build, hand over, free ------------------------- */

/* One state slot of a set, as for_each_slot() shows it: its kind and
 * identity, and the tunables that a state carried to it must be converted
 * to (limiters: rate and burst of the limit and of each override). */
struct slot_info {
  enum sl_policy_kind kind;
  uint64_t identity;
  struct sl_policy_state **slot;
  uint32_t max_keys;                       /* limiters, 0: default */
  uint64_t period_ns;                      /* limiters */
  uint32_t burst;
  const struct sl_rate_override *overrides;
  size_t n_overrides;
  bool rated;                              /* limiters: has some rate */
  const struct sl_breaker_cfg *breaker;    /* breakers */
  const struct sl_policy_cfg *policy;      /* registered kinds */
  void **data;                             /* registered kinds: the engine's pointer */
};

typedef int (*slot_fn)(void *ctx, const struct slot_info *si);

static bool rate_limit_has_rate(const struct sl_rate_limit_cfg *rl) {
  if (rl->rate.period_ns) return true;
  for (size_t i = 0; i < rl->n_overrides; i++)
    if (rl->overrides[i].rate.period_ns) return true;
  return false;
}

/* Every slot of |set| (built for |cfg|), in a fixed order. */
static int for_each_slot(const struct sl_config *cfg, struct sl_policy_set *set, slot_fn fn,
                         void *ctx) {
  for (size_t r = 0; r < cfg->n_routes; r++) {
    const struct sl_route_cfg *route = &cfg->routes[r];
    struct sl_route_state *rs = &set->routes[r];
    for (size_t i = 0; i < route->n_rate_limits; i++) {
      const struct sl_rate_limit_cfg *rl = &route->rate_limits[i];
      struct slot_info si = {SL_POLICY_RATELIMIT, rl->identity, &rs->rate_limits[i], rl->max_keys,
                             rl->rate.period_ns, rl->burst, rl->overrides, rl->n_overrides,
                             rate_limit_has_rate(rl), NULL, NULL, NULL};
      if (fn(ctx, &si) < 0) return -1;
      const struct sl_new_keys_cfg *nk = &rl->new_keys;
      if (!nk->rate.period_ns) continue;
      struct slot_info ni = {.kind = SL_POLICY_RATELIMIT, .identity = nk->identity,
                             .slot = &rs->new_keys[i], .max_keys = nk->max_keys,
                             .period_ns = nk->rate.period_ns, .burst = nk->burst, .rated = true};
      if (fn(ctx, &ni) < 0) return -1;
    }
    struct slot_info si = {.kind = SL_POLICY_CONCURRENCY, .identity = route->concurrency.identity,
                           .slot = &rs->concurrency};
    if (fn(ctx, &si) < 0) return -1;
    for (size_t i = 0; rs->kinds && i < route->n_policies; i++) {
      const struct sl_policy_cfg *p = &route->policies[i];
      if (!p->kind->state_new) continue;
      struct slot_info ki = {.kind = SL_POLICY_KIND, .identity = p->identity,
                             .slot = &rs->kinds[i], .policy = p, .data = &rs->kind_data[i]};
      if (fn(ctx, &ki) < 0) return -1;
    }
  }
  for (size_t u = 0; u < cfg->n_upstreams; u++) {
    const struct sl_upstream_cfg *up = &cfg->upstreams[u];
    struct slot_info si = {.kind = SL_POLICY_BREAKER, .identity = up->breaker.identity,
                           .slot = &set->breakers[u], .breaker = &up->breaker};
    if (fn(ctx, &si) < 0) return -1;
  }
  /* Shaping rate caps: one limiter (one key) per capped rule, burst 1. */
  for (size_t i = 0; i < cfg->n_shaping; i++) {
    const struct sl_shaping_rule *sr = &cfg->shaping[i];
    if (!sr->rate_cap.period_ns) continue;
    struct slot_info si = {.kind = SL_POLICY_RATELIMIT, .identity = sr->identity,
                           .slot = &set->shaping[i], .period_ns = sr->rate_cap.period_ns,
                           .burst = 1, .rated = true};
    if (fn(ctx, &si) < 0) return -1;
  }
  /* Connection-rate limits at accept: a limiter table per listener (only
   * listeners with a rate), keyed by client address. */
  for (size_t l = 0; l < cfg->n_listeners; l++) {
    const struct sl_listener_cfg *lc = &cfg->listeners[l];
    if (!lc->connect_rate.per_ip.period_ns) continue;
    struct slot_info si = {.kind = SL_POLICY_RATELIMIT, .identity = lc->connect_rate.identity,
                           .slot = &set->connect_rate[l],
                           .period_ns = lc->connect_rate.per_ip.period_ns,
                           .burst = lc->connect_rate.burst, .rated = true};
    if (fn(ctx, &si) < 0) return -1;
  }
  return 0;
}

struct candidate {
  struct slot_info info; /* of |prev|, which outlives the hand-over */
  bool taken;
};

struct attach_ctx {
  struct candidate *c;
  size_t n, cap;
  uint64_t now_ns;
};

static int collect(void *ctx, const struct slot_info *si) {
  struct attach_ctx *a = ctx;
  if (!*si->slot) return 0;
  if (a->n == a->cap) {
    size_t cap = a->cap ? a->cap * 2 : 16;
    struct candidate *p = realloc(a->c, cap * sizeof(*p));
    if (!p) return -1;
    a->c = p;
    a->cap = cap;
  }
  a->c[a->n++] = (struct candidate){*si, false};
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

static uint32_t override_burst(const struct slot_info *si, const struct sl_rate_override *o) {
  return o->burst ? o->burst : si->burst;
}

/* Builds the conversion of a limiter's keys from |from|'s tunables to
 * |to|'s, one entry per parameter class of |from| (see sl_rl_ref.cls): the
 * limit's own rate to the new own rate, each override to the new override
 * with the same match, or to the new own rate if it is gone. Returns the
 * number of entries (at most SL_RL_CLASS_MAX + 1), 0 if nothing changed. */
static size_t reparam_map(const struct slot_info *from, const struct slot_info *to,
                          struct sl_rl_reparam *map) {
  bool same = from->period_ns == to->period_ns && from->burst == to->burst &&
              from->n_overrides == to->n_overrides;
  for (size_t i = 0; same && i < from->n_overrides; i++) {
    const struct sl_rate_override *a = &from->overrides[i], *b = &to->overrides[i];
    same = !strcmp(a->match, b->match) && a->rate.period_ns == b->rate.period_ns &&
           override_burst(from, a) == override_burst(to, b);
  }
  if (same) return 0;
  map[0] = (struct sl_rl_reparam){from->period_ns, to->period_ns, to->burst, 0};
  size_t n = 1;
  for (size_t i = 0; i < from->n_overrides && n <= SL_RL_CLASS_MAX; i++) {
    const struct sl_rate_override *a = &from->overrides[i];
    if (sl_admission_override_class(i) != n) break; /* the shared last class: as written first */
    struct sl_rl_reparam r = map[0];
    r.from_period_ns = a->rate.period_ns;
    for (size_t j = 0; j < to->n_overrides; j++) {
      const struct sl_rate_override *b = &to->overrides[j];
      if (strcmp(a->match, b->match)) continue;
      r.to_period_ns = b->rate.period_ns;
      r.to_burst = override_burst(to, b);
      r.to_cls = sl_admission_override_class(j);
      break;
    }
    map[n++] = r;
  }
  return n;
}

/* |c|'s state is carried to |si|: converts what depends on tunables. */
static void carry(struct attach_ctx *a, const struct candidate *c, const struct slot_info *si) {
  struct sl_policy_state *st = c->info.slot[0];
  if (si->kind == SL_POLICY_BREAKER) {
    sl_breaker_retune(st->u.br, si->breaker);
    return;
  }
  if (si->kind == SL_POLICY_KIND) {
    if (si->policy->kind->state_carry)
      si->policy->kind->state_carry(st->u.k.data, c->info.policy, si->policy, a->now_ns);
    return;
  }
  if (si->kind != SL_POLICY_RATELIMIT) return;
  static struct sl_rl_reparam map[SL_RL_CLASS_MAX + 1]; /* main thread: reloads are serial */
  size_t n = reparam_map(&c->info, si, map);
  if (n) sl_ratelimit_reparam(st->u.rl, map, n, a->now_ns);
}

static bool same_kind(const struct candidate *c, const struct slot_info *si) {
  const struct sl_policy_state *st = *c->info.slot;
  if (st->kind != si->kind || st->identity != si->identity) return false;
  return si->kind != SL_POLICY_KIND || st->u.k.kind == si->policy->kind;
}

static int give(void *ctx, const struct slot_info *si) {
  struct attach_ctx *a = ctx;
  struct sl_policy_state **slot = si->slot;
  *slot = NULL;
  for (size_t i = 0; i < a->n; i++) {
    struct candidate *c = &a->c[i];
    if (!c->taken && same_kind(c, si)) {
      if (si->kind == SL_POLICY_RATELIMIT && !si->rated) continue; /* no rate: no table */
      c->taken = true;
      *slot = sl_policy_state_ref(*c->info.slot);
      carry(a, c, si);
      goto given;
    }
  }
  switch (si->kind) {
  case SL_POLICY_RATELIMIT: {
    if (!si->rated) return 0;
    uint8_t seed[16];
    random_seed(seed);
    *slot = sl_policy_state_new_ratelimit(si->identity, si->max_keys, seed);
    break;
  }
  case SL_POLICY_CONCURRENCY:
    *slot = sl_policy_state_new_concurrency(si->identity);
    break;
  case SL_POLICY_BREAKER:
    *slot = sl_policy_state_new_breaker(si->identity, si->breaker);
    break;
  case SL_POLICY_KIND:
    *slot = sl_policy_state_new_kind(si->policy);
    break;
  }
  if (!*slot) return -1;
given:
  if (si->data) *si->data = (*slot)->u.k.data;
  return 0;
}

static int drop(void *ctx, const struct slot_info *si) {
  (void)ctx;
  sl_policy_state_unref(*si->slot);
  *si->slot = NULL;
  return 0;
}

static void *zalloc(size_t n, size_t size) { return calloc(n ? n : 1, size); }

/* The set's arrays, every slot NULL. */
static struct sl_policy_set *set_alloc(const struct sl_config *cfg) {
  struct sl_policy_set *set = calloc(1, sizeof(*set));
  if (!set) return NULL;
  set->cfg = cfg;
  set->routes = zalloc(cfg->n_routes, sizeof(*set->routes));
  set->breakers = zalloc(cfg->n_upstreams, sizeof(*set->breakers));
  set->shaping = zalloc(cfg->n_shaping, sizeof(*set->shaping));
  set->connect_rate = zalloc(cfg->n_listeners, sizeof(*set->connect_rate));
  bool ok = set->routes && set->breakers && set->shaping && set->connect_rate;
  for (size_t r = 0; ok && r < cfg->n_routes; r++) {
    const struct sl_route_cfg *route = &cfg->routes[r];
    struct sl_route_state *rs = &set->routes[r];
    ok = (rs->rate_limits = zalloc(route->n_rate_limits, sizeof(*rs->rate_limits))) != NULL &&
         (rs->new_keys = zalloc(route->n_rate_limits, sizeof(*rs->new_keys))) != NULL;
    bool stateful = false;
    for (size_t i = 0; i < route->n_policies; i++)
      stateful |= route->policies[i].kind->state_new || route->policies[i].kind->state_of;
    if (ok && stateful) {
      rs->kinds = zalloc(route->n_policies, sizeof(*rs->kinds));
      rs->kind_data = zalloc(route->n_policies, sizeof(*rs->kind_data));
      ok = rs->kinds && rs->kind_data;
    }
  }
  if (ok) return set;
  sl_policy_set_del(set);
  return NULL;
}

struct sl_policy_set *sl_policy_set_new(const struct sl_config *next,
                                        const struct sl_policy_set *prev, uint64_t now_ns) {
  struct attach_ctx a = {.now_ns = now_ns};
  struct sl_policy_set *set = set_alloc(next);
  if (!set) return NULL;
  /* for_each_slot() only reads |prev| through collect(). */
  if (prev && for_each_slot(prev->cfg, (struct sl_policy_set *)prev, collect, &a) < 0) goto fail;
  if (for_each_slot(next, set, give, &a) < 0) goto fail;
  /* Kinds whose state is a slot of the set's own (given above). */
  for (size_t r = 0; r < next->n_routes; r++) {
    const struct sl_route_cfg *route = &next->routes[r];
    for (size_t i = 0; set->routes[r].kind_data && i < route->n_policies; i++) {
      const struct sl_policy_cfg *p = &route->policies[i];
      if (p->kind->state_of) set->routes[r].kind_data[i] = p->kind->state_of(set, route, p);
    }
  }
  free(a.c);
  return set;
fail:
  free(a.c);
  sl_policy_set_del(set);
  return NULL;
}

void sl_policy_set_del(struct sl_policy_set *set) {
  if (!set) return;
  const struct sl_config *cfg = set->cfg;
  bool whole = set->routes && set->breakers && set->shaping && set->connect_rate;
  for (size_t r = 0; whole && r < cfg->n_routes; r++)
    whole = set->routes[r].rate_limits != NULL && set->routes[r].new_keys != NULL;
  if (whole) for_each_slot(cfg, set, drop, NULL);
  for (size_t r = 0; set->routes && r < cfg->n_routes; r++) {
    free(set->routes[r].rate_limits);
    free(set->routes[r].new_keys);
    free(set->routes[r].kinds);
    free(set->routes[r].kind_data);
  }
  free(set->routes);
  free(set->breakers);
  free(set->shaping);
  free(set->connect_rate);
  free(set);
}
