/*
 * sluice — the engine: a route's policies of registered kinds, peeked
 * then committed, with rollback. See engine.h and sluice/policy.h.
 */
#include <stdio.h>
#include <string.h>

#include "sluice/horizon.h"
#include "sluice/json.h"
#include "sluice/retry.h"
#include "engine.h"

void sl_engine_add_shadow(struct sl_admission *out, enum sl_reject_reason r, const char *route,
                          const char *what) {
  if (out->n_shadow >= SL_ADMISSION_MAX_SHADOW) return;
  struct sl_admission_shadow *s = &out->shadow[out->n_shadow++];
  s->reason = r;
  if (what)
    snprintf(s->policy, sizeof(s->policy), "%s/%s", route, what);
  else
    snprintf(s->policy, sizeof(s->policy), "%s", route);
}

static void json_escaped(FILE *f, const char *s) { sl_json_escape_file(f, s, strlen(s)); }

void sl_engine_trace_write(FILE *f, bool *first, const char *policy, const char *kind,
                           const char *verdict, const char *why) {
  fputs(*first ? "{\"policy\":\"" : ",{\"policy\":\"", f);
  json_escaped(f, policy);
  fprintf(f, "\",\"kind\":\"%s\",\"verdict\":\"%s\",\"why\":\"", kind, verdict);
  json_escaped(f, why);
  fputs("\"}", f);
  *first = false;
}

void sl_engine_trace_exempt_write(FILE *f, bool *first, const char *policy, const char *kind,
                                  const struct sl_admission *out) {
  char why[128];
  snprintf(why, sizeof(why), "skip (allow/%s)", out->allow ? out->allow->name : "?");
  sl_engine_trace_write(f, first, policy, kind, "skip", why);
}

/* A refusal of |p| (|r|): enforced (true) or reported as a shadow one. */
static bool refused(const struct sl_policy_cfg *p, const struct sl_policy_result *r,
                    const struct sl_policy_ctx *c, struct sl_admission *out) {
  if (sl_engine_is_shadow(c->cfg, p->mode)) {
    sl_engine_add_shadow(out, sl_engine_reason(p), p->name, NULL);
    return false;
  }
  sl_engine_set_name(out->policy, p->name);
  /* A crowd's refusal takes the next slot of its horizon; explaining
   * reserves nothing. */
  uint32_t wait = r->retry_after_ns || r->retry
                      ? sl_horizon_answer(&c->cfg->reject, r->horizon, c->now_ns, r->retry_after_ns,
                                          r->period_ns, c->rnd, !c->explain)
                      : 0;
  sl_engine_refuse(out, r->status ? r->status : 503, sl_engine_reason(p),
                   r->error ? r->error : "refused", wait);
  out->extra = r->extra;
  return true;
}

/* A result before a kind fills it: everything but why[]'s text (explain
 * only; 160 bytes not worth clearing per policy per request). */
static inline void result_init(struct sl_policy_result *r, enum sl_verdict v) {
  r->verdict = v;
  r->status = 0;
  r->error = NULL;
  r->retry_after_ns = 0;
  r->retry = false;
  r->horizon = NULL;
  r->extra = NULL;
  r->pending = NULL;
  r->why[0] = '\0';
}

static void *state_of(void *const *states, size_t i) { return states ? states[i] : NULL; }

enum sl_verdict sl_engine_peek(struct sl_engine_run *run, const struct sl_policy_cfg *ps, size_t n,
                               void *const *states, const struct sl_policy_ctx *c,
                               struct sl_admission *out, void **pending, FILE *trace,
                               bool *first) {
  if (n > SL_ENGINE_MAX_POLICIES) n = SL_ENGINE_MAX_POLICIES;
  /* Kinds the request's allow rule skips: never peeked, so never
   * committed, rolled back or finished. */
  uint64_t skip = c->out ? c->out->skip : 0;
  for (; run->next < n; run->next++) {
    size_t i = run->next;
    const struct sl_policy_cfg *p = &ps[i];
    struct sl_policy_result r;
    if (skip >> p->kind_index & 1) {
      sl_engine_trace_exempt(trace, first, p->name, p->kind->key, c->out);
      continue;
    }
    if (run->answer) {
      r = *run->answer;
      run->answer = NULL;
    } else {
      result_init(&r, SL_VERDICT_ADMIT);
      p->kind->peek(p, state_of(states, i), c, &r);
    }
    switch (r.verdict) {
    case SL_VERDICT_PENDING:
      if (pending) *pending = r.pending;
      return SL_VERDICT_PENDING;
    case SL_VERDICT_SKIP:
      sl_engine_trace(trace, first, p->name, p->kind->key, "skip", r.why);
      continue;
    case SL_VERDICT_ADMIT:
      run->admitted |= 1ull << i;
      sl_engine_trace(trace, first, p->name, p->kind->key, "admit", r.why);
      continue;
    case SL_VERDICT_REFUSE:
      if (refused(p, &r, c, out)) {
        sl_engine_trace(trace, first, p->name, p->kind->key, "reject", r.why);
        return SL_VERDICT_REFUSE;
      }
      sl_engine_trace(trace, first, p->name, p->kind->key, "shadow_reject", r.why);
      continue;
    }
  }
  return SL_VERDICT_ADMIT;
}

void sl_engine_resume(struct sl_engine_run *run, const struct sl_policy_result *r) {
  run->answer = r;
}

void sl_engine_rollback(struct sl_engine_run *run, const struct sl_policy_ctx *c,
                        struct sl_admission *out) {
  for (unsigned i = out->n_held; i-- > run->held_base;) {
    const struct sl_admission_hold *h = &out->held[i];
    if (h->policy->kind->rollback) h->policy->kind->rollback(h->policy, h->state, c, h->held);
  }
  out->n_held = run->held_base;
}

enum sl_verdict sl_engine_commit(struct sl_engine_run *run, const struct sl_policy_cfg *ps,
                                 size_t n, void *const *states, const struct sl_policy_ctx *c,
                                 struct sl_admission *out) {
  if (n > SL_ENGINE_MAX_POLICIES) n = SL_ENGINE_MAX_POLICIES;
  run->held_base = out->n_held;
  for (size_t i = 0; i < n; i++) {
    const struct sl_policy_cfg *p = &ps[i];
    if (!(run->admitted >> i & 1) || !p->kind->commit) continue;
    struct sl_policy_result r;
    result_init(&r, SL_VERDICT_REFUSE);
    if (out->n_held == SL_ADMISSION_MAX_HELD) {
      r.status = 503;
      r.error = "unavailable"; /* more holding policies than a request can track */
    } else {
      uint64_t held = 0;
      void *st = state_of(states, i);
      if (p->kind->commit(p, st, c, &r, &held)) {
        out->held[out->n_held++] = (struct sl_admission_hold){p, st, held};
        continue;
      }
    }
    if (!refused(p, &r, c, out)) continue;
    sl_engine_rollback(run, c, out);
    return SL_VERDICT_REFUSE;
  }
  return SL_VERDICT_ADMIT;
}

enum sl_verdict sl_engine_run(struct sl_engine_run *run, const struct sl_policy_cfg *ps, size_t n,
                              void *const *states, const struct sl_policy_ctx *c,
                              struct sl_admission *out, void **pending, FILE *trace, bool *first) {
  enum sl_verdict v = sl_engine_peek(run, ps, n, states, c, out, pending, trace, first);
  if (v != SL_VERDICT_ADMIT || c->explain) return v;
  return sl_engine_commit(run, ps, n, states, c, out);
}
