/*
 * sluice — the admission pipeline. See include/sluice/admission.h.
 */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "sluice/admission.h"
#include "sluice/allow.h"
#include "sluice/blocklist.h"
#include "sluice/config.h"
#include "sluice/json.h"
#include "sluice/lease.h"
#include "sluice/policy_state.h"
#include "sluice/ratelimit.h"
#include "sluice/retry.h"
#include "blocklist_int.h"
#include "engine.h"
#include "limit_horizon.h"

static const char *const reason_names[SL_REASON__COUNT] = {
    "none", "rate_limit", "concurrency", "blocklist", "breaker", "queue_full", "connect_rate",
    "shaping"};

const char *sl_reject_reason_name(enum sl_reject_reason r) {
  if ((unsigned)r < SL_REASON__COUNT) return reason_names[r];
  /* A kind's refusals: SL_REASON__COUNT + its place in kinds.def. */
  size_t k = (unsigned)r - SL_REASON__COUNT;
  return k < sl_n_policy_kinds ? sl_policy_kinds[k]->reason : "unknown";
}


size_t sl_admission_key(enum sl_limit_key which, enum sl_missing_key missing,
                        const struct sl_route_cfg *route, const struct sl_identity *id,
                        const uint8_t **key) {
  const char *s = NULL;
  size_t n = 0;
  switch (which) {
  case SL_KEY_CLIENT_IP:
    *key = id->key;
    return sizeof(id->key);
  case SL_KEY_DEVICE_CLASS:
    s = id->device_class;
    n = id->device_class_len;
    break;
  case SL_KEY_DEVICE_ID:
    s = id->device_id;
    n = id->device_id_len;
    break;
  case SL_KEY_ROUTE:
    s = route->name;
    n = strlen(s);
    break;
  }
  if (!s || n == 0) {
    /* `missing_key: shared`: one bucket for every keyless request, under
     * a key no header value can be (a NUL byte). */
    static const uint8_t keyless[1] = {0};
    if (missing != SL_MISSING_SHARED) return 0;
    *key = keyless;
    return sizeof(keyless);
  }
  *key = (const uint8_t *)s; /* all of it: ids that share a prefix are distinct keys */
  return n;
}

size_t sl_admission_limit_key(const struct sl_rate_limit_cfg *rl, const struct sl_route_cfg *route,
                              const struct sl_identity *id, const uint8_t **key) {
  return sl_admission_key(rl->key, rl->missing_key, route, id, key);
}

/* Rate and burst for |rl| given the key value (overrides match the key,
 * e.g. a device class), and the parameter class the limiter stores with
 * the key (0: the limit's own rate, 1 + i: override i). */
static void limit_params(const struct sl_rate_limit_cfg *rl, const uint8_t *key, size_t klen,
                         uint64_t *period_ns, uint32_t *burst, uint8_t *cls) {
  *period_ns = rl->rate.period_ns;
  *burst = rl->burst;
  *cls = 0;
  if (rl->key == SL_KEY_CLIENT_IP) return;
  for (size_t i = 0; i < rl->n_overrides; i++) {
    const struct sl_rate_override *o = &rl->overrides[i];
    if (strlen(o->match) == klen && memcmp(o->match, key, klen) == 0) {
      *period_ns = o->rate.period_ns;
      if (o->burst) *burst = o->burst;
      *cls = sl_admission_override_class(i);
      return;
    }
  }
}

/* Locates |rl|'s key in its table |t| (NULL: none) for this request: fills |ref| (with its parameter
 * class), |period| and |burst|. Returns false when the limit does not
 * apply (no table, no such key, or no rate for it). */
static bool limit_locate(struct sl_ratelimit_table *t, const struct sl_rate_limit_cfg *rl,
                         const struct sl_route_cfg *route, const struct sl_identity *id,
                         struct sl_rl_ref *ref, uint64_t *period, uint32_t *burst) {
  const uint8_t *key;
  size_t klen = t ? sl_admission_limit_key(rl, route, id, &key) : 0;
  if (!klen) return false;
  uint8_t cls;
  limit_params(rl, key, klen, period, burst, &cls);
  if (*period == 0) return false;
  sl_ratelimit_locate(t, key, klen, ref);
  ref->cls = cls;
  return true;
}

/* `missing_key: deny` and the request has no key for |rl|: refused 400
 * missing_key (no retry-after: waiting does not give it one), or, in
 * shadow mode, reported. Returns true when refused. */
static __attribute__((noinline)) bool missing_key_refuses(const struct sl_admission_input *in,
                                                          const struct sl_rate_limit_cfg *rl,
                                                          struct sl_admission *out, FILE *tf,
                                                          bool *first) {
  const uint8_t *key;
  if (sl_admission_limit_key(rl, in->route, in->id, &key) != 0) return false; /* not missing */
  if (sl_engine_is_shadow(in->cfg, rl->mode)) {
    sl_engine_add_shadow(out, SL_REASON_RATE_LIMIT, rl->name, NULL);
    sl_engine_trace(tf, first, rl->name, "rate_limit", "shadow_reject",
                    "the request carries no key (missing_key: deny)");
    return false;
  }
  sl_engine_set_name(out->policy, rl->name);
  sl_engine_refuse(out, 400, SL_REASON_RATE_LIMIT, "missing_key", 0);
  sl_engine_trace(tf, first, rl->name, "rate_limit", "reject",
                  "the request carries no key (missing_key: deny)");
  return true;
}

/* The `new_keys` cap of |rl| (limit |i| of the route, whose key is fresh
 * for this request): looks at the client address's bucket of new keys.
 * Returns true when it refuses the request (|out| says why); in shadow
 * mode the refusal is reported and false returned. */
static __attribute__((noinline)) bool new_keys_refuses(const struct sl_admission_input *in,
                                                       const struct sl_rate_limit_cfg *rl,
                                                       struct sl_ratelimit_table *t,
                                                       struct sl_admission *out, FILE *tf,
                                                       bool *first) {
  const struct sl_new_keys_cfg *nk = &rl->new_keys;
  struct sl_rl_verdict v;
  char why[160];
  sl_ratelimit_peek(t, in->id->key, sizeof(in->id->key), nk->rate.period_ns, nk->burst, in->now_ns,
                    &v);
  if (v.admitted) {
    if (tf) {
      snprintf(why, sizeof(why), "a new key: %u more new keys from this address allowed now",
               v.remaining);
      sl_engine_trace(tf, first, nk->name, "rate_limit", "admit", why);
    }
    return false;
  }
  if (tf)
    snprintf(why, sizeof(why),
             "a new key, over %s new keys per client address (burst %u); admits one again in "
             "%llu ms", nk->rate.text, nk->burst,
             (unsigned long long)(v.retry_after_ns / 1000000));
  if (sl_engine_is_shadow(in->cfg, rl->mode)) {
    sl_engine_add_shadow(out, SL_REASON_RATE_LIMIT, nk->name, NULL);
    sl_engine_trace(tf, first, nk->name, "rate_limit", "shadow_reject", why);
    return false;
  }
  sl_engine_set_name(out->policy, nk->name);
  /* The address's own bucket: a per-client key, answered exactly. */
  sl_engine_refuse(out, 429, SL_REASON_RATE_LIMIT, "rate_limited",
                   sl_retry_after_s(&in->cfg->reject, v.retry_after_ns, in->rnd));
  sl_engine_trace(tf, first, nk->name, "rate_limit", "reject", why);
  return true;
}

/* A `scope: global` limit's decision for this request, through the
 * worker's lease store (in->global); |commit| false only looks. Off the
 * workers (no store: /explain) it admits, and |why| says what the
 * replica's share is. Fills |v| as the local limiter would. */
static bool global_decide(const struct sl_admission_input *in, const struct sl_rate_limit_cfg *rl,
                          uint64_t period, uint32_t burst, bool commit, struct sl_global_answer *ga,
                          struct sl_rl_verdict *v, char *why, size_t why_len) {
  memset(ga, 0, sizeof(*ga));
  memset(v, 0, sizeof(*v));
  const uint8_t *key;
  size_t klen = sl_admission_limit_key(rl, in->route, in->id, &key);
  const struct sl_global_cfg *g = &in->cfg->global;
  if (in->global) {
    in->global->decide(in->global->ctx, rl, key, klen, period, burst, in->now_ns, commit, ga);
  } else {
    ga->v.admitted = true;
    ga->v.source = SL_LEASE_FROM_FALLBACK;
  }
  v->admitted = ga->v.admitted;
  v->retry_after_ns = ga->v.retry_after_ns;
  v->remaining = ga->tokens > 0 ? (ga->tokens > UINT32_MAX ? UINT32_MAX : (uint32_t)ga->tokens) : 0;
  if (why) {
    /* The fleet-wide rate and this replica's share of it. */
    double fleet = 1e9 / (double)period;
    double share = fleet / (g->expected_replicas ? g->expected_replicas : 1);
    static const char *const FB[] = {"local", "open", "closed"};
    if (!in->global)
      snprintf(why, why_len,
               "global: %.6g/s fleet-wide (burst %u) in Redis %s; fallback %s, share %.6g/s "
               "(rate / expected_replicas %u); leases are held by the workers",
               fleet, burst, g->redis.text ? g->redis.text : "?", FB[g->fallback], share,
               g->expected_replicas);
    else
      snprintf(why, why_len,
               "global: %.6g/s fleet-wide; this worker holds %lld tokens, demand %.1f/s, backend "
               "%s%s",
               fleet, (long long)ga->tokens, ga->demand, ga->backend_up ? "up" : "down",
               ga->v.source == SL_LEASE_FROM_FALLBACK ? " (fallback decided)" : "");
  }
  return v->admitted;
}

uint8_t sl_admission_override_class(size_t i) {
  return i + 1 < SL_RL_CLASS_MAX ? (uint8_t)(i + 1) : SL_RL_CLASS_MAX;
}

/* Explain: what shaping rule |r| does to a request it matches. */
static void shaping_describe(const struct sl_shaping_rule *r, char *buf, size_t len) {
  int n = snprintf(buf, len, "delay %llu ms, abort %.1f%%", (unsigned long long)r->delay_fixed_ms,
                   r->abort_percent);
  if (n > 0 && (size_t)n < len && (r->bw_down.bytes_per_s || r->bw_up.bytes_per_s))
    snprintf(buf + n, len - (size_t)n, ", bandwidth down %s, up %s",
             r->bw_down.bytes_per_s ? r->bw_down.text : "unpaced",
             r->bw_up.bytes_per_s ? r->bw_up.text : "unpaced");
}

/* The request's allow rule (the first that matches) and what it skips;
 * explain shows it first, or that no rule matched. */
static void allow_find(const struct sl_admission_input *in, struct sl_admission *out, FILE *tf,
                       bool *first) {
  const struct sl_allow_rule *r = sl_allow_match(&in->cfg->allow, in->route, in->id, in->facts);
  if (r) {
    out->allow = r;
    out->skip = r->skip;
  }
  if (!tf) return;
  char name[SL_POLICY_NAME_MAX], why[256];
  if (r) {
    snprintf(name, sizeof(name), "allow/%s", r->name);
    sl_allow_describe(r, why, sizeof(why));
  } else {
    snprintf(name, sizeof(name), "allow");
    size_t n = in->cfg->allow.n_rules;
    snprintf(why, sizeof(why), "no allow rule matches (%zu rule%s)", n, n == 1 ? "" : "s");
  }
  sl_engine_trace(tf, first, name, "allow", r ? "exempt" : "none", why);
}

/* No kind pends yet and the data plane cannot resume a decision: fail
 * closed, as an unreachable store would. */
static __attribute__((noinline, cold)) void pending_refuse(const struct sl_policy_cfg *p,
                                                           struct sl_admission *out) {
  sl_engine_set_name(out->policy, p->name);
  sl_engine_refuse(out, 503, sl_engine_reason(p), "unavailable", 0);
}

/* Peeks the route's policies of registered kinds up to |n| (from where
 * |run| stands); false: refused, |out| says why. */
static inline bool peek_kinds(struct sl_engine_run *run, const struct sl_route_cfg *route,
                              void *const *states, size_t n, const struct sl_policy_ctx *c,
                              struct sl_admission *out, FILE *tf, bool *first) {
  enum sl_verdict v = sl_engine_peek(run, route->policies, n, states, c, out, NULL, tf, first);
  if (v == SL_VERDICT_PENDING) pending_refuse(&route->policies[run->next], out);
  return v == SL_VERDICT_ADMIT;
}

void sl_admission_decide(const struct sl_admission_input *in, struct sl_admission *out) {
  const struct sl_config *cfg = in->cfg;
  const struct sl_route_cfg *route = in->route;
  const struct sl_identity *id = in->id;
  const struct sl_route_state *rs = &in->policies->routes[route->index];
  FILE *tf = in->trace;
  bool first = true;
  char why[160];
  memset(out, 0, offsetof(struct sl_admission, held));
  out->admit = true;
  if (cfg->allow.n_rules) allow_find(in, out, tf, &first);
  const uint64_t skip = out->skip;

  /* Locate the route's limiter keys first: for a table of a million keys
   * the bucket is a DRAM miss, and prefetching it here lets that latency
   * overlap with the blocklist lookup instead of following it. The first
   * limits' located keys are kept for both passes below (no second hash
   * or bucket search); further ones are recomputed where needed. */
  enum { KEPT = 8 };
  struct {
    struct sl_rl_ref ref;
    uint64_t period;
    uint32_t burst;
    bool live; /* applies to this request */
  } kept[KEPT];
  for (size_t i = 0; i < route->n_rate_limits && i < KEPT && !(skip & SL_SKIP_RATE_LIMITS); i++)
    kept[i].live = limit_locate(sl_policy_state_ratelimit(rs->rate_limits[i]),
                                &route->rate_limits[i], route, id, &kept[i].ref, &kept[i].period,
                                &kept[i].burst);

  /* 0. Policies of registered kinds of the stage before the blocklist
   * (maintenance): the route's first |early|, looked at now. */
  struct sl_engine_run run;
  struct sl_policy_ctx pctx;
  size_t early = 0;
  if (route->n_policies) {
    run = (struct sl_engine_run){0};
    pctx = (struct sl_policy_ctx){cfg, route, id, in->facts, in->now_ns, in->now_unix, in->rnd,
                                  tf != NULL, out};
    while (early < route->n_policies &&
           route->policies[early].kind->stage == SL_STAGE_BEFORE_BLOCKLIST)
      early++;
    if (early && !peek_kinds(&run, route, rs->kind_data, early, &pctx, out, tf, &first)) return;
  }

  /* 1. Blocklist: client_ip, device_id, firmware (policies/blocklist_stage.c). */
  if (in->blocklist && (skip & SL_SKIP_BLOCKLIST))
    sl_engine_trace_exempt(tf, &first, "blocklist", "blocklist", out);
  else if (in->blocklist && !sl_blocklist_stage(in, out, tf, &first))
    return;

  /* 2. Policies of registered kinds (sluice/policy.h) of the stage before
   * the rate limits (the first |early| of the route's): looked at now,
   * committed with the later stage's at 4-5. */
  if (route->n_policies) {
    size_t from = early;
    while (early < route->n_policies && route->policies[early].kind->stage == SL_STAGE_BEFORE_LIMITS)
      early++;
    if (early > from && !peek_kinds(&run, route, rs->kind_data, early, &pctx, out, tf, &first))
      return;
  }

  /* 3. Route rate limits: look first, commit only if every one admits, so
   * a refused request consumes nothing. Nothing is kept per limit between
   * the two passes (a route may have any number of limits): the commit
   * recomputes keys and parameters, which is cheap and pure. */
  uint64_t fresh = 0; /* bit i: limit i meets a new key and has a new_keys cap */
  for (size_t i = 0; i < route->n_rate_limits; i++) {
    const struct sl_rate_limit_cfg *rl = &route->rate_limits[i];
    struct sl_ratelimit_table *t = sl_policy_state_ratelimit(rs->rate_limits[i]);
    /* The loader names every limit ("<route>/<key>" unless named). */
    const char *rl_name = rl->name;
    uint64_t period;
    uint32_t burst;
    struct sl_rl_ref ref;
    if (skip & SL_SKIP_RATE_LIMITS) {
      sl_engine_trace_exempt(tf, &first, rl_name, "rate_limit", out);
      continue;
    }
    bool live;
    if (i < KEPT) {
      live = kept[i].live;
      ref = kept[i].ref;
      period = kept[i].period;
      burst = kept[i].burst;
    } else {
      live = limit_locate(t, rl, route, id, &ref, &period, &burst);
    }
    if (!live) {
      if (rl->missing_key == SL_MISSING_DENY && missing_key_refuses(in, rl, out, tf, &first))
        return;
      sl_engine_trace(tf, &first, rl_name, "rate_limit", "skip", "request carries no such key");
      continue;
    }
    struct sl_rl_verdict v;
    const bool global = rl->scope == SL_SCOPE_GLOBAL;
    struct sl_global_answer ga;
    if (global)
      global_decide(in, rl, period, burst, false, &ga, &v, tf ? why : NULL, sizeof(why));
    else
      sl_ratelimit_decide_ref(t, &ref, period, burst, in->now_ns, false, &v);
    if (v.admitted) {
      if (tf) {
        if (!global) snprintf(why, sizeof(why), "%u more allowed now", v.remaining);
        sl_engine_trace(tf, &first, rl_name, "rate_limit", "admit", why);
      }
      /* A global limit has no local table to say whether its key is
       * fresh: new_keys applies to local limits. */
      struct sl_ratelimit_table *nkt = sl_policy_state_ratelimit(rs->new_keys[i]);
      if (nkt && !global && v.fresh) {
        if (new_keys_refuses(in, rl, nkt, out, tf, &first)) return;
        fresh |= 1ull << i; /* charged below, with the limit */
      }
      continue;
    }
    if (tf && !global)
      snprintf(why, sizeof(why), "over %s (burst %u); admits again in %llu ms", rl->rate.text,
               burst, (unsigned long long)(v.retry_after_ns / 1000000));
    if (sl_engine_is_shadow(cfg, rl->mode)) {
      /* Shadow: reported; the commit below charges it only if it admits. */
      sl_engine_add_shadow(out, SL_REASON_RATE_LIMIT, rl_name, NULL);
      sl_engine_trace(tf, &first, rl_name, "rate_limit", "shadow_reject", why);
      continue;
    }
    sl_engine_set_name(out->policy, rl_name);
    sl_engine_refuse(out, 429, SL_REASON_RATE_LIMIT, "rate_limited",
                     global ? sl_retry_after_s(&cfg->reject, v.retry_after_ns, in->rnd)
                            : sl_limit_retry_after(in, rl, rs->rate_limits[i], &ref, period,
                                                   v.retry_after_ns, why, sizeof(why)));
    sl_engine_trace(tf, &first, rl_name, "rate_limit", "reject", why);
    return;
  }

  /* 4-5. Policies of the stage after the rate limits (concurrency, the
   * upstream's breaker), looked at; then every policy of registered kinds
   * commits (takes a slot, a breaker ticket), in order: a commit that
   * fails refuses the request, the ones before it given back. What they
   * hold is given back if shaping or a rate limit refuses below. */
  if (route->n_policies) {
    if (route->n_policies > early &&
        !peek_kinds(&run, route, rs->kind_data, route->n_policies, &pctx, out, tf, &first))
      return;
    if (!tf && sl_engine_commit(&run, route->policies, route->n_policies, rs->kind_data, &pctx,
                                out) != SL_VERDICT_ADMIT)
      return;
  }

  /* 6. Shaping (staging): first matching rule, labelled r->label in
   * refusals, shadow events and explain. A rate cap that admits is
   * charged at once (a single shared bucket: no look-then-commit) and
   * given back if the request is refused after all. A bandwidth is handed
   * to the data plane (out->paced), which paces the exchange. */
  struct sl_ratelimit_table *cap_table = NULL;
  struct sl_rl_ref cap_ref;
  uint64_t cap_period = 0;
  if ((skip & SL_SKIP_SHAPING) && cfg->n_shaping)
    sl_engine_trace_exempt(tf, &first, "shaping", "shaping", out);
  for (size_t i = 0; i < cfg->n_shaping && in->facts && !(skip & SL_SKIP_SHAPING); i++) {
    const struct sl_shaping_rule *r = &cfg->shaping[i];
    if (!sl_route_match_one(&r->match, in->facts)) continue;
    bool paces = r->bw_down.bytes_per_s || r->bw_up.bytes_per_s;
    if (tf) shaping_describe(r, why, sizeof(why));
    if (sl_engine_is_shadow(cfg, r->mode)) {
      /* Shadow: nothing is delayed, aborted, capped or paced; a bandwidth
       * that would have paced the exchange is counted. */
      if (paces) sl_engine_add_shadow(out, SL_REASON_SHAPING, r->label, NULL);
      sl_engine_trace(tf, &first, r->label, "shaping", "shadow", why);
      break;
    }
    if (r->delay_fixed_ms || r->delay_jitter_ms) {
      uint64_t j = r->delay_jitter_ms ? (in->rnd >> 11) % (r->delay_jitter_ms + 1) : 0;
      out->delay_ms = r->delay_fixed_ms + j;
    }
    /* Use the low bits for the abort draw so it is independent of the
     * delay draw above. Explain has no dice to roll: it reports a certain
     * abort as the verdict and describes a probable one. */
    bool abort_now = in->trace ? r->abort_percent >= 100
                               : r->abort_percent > 0 &&
                                     (double)(in->rnd & 0xffff) / 65536.0 * 100.0 < r->abort_percent;
    /* Rate cap (staging): a single bucket for all traffic the rule
     * matches, burst 1, shared by every worker. */
    struct sl_ratelimit_table *cap = sl_policy_state_ratelimit(sl_policy_set_shaping(in->policies, i));
    if (cap && !tf) {
      static const char cap_key[] = "cap";
      struct sl_rl_verdict v;
      sl_ratelimit_locate(cap, cap_key, sizeof(cap_key) - 1, &cap_ref);
      if (!sl_ratelimit_decide_ref(cap, &cap_ref, r->rate_cap.period_ns, 1, in->now_ns, true, &v)) {
        sl_engine_set_name(out->policy, r->label);
        if (route->n_policies) sl_engine_rollback(&run, &pctx, out);
        sl_engine_refuse(out, 429, SL_REASON_SHAPING, "shaped_rate",
                         sl_shared_retry_after(in, sl_policy_set_shaping(in->policies, i),
                                               cap_ref.fp, r->rate_cap.period_ns,
                                               v.retry_after_ns, NULL, 0));
        return;
      }
      cap_table = cap;
      cap_period = r->rate_cap.period_ns;
    }
    sl_engine_trace(tf, &first, r->label, "shaping", abort_now ? "abort" : "shape", why);
    if (abort_now) {
      sl_engine_set_name(out->policy, r->label);
      if (cap_table) sl_ratelimit_refund(cap_table, &cap_ref, cap_period);
      if (route->n_policies && !tf) sl_engine_rollback(&run, &pctx, out);
      /* The reject minimum, spread (postmortems 003-004: not at once). */
      sl_engine_refuse(out, r->abort_status ? r->abort_status : 503, SL_REASON_SHAPING, "shaped_abort",
                       sl_retry_after_s(&cfg->reject, 0, in->rnd));
      out->delay_ms = 0;
      return;
    }
    if (paces) out->paced = r;
    break;
  }

  /* Everything admits: now consume rate-limit quota. A limit that refuses
   * here consumes nothing: in shadow mode that is the refusal reported
   * above; enforcing, another worker took the last token between look and
   * commit, and then the limits charged before it, the shaping cap and
   * what the kinds' policies hold are given back, so that the refused
   * request has consumed nothing. */
  if (!in->trace && !(skip & SL_SKIP_RATE_LIMITS)) {
    uint64_t charged = 0;    /* bit i: limit i admitted and charged */
    uint64_t nk_charged = 0; /* bit i: limit i's new_keys cap charged */
    uint8_t gsrc[SL_ROUTE_MAX_RATE_LIMITS]; /* a global limit's charge: its enum sl_lease_source */
    for (size_t i = 0; i < route->n_rate_limits && i < SL_ROUTE_MAX_RATE_LIMITS; i++) {
      const struct sl_rate_limit_cfg *rl = &route->rate_limits[i];
      struct sl_ratelimit_table *t = sl_policy_state_ratelimit(rs->rate_limits[i]);
      struct sl_rl_verdict v;
      struct sl_rl_ref ref;
      uint64_t period;
      uint32_t burst;
      if (i < KEPT) {
        if (!kept[i].live) continue;
        ref = kept[i].ref;
        period = kept[i].period;
        burst = kept[i].burst;
      } else if (!limit_locate(t, rl, route, id, &ref, &period, &burst)) {
        continue;
      }
      bool shadow = sl_engine_is_shadow(cfg, rl->mode);
      const char *refused_by = NULL;
      uint32_t wait_s = 0;
      bool ok;
      if (rl->scope == SL_SCOPE_GLOBAL) {
        struct sl_global_answer ga;
        ok = global_decide(in, rl, period, burst, true, &ga, &v, NULL, 0);
        gsrc[i] = (uint8_t)ga.v.source;
      } else {
        ok = sl_ratelimit_decide_ref(t, &ref, period, burst, in->now_ns, true, &v);
      }
      if (ok) {
        charged |= 1ull << i; /* the loader allows 64 limits a route */
        if (fresh >> i & 1) {
          const struct sl_new_keys_cfg *nk = &rl->new_keys;
          struct sl_ratelimit_table *nkt = sl_policy_state_ratelimit(rs->new_keys[i]);
          struct sl_rl_verdict nv;
          if (sl_ratelimit_admit(nkt, id->key, sizeof(id->key), nk->rate.period_ns, nk->burst,
                                 in->now_ns, &nv))
            nk_charged |= 1ull << i;
          else if (!shadow) {
            refused_by = nk->name;
            wait_s = sl_retry_after_s(&cfg->reject, nv.retry_after_ns, in->rnd);
          }
        }
        if (!refused_by) continue;
      } else {
        if (shadow) continue;
        refused_by = rl->name;
        wait_s = rl->scope == SL_SCOPE_GLOBAL
                     ? sl_retry_after_s(&cfg->reject, v.retry_after_ns, in->rnd)
                     : sl_limit_retry_after(in, rl, rs->rate_limits[i], &ref, period,
                                            v.retry_after_ns, NULL, 0); /* |ref| is reused below */
      }
      for (size_t j = 0; j <= i; j++) {
        if (nk_charged >> j & 1) {
          struct sl_ratelimit_table *nkt = sl_policy_state_ratelimit(rs->new_keys[j]);
          struct sl_rl_ref nref;
          sl_ratelimit_locate(nkt, id->key, sizeof(id->key), &nref);
          sl_ratelimit_refund(nkt, &nref, route->rate_limits[j].new_keys.rate.period_ns);
        }
        if (!(charged >> j & 1)) continue;
        if (route->rate_limits[j].scope == SL_SCOPE_GLOBAL) {
          const uint8_t *kj;
          size_t kl = sl_admission_limit_key(&route->rate_limits[j], route, id, &kj);
          if (in->global)
            in->global->refund(in->global->ctx, &route->rate_limits[j], kj, kl,
                               (enum sl_lease_source)gsrc[j]);
          continue;
        }
        struct sl_ratelimit_table *tj = sl_policy_state_ratelimit(rs->rate_limits[j]);
        if (j < KEPT)
          ref = kept[j].ref, period = kept[j].period;
        else if (!limit_locate(tj, &route->rate_limits[j], route, id, &ref, &period, &burst))
          continue; /* pure: the same answer as when it was charged */
        sl_ratelimit_refund(tj, &ref, period);
      }
      if (cap_table) sl_ratelimit_refund(cap_table, &cap_ref, cap_period);
      if (route->n_policies) sl_engine_rollback(&run, &pctx, out);
      out->delay_ms = 0;
      out->paced = NULL;
      sl_engine_set_name(out->policy, refused_by);
      sl_engine_refuse(out, 429, SL_REASON_RATE_LIMIT, "rate_limited", wait_s);
      return;
    }
  }
}

void sl_admission_finish(struct sl_admission *a, enum sl_outcome outcome, uint64_t latency_ns,
                         uint64_t now_ns) {
  if (a->finished) return;
  a->finished = true;
  for (unsigned i = 0; i < a->n_held; i++) {
    const struct sl_admission_hold *h = &a->held[i];
    if (h->policy->kind->finish)
      h->policy->kind->finish(h->policy, h->state, h->held, a, outcome, latency_ns, now_ns);
  }
  a->n_held = 0;
  a->conc = NULL; /* released by their kinds' finish */
  a->breaker = NULL;
}
