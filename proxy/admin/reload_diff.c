/*
 * sluice — what a reload changed, for its log line and POST /reload's
 * answer: routes, upstreams, listeners, policy state carried over or
 * fresh, other sections.
 *
 * TRANSITIONAL. The block below is main.c's reload diff moved unchanged
 * (dh_match .. diff_policies, the frag_* helpers, log_reload), so that the
 * lead can delete it at merge in favour of policies/config/diff.c. Only
 * its entry point changed: log_reload is reached as sl_reload_diff_log
 * (reload_diff.h), and the names below keep the block's own spelling.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/config-t.h"
#include "sluice/hash.h"
#include "sluice/json.h"
#include "sluice/log.h"
#include "admin/reload_diff.h"

#define namelist sl_namelist
#define namelist_add sl_namelist_add
#define lis_change sl_lis_change
/* log_reload's summary, for POST /reload; see sl_reload_diff_log. */
static struct {
  char last_reload_summary[512];
} M;

/* ---- what a reload changed ----------------------------------------- */

/* Fingerprints (sluice/hash.h) of the fields that define behaviour, to tell "changed" from
 * "same" per route, upstream and section. Not stored anywhere: a
 * collision only makes a log line say "unchanged". */

static uint64_t dh_match(uint64_t h, const struct sl_route_match *m) {
  h = sl_hash_mix_str(sl_hash_mix_str(sl_hash_mix_str(sl_hash_mix_str(h, m->path_prefix), m->method), m->host), m->listener);
  h = sl_hash_mix_u64(h, (uint64_t)(int64_t)m->websocket);
  for (size_t i = 0; i < m->n_headers; i++)
    h = sl_hash_mix_str(sl_hash_mix_str(h, m->headers[i].name), m->headers[i].value);
  return sl_hash_mix_u64(h, m->n_headers);
}

/* Policy identities leave the tunables out (a retuned policy keeps its
 * state and is converted), so the diff hashes them apart: a rate limit's
 * rate, burst and overrides; a breaker's settings. */
static uint64_t rate_limit_tunables(const struct sl_rate_limit_cfg *rl) {
  uint64_t h = sl_hash_mix_u64(sl_hash_mix_u64(SL_HASH_SEED, rl->rate.period_ns), rl->burst);
  for (size_t j = 0; j < rl->n_overrides; j++)
    h = sl_hash_mix_u64(sl_hash_mix_u64(sl_hash_mix_str(h, rl->overrides[j].match), rl->overrides[j].rate.period_ns),
               rl->overrides[j].burst);
  return h;
}

static uint64_t breaker_tunables(const struct sl_breaker_cfg *b) {
  uint64_t h = sl_hash_mix_u64(sl_hash_mix_u64(sl_hash_mix_u64(SL_HASH_SEED, b->consecutive_failures), b->window_ms),
                      b->min_requests);
  h = sl_hash_mix(h, &b->failure_ratio, sizeof(b->failure_ratio));
  h = sl_hash_mix_u64(sl_hash_mix_u64(sl_hash_mix_u64(h, b->slow_call_ms), b->open_for_ms), b->half_open_probes);
  return sl_hash_mix_u64(sl_hash_mix_u64(h, b->recovery_ramp_ms), (uint64_t)b->enabled);
}

static uint64_t route_hash(const struct sl_route_cfg *r) {
  uint64_t h = dh_match(sl_hash_mix_str(SL_HASH_SEED, r->name), &r->match);
  h = sl_hash_mix_str(h, r->upstream ? r->upstream->name : NULL);
  for (size_t i = 0; i < r->n_rate_limits; i++) {
    const struct sl_rate_limit_cfg *rl = &r->rate_limits[i];
    h = sl_hash_mix_u64(sl_hash_mix_u64(h, rl->identity), (uint64_t)rl->mode);
    h = sl_hash_mix_u64(h, rate_limit_tunables(rl));
  }
  h = sl_hash_mix_u64(sl_hash_mix_u64(h, r->concurrency.identity), (uint64_t)r->concurrency.mode);
  h = sl_hash_mix_u64(h, r->concurrency.max);
  h = sl_hash_mix_u64(sl_hash_mix_u64(h, r->n_rate_limits), (uint64_t)r->priority);
  return sl_hash_mix_u64(h, r->idle_timeout_ms);
}

static uint64_t upstream_hash(const struct sl_upstream_cfg *u) {
  uint64_t h = sl_hash_mix_str(sl_hash_mix_str(SL_HASH_SEED, u->name), u->address.text);
  h = sl_hash_mix_u64(sl_hash_mix_u64(h, u->max_connections), u->max_pending);
  h = sl_hash_mix_u64(sl_hash_mix_u64(sl_hash_mix_u64(h, u->connect_timeout_ms), u->response_timeout_ms),
             u->idle_timeout_ms);
  h = sl_hash_mix_u64(h, breaker_tunables(&u->breaker));
  return sl_hash_mix_u64(sl_hash_mix_u64(sl_hash_mix_u64(h, u->breaker.identity), (uint64_t)u->breaker.mode),
                (uint64_t)u->breaker.enabled);
}

static uint64_t identify_hash(const struct sl_identify_cfg *id) {
  uint64_t h = sl_hash_mix(SL_HASH_SEED, id->trusted_proxies,
                        id->n_trusted_proxies * sizeof(*id->trusted_proxies));
  h = sl_hash_mix_u64(sl_hash_mix_u64(h, id->n_trusted_proxies), id->ipv6_prefix);
  h = sl_hash_mix_str(sl_hash_mix_str(h, id->device_class_header), id->device_class_ua_regex);
  return sl_hash_mix_str(sl_hash_mix_str(h, id->firmware_header), id->device_id_header);
}

static uint64_t shaping_hash(const struct sl_config *c) {
  uint64_t h = sl_hash_mix_u64(SL_HASH_SEED, c->n_shaping);
  for (size_t i = 0; i < c->n_shaping; i++) {
    const struct sl_shaping_rule *r = &c->shaping[i];
    h = dh_match(sl_hash_mix_str(h, r->name), &r->match);
    h = sl_hash_mix_u64(sl_hash_mix_u64(sl_hash_mix_u64(h, r->delay_fixed_ms), r->delay_jitter_ms), r->abort_status);
    h = sl_hash_mix(h, &r->abort_percent, sizeof(r->abort_percent));
    h = sl_hash_mix_u64(sl_hash_mix_u64(h, r->rate_cap.period_ns), (uint64_t)r->mode);
  }
  return h;
}

/* Sections other than routes, upstreams, listeners and the blocklist. */
static void diff_sections(const struct sl_config *a, const struct sl_config *b,
                          struct namelist *out) {
  if (identify_hash(&a->identify) != identify_hash(&b->identify)) namelist_add(out, "identify");
  if (memcmp(&a->reject, &b->reject, sizeof(a->reject)) != 0) namelist_add(out, "reject");
  if (shaping_hash(a) != shaping_hash(b)) namelist_add(out, "shaping");
  if (a->mode != b->mode) namelist_add(out, "mode");
  if (a->drain_timeout_ms != b->drain_timeout_ms) namelist_add(out, "drain_timeout");
  if (a->access_log != b->access_log) namelist_add(out, "access_log");
  if (a->rejection_log_per_sec != b->rejection_log_per_sec) namelist_add(out, "rejection_log");
  if (!a->include_dir != !b->include_dir ||
      (a->include_dir && strcmp(a->include_dir, b->include_dir) != 0))
    namelist_add(out, "include");
}

static void diff_routes(const struct sl_config *a, const struct sl_config *b,
                        struct namelist *added, struct namelist *removed,
                        struct namelist *changed) {
  for (size_t i = 0; i < b->n_routes; i++) {
    const struct sl_route_cfg *r = &b->routes[i], *o = NULL;
    for (size_t j = 0; j < a->n_routes && !o; j++)
      if (strcmp(a->routes[j].name, r->name) == 0) o = &a->routes[j];
    if (!o) namelist_add(added, r->name);
    else if (route_hash(o) != route_hash(r)) namelist_add(changed, r->name);
  }
  for (size_t j = 0; j < a->n_routes; j++) {
    bool kept = false;
    for (size_t i = 0; i < b->n_routes && !kept; i++)
      kept = strcmp(a->routes[j].name, b->routes[i].name) == 0;
    if (!kept) namelist_add(removed, a->routes[j].name);
  }
}

static void diff_upstreams(const struct sl_config *a, const struct sl_config *b,
                           struct namelist *added, struct namelist *removed,
                           struct namelist *changed) {
  for (size_t i = 0; i < b->n_upstreams; i++) {
    const struct sl_upstream_cfg *u = &b->upstreams[i], *o = NULL;
    for (size_t j = 0; j < a->n_upstreams && !o; j++)
      if (strcmp(a->upstreams[j].name, u->name) == 0) o = &a->upstreams[j];
    if (!o) namelist_add(added, u->name);
    else if (upstream_hash(o) != upstream_hash(u)) namelist_add(changed, u->name);
  }
  for (size_t j = 0; j < a->n_upstreams; j++) {
    bool kept = false;
    for (size_t i = 0; i < b->n_upstreams && !kept; i++)
      kept = strcmp(a->upstreams[j].name, b->upstreams[i].name) == 0;
    if (!kept) namelist_add(removed, a->upstreams[j].name);
  }
}

/* A policy state of the previous configuration and a hash of the
 * tunables it was used with. */
struct prev_state {
  void *state;
  uint64_t tunables;
};

static int prev_cmp(const void *x, const void *y) {
  uintptr_t a = (uintptr_t)((const struct prev_state *)x)->state;
  uintptr_t b = (uintptr_t)((const struct prev_state *)y)->state;
  return a < b ? -1 : a > b;
}

/* |state| (NULL: the policy has none) is carried over if it is one of
 * the previous configuration's, |prev[0..n)| sorted by state; it was also
 * retuned (converted to new rates, a new max, new breaker settings) when
 * its |tunables| differ from those it had. */
static void policy_classify(void *state, uint64_t tunables, const char *label,
                            const struct prev_state *prev, size_t n, struct namelist *carried,
                            struct namelist *retuned, struct namelist *fresh) {
  if (!state) return;
  struct prev_state key = {state, 0};
  const struct prev_state *p = bsearch(&key, prev, n, sizeof(*prev), prev_cmp);
  namelist_add(p ? carried : fresh, label);
  if (p && p->tunables != tunables) namelist_add(retuned, label);
}

/* Every policy of |b| that has state: carried over from |a| (the same
 * state object: sl_policies_attach matched kind and identity), and then
 * possibly retuned, or fresh. */
static void diff_policies(const struct sl_config *a, const struct sl_config *b,
                          struct namelist *carried, struct namelist *retuned,
                          struct namelist *fresh) {
  size_t n = 0, cap = a->n_upstreams;
  for (size_t i = 0; i < a->n_routes; i++) cap += a->routes[i].n_rate_limits + 1;
  struct prev_state *prev = calloc(cap ? cap : 1, sizeof(*prev));
  if (!prev) abort();
  for (size_t i = 0; i < a->n_routes; i++) {
    const struct sl_route_cfg *r = &a->routes[i];
    for (size_t j = 0; j < r->n_rate_limits; j++)
      if (r->rate_limits[j].state)
        prev[n++] = (struct prev_state){r->rate_limits[j].state, rate_limit_tunables(&r->rate_limits[j])};
    if (r->concurrency.state) prev[n++] = (struct prev_state){r->concurrency.state, r->concurrency.max};
  }
  for (size_t i = 0; i < a->n_upstreams; i++)
    if (a->upstreams[i].breaker_state)
      prev[n++] = (struct prev_state){a->upstreams[i].breaker_state,
                                      breaker_tunables(&a->upstreams[i].breaker)};
  qsort(prev, n, sizeof(*prev), prev_cmp);
  char label[256];
  for (size_t i = 0; i < b->n_routes; i++) {
    const struct sl_route_cfg *r = &b->routes[i];
    for (size_t j = 0; j < r->n_rate_limits; j++)
      policy_classify(r->rate_limits[j].state, rate_limit_tunables(&r->rate_limits[j]),
                      r->rate_limits[j].name, prev, n, carried, retuned, fresh);
    snprintf(label, sizeof(label), "%s/concurrency", r->name);
    policy_classify(r->concurrency.state, r->concurrency.max, label, prev, n, carried, retuned,
                    fresh);
  }
  for (size_t i = 0; i < b->n_upstreams; i++) {
    snprintf(label, sizeof(label), "%s/breaker", b->upstreams[i].name);
    policy_classify(b->upstreams[i].breaker_state, breaker_tunables(&b->upstreams[i].breaker),
                    label, prev, n, carried, retuned, fresh);
  }
  free(prev);
}

/* A JSON fragment ("k":v,...) for sl_log_json, bounded so that the log
 * line stays whole: a field that would not fit is left out. */
struct frag {
  char buf[1700];
  size_t len;
};

static void frag_names(struct frag *f, const char *key, const struct namelist *nl) {
  if (!nl->n) return;
  char v[sizeof(nl->buf) + 64];
  size_t vl = 0;
  sl_json_escape(v, sizeof(v), &vl, nl->buf);
  if (nl->n > nl->shown) vl += (size_t)snprintf(v + vl, sizeof(v) - vl, " (+%u more)", nl->n - nl->shown);
  if (f->len + strlen(key) + vl + 8 >= sizeof(f->buf)) return;
  f->len += (size_t)snprintf(f->buf + f->len, sizeof(f->buf) - f->len, "%s\"%s\":\"%.*s\"",
                             f->len ? "," : "", key, (int)vl, v);
}

static void frag_str(struct frag *f, const char *key, const char *value) {
  char v[256];
  size_t vl = 0;
  sl_json_escape(v, sizeof(v), &vl, value);
  if (f->len + strlen(key) + vl + 8 >= sizeof(f->buf)) return;
  f->len += (size_t)snprintf(f->buf + f->len, sizeof(f->buf) - f->len, "%s\"%s\":\"%.*s\"",
                             f->len ? "," : "", key, (int)vl, v);
}

static void frag_num(struct frag *f, const char *key, unsigned long long v) {
  if (f->len + strlen(key) + 32 >= sizeof(f->buf)) return;
  f->len += (size_t)snprintf(f->buf + f->len, sizeof(f->buf) - f->len, "%s\"%s\":%llu",
                             f->len ? "," : "", key, v);
}

/* Logs the one line a reload leaves: what triggered it, the generation,
 * and what changed between |a| (the previous configuration) and |b|.
 * Also leaves a short summary in M.last_reload_summary for POST /reload. */
static void log_reload(const char *trigger, unsigned triggers, const struct sl_config *a,
                       const struct sl_config *b, size_t bl_before, size_t bl_after,
                       const struct lis_change *lc, double ms) {
  struct namelist r_add = {0}, r_del = {0}, r_chg = {0}, u_add = {0}, u_del = {0}, u_chg = {0};
  struct namelist sect = {0}, carried = {0}, retuned = {0}, fresh = {0};
  diff_routes(a, b, &r_add, &r_del, &r_chg);
  diff_upstreams(a, b, &u_add, &u_del, &u_chg);
  diff_sections(a, b, &sect);
  diff_policies(a, b, &carried, &retuned, &fresh);
  struct frag f = {.len = 0};
  frag_str(&f, "trigger", trigger);
  if (triggers > 1) frag_num(&f, "coalesced_triggers", triggers);
  frag_num(&f, "generation", b->generation);
  if (f.len + 40 < sizeof(f.buf))
    f.len += (size_t)snprintf(f.buf + f.len, sizeof(f.buf) - f.len, ",\"duration_ms\":%.3f", ms);
  snprintf(M.last_reload_summary, sizeof(M.last_reload_summary),
           "routes +%u -%u ~%u; upstreams +%u -%u ~%u; listeners +%u -%u ~%u tls %u; "
           "blocklist %zu->%zu; policies %u carried, %u fresh; other: %s",
           r_add.n, r_del.n, r_chg.n, u_add.n, u_del.n, u_chg.n, lc->added.n, lc->removed.n,
           lc->changed.n, lc->tls.n, bl_before, bl_after, carried.n, fresh.n,
           sect.n ? sect.buf : "none");
  frag_str(&f, "summary", M.last_reload_summary);
  frag_names(&f, "routes_added", &r_add);
  frag_names(&f, "routes_removed", &r_del);
  frag_names(&f, "routes_changed", &r_chg);
  frag_names(&f, "upstreams_added", &u_add);
  frag_names(&f, "upstreams_removed", &u_del);
  frag_names(&f, "upstreams_changed", &u_chg);
  frag_names(&f, "listeners_added", &lc->added);
  frag_names(&f, "listeners_removed", &lc->removed);
  frag_names(&f, "listeners_changed", &lc->changed);
  frag_names(&f, "listeners_tls_reloaded", &lc->tls);
  char bl[48];
  snprintf(bl, sizeof(bl), "%zu->%zu", bl_before, bl_after);
  frag_str(&f, "blocklist_entries", bl);
  frag_num(&f, "policies_carried", carried.n);
  frag_num(&f, "policies_fresh", fresh.n);
  frag_names(&f, "policies_fresh_names", &fresh);
  frag_names(&f, "policies_carried_names", &carried);
  frag_names(&f, "policies_retuned_names", &retuned);
  frag_names(&f, "sections_changed", &sect);
  f.buf[f.len] = '\0';
  sl_log_json(SL_LOG_INFO, "configuration reloaded", "%s", f.buf);
}

void sl_reload_diff_log(const char *trigger, unsigned triggers, const struct sl_config *a,
                        const struct sl_config *b, size_t bl_before, size_t bl_after,
                        const struct sl_lis_change *lc, double ms, char *summary,
                        size_t summary_cap) {
  log_reload(trigger, triggers, a, b, bl_before, bl_after, lc, ms);
  snprintf(summary, summary_cap, "%s", M.last_reload_summary);
}
