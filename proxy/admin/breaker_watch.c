/*
 * sluice — breaker gauges and transition logs. See breaker_watch.h.
 */
#include <stdio.h>
#include <stdlib.h>

#include "sluice/breaker.h"
#include "sluice/json.h"
#include "sluice/log.h"
#include "sluice/metrics.h"
#include "sluice/policy_state.h"
#include "admin/breaker_watch.h"
#include "core/gen.h"
#include "core/stats.h"

static struct sl_metric_family *opens_family;

void sl_breaker_watch_init(void) {
  opens_family = sl_metrics_family("sluice_circuit_breaker_opens_total",
                                   "Times the upstream's circuit breaker has opened.",
                                   SL_METRIC_SAMPLED_COUNTER, "upstream");
}

void sl_breaker_gauges(const struct sl_gen *g, uint64_t now_ns) {
  const struct sl_config *cfg = g->cfg;
  for (size_t i = 0; i < cfg->n_upstreams; i++) {
    struct sl_breaker *b = sl_policy_state_breaker(g->policies->breakers[i]);
    const char *values[1] = {cfg->upstreams[i].name};
    struct sl_metric_series *bs = sl_metrics_series(sl_stats.breaker_state, values);
    if (bs) sl_metric_gauge_set(bs, b ? (int64_t)sl_breaker_state_at(b, now_ns) : 0);
    if (!b || !opens_family) continue;
    struct sl_breaker_snapshot snap;
    sl_breaker_snapshot(b, now_ns, &snap);
    struct sl_metric_series *os = sl_metrics_series(opens_family, values);
    if (os) sl_metric_gauge_set(os, (int64_t)snap.opened_total);
  }
}

/* What the last look saw of one breaker (main thread only). A reload
 * that keeps an upstream keeps its breaker, hence its entry; one that
 * replaces it starts the new breaker's entry at what it is. */
struct seen {
  const struct sl_breaker *b;
  enum sl_breaker_state state;
  uint64_t opened_total;
};
static struct seen *seen;
static size_t n_seen;

/* |b|'s entry in the |next| table: what the last look saw, or, for a
 * breaker not seen before, what it is now (nothing to report). */
static struct seen *seen_for(const struct sl_breaker *b, const struct sl_breaker_snapshot *now,
                             enum sl_breaker_state state, struct seen *next, size_t *n_next) {
  struct seen *s = &next[(*n_next)++];
  *s = (struct seen){b, state, now->opened_total};
  for (size_t j = 0; j < n_seen; j++) {
    if (seen[j].b == b) {
      *s = seen[j];
      break;
    }
  }
  return s;
}

void sl_breaker_watch(const struct sl_gen *g, uint64_t now_ns) {
  const struct sl_config *cfg = g->cfg;
  struct seen *next = calloc(cfg->n_upstreams ? cfg->n_upstreams : 1, sizeof(*next));
  if (!next) return; /* logs only: try again next second */
  size_t n_next = 0;
  for (size_t i = 0; i < cfg->n_upstreams; i++) {
    struct sl_breaker *b = sl_policy_state_breaker(g->policies->breakers[i]);
    if (!b) continue;
    struct sl_breaker_snapshot snap;
    sl_breaker_snapshot(b, now_ns, &snap);
    enum sl_breaker_state state = sl_breaker_state_at(b, now_ns);
    struct seen *s = seen_for(b, &snap, state, next, &n_next);
    char up[128];
    size_t n = 0;
    sl_json_escape(up, sizeof(up), &n, cfg->upstreams[i].name);
    up[n] = '\0';
    if (snap.opened_total > s->opened_total)
      sl_log_json(SL_LOG_WARN, "circuit breaker opened",
                  "\"upstream\":\"%s\",\"opens\":%llu,\"opens_total\":%llu,\"state\":\"%s\","
                  "\"open_for_ms\":%llu",
                  up, (unsigned long long)(snap.opened_total - s->opened_total),
                  (unsigned long long)snap.opened_total,
                  state == SL_BREAKER_OPEN ? "open" : state == SL_BREAKER_HALF_OPEN ? "half-open" : "closed",
                  (unsigned long long)(snap.open_remaining_ns / 1000000));
    else if (state != s->state && state == SL_BREAKER_HALF_OPEN)
      sl_log_json(SL_LOG_INFO, "circuit breaker half-open",
                  "\"upstream\":\"%s\",\"probes\":%u", up, cfg->upstreams[i].breaker.half_open_probes);
    else if (state != s->state && state == SL_BREAKER_CLOSED)
      sl_log_json(SL_LOG_INFO, "circuit breaker closed",
                  "\"upstream\":\"%s\",\"admit_permille\":%u", up, snap.admit_permille);
    s->state = state;
    s->opened_total = snap.opened_total;
  }
  free(seen);
  seen = next;
  n_seen = n_next;
}
