/*
 * sluice — policy kind `breaker`: the circuit breaker of a route's
 * upstream (configured under `upstreams.<name>.circuit_breaker`, not in
 * the route: the kind has no route key and implies a policy for every
 * route whose upstream has an enabled breaker). The state is the
 * upstream's breaker, one per upstream, shared by its routes (the set's
 * `breakers` slot, via state_of; a reload retunes it).
 *
 * Peek changes nothing: explaining, it describes what sl_breaker_admit()
 * would answer now (a snapshot); deciding, it admits and leaves the answer
 * to commit, since the admission draw and a half-open probe ticket are one
 * step of the breaker (sl_breaker_admit). Commit admits or refuses (503
 * "circuit_open", Retry-After until it may half-open) and publishes the
 * verdict in out->breaker / out->breaker_verdict, where the data plane
 * may report the outcome early (sl_breaker_report, then out->breaker =
 * NULL). Rollback reports the request cancelled (not evidence; a probe
 * ticket is given back); the outcome report (finish) tells the breaker
 * how the exchange went unless the data plane already did. The policy is
 * named "upstream/<name>"; its metric reason stays "breaker".
 */
#include <stdint.h>
#include <stdio.h>

#include "sluice/admission.h"
#include "sluice/breaker.h"
#include "sluice/policy.h"
#include "sluice/policy_state.h"
#include "../config/config_schema.h"

static bool br_implied(struct cfg_schema *s, struct sl_route_cfg *route, struct sl_policy_cfg *p) {
  const struct sl_upstream_cfg *up = route->upstream;
  if (!up || !up->breaker.enabled) return false;
  char buf[160];
  snprintf(buf, sizeof(buf), "upstream/%s", up->name);
  p->name = cs_sdup(s, buf);
  p->mark = up->mark;
  p->mode = up->breaker.mode;
  p->identity = up->breaker.identity;
  p->data = up;
  return true;
}

static void *br_state_of(const struct sl_policy_set *set, const struct sl_route_cfg *route,
                         const struct sl_policy_cfg *p) {
  (void)p;
  return sl_policy_state_breaker(sl_policy_set_breaker(set, route->upstream));
}

/* Refused, to come back in |wait_ns| (half-open); the crowd an open
 * breaker refuses is one queue, spread at the rate the upstream served
 * before it opened (|period_ns|, 0: unknown, the jitter window). */
static void refuse(struct sl_policy_result *r, struct sl_breaker *br, uint64_t wait_ns,
                   uint64_t period_ns) {
  r->verdict = SL_VERDICT_REFUSE;
  r->status = 503;
  r->error = "circuit_open";
  r->retry_after_ns = wait_ns;
  r->retry = true;
  r->horizon = sl_breaker_horizon(br);
  r->period_ns = period_ns;
}

/* Explain: what sl_breaker_admit() would answer now, without taking a
 * probe ticket or changing state. */
static void describe(const struct sl_breaker_cfg *bc, struct sl_breaker *br, uint64_t now_ns,
                     struct sl_policy_result *r) {
  struct sl_breaker_snapshot snap;
  sl_breaker_snapshot(br, now_ns, &snap);
  uint32_t probes = bc->half_open_probes ? bc->half_open_probes : 1;
  bool refused = false;
  uint64_t wait_ns = 0;
  if (!bc->enabled) {
    snprintf(r->why, sizeof(r->why), "breaker disabled");
  } else if (snap.state == SL_BREAKER_OPEN && snap.open_remaining_ns > 0) {
    refused = true;
    wait_ns = snap.open_remaining_ns;
    snprintf(r->why, sizeof(r->why), "breaker open; half-opens in %llu ms",
             (unsigned long long)(wait_ns / 1000000));
  } else if (snap.state == SL_BREAKER_OPEN) {
    snprintf(r->why, sizeof(r->why), "breaker open for long enough: a half-open probe");
  } else if (snap.state == SL_BREAKER_HALF_OPEN) {
    refused = snap.probes_in_flight + snap.probe_successes >= probes;
    snprintf(r->why, sizeof(r->why), "breaker half-open; %u of %u probes in flight",
             snap.probes_in_flight, probes);
  } else if (snap.admit_permille < 1000) {
    snprintf(r->why, sizeof(r->why), "breaker closed, recovering: %u per mille admitted",
             snap.admit_permille);
  } else {
    snprintf(r->why, sizeof(r->why), "breaker closed");
  }
  if (refused) refuse(r, br, wait_ns, snap.serve_period_ns);
}

static void br_peek(const struct sl_policy_cfg *p, void *state, const struct sl_policy_ctx *c,
                    struct sl_policy_result *r) {
  const struct sl_upstream_cfg *up = p->data;
  if (!state)
    r->verdict = SL_VERDICT_SKIP;
  else if (c->explain)
    describe(&up->breaker, state, c->now_ns, r);
}

static bool br_commit(const struct sl_policy_cfg *p, void *state, const struct sl_policy_ctx *c,
                      struct sl_policy_result *r, uint64_t *held) {
  (void)p;
  struct sl_breaker_verdict bv;
  if (!sl_breaker_admit(state, c->now_ns, c->rnd, &bv)) {
    refuse(r, state, bv.retry_after_ns, bv.serve_period_ns);
    return false;
  }
  c->out->breaker = state;
  c->out->breaker_verdict = bv; /* there, where the data plane may report it early */
  (void)held;
  return true;
}

static void report(struct sl_admission *a, enum sl_outcome outcome, uint64_t latency_ns,
                   uint64_t now_ns) {
  if (!a->breaker) return; /* the data plane reported it already */
  sl_breaker_report(a->breaker, &a->breaker_verdict, outcome, latency_ns, now_ns);
  a->breaker = NULL;
}

static void br_rollback(const struct sl_policy_cfg *p, void *state, const struct sl_policy_ctx *c,
                        uint64_t held) {
  (void)p, (void)state;
  (void)held;
  report(c->out, SL_OUTCOME_CANCELLED, 0, c->now_ns);
}

static void br_finish(const struct sl_policy_cfg *p, void *state, uint64_t held,
                      struct sl_admission *a, enum sl_outcome outcome, uint64_t latency_ns,
                      uint64_t now_ns) {
  (void)p, (void)state, (void)held;
  report(a, outcome, latency_ns, now_ns);
}

const struct sl_kind sl_kind_breaker = {
    .key = "breaker",
    .reason = "breaker",
    .reason_id = SL_REASON_BREAKER,
    .stage = SL_STAGE_AFTER_LIMITS,
    .implied = br_implied,
    .state_of = br_state_of,
    .peek = br_peek,
    .commit = br_commit,
    .rollback = br_rollback,
    .finish = br_finish,
};
