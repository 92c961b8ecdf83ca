/*
 * sluice — what a reload changed. See include/sluice/config_diff.h.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/config_diff.h"
#include "sluice/hash.h"
#include "sluice/json.h"
#include "sluice/policy.h"
#include "sluice/policy_state.h"
#include "config_allow.h"

void sl_namelist_add(struct sl_namelist *nl, const char *name) {
  nl->n++;
  size_t need = strlen(name) + (nl->len ? 1 : 0);
  if (nl->len + need >= sizeof(nl->buf)) return;
  if (nl->len) nl->buf[nl->len++] = ',';
  memcpy(nl->buf + nl->len, name, strlen(name) + 1);
  nl->len += strlen(name);
  nl->shown++;
}

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
  h = sl_hash_mix_u64(h, (uint64_t)rl->missing_key);
  h = sl_hash_mix_u64(sl_hash_mix_u64(h, rl->new_keys.rate.period_ns), rl->new_keys.burst);
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
  for (size_t i = 0; i < r->n_policies; i++) {
    const struct sl_policy_cfg *p = &r->policies[i];
    if (!p->kind->tunables) continue; /* diffed where configured (the breaker: its upstream) */
    h = sl_hash_mix_u64(sl_hash_mix_str(h, p->kind->key), (uint64_t)p->mode);
    h = sl_hash_mix_u64(sl_hash_mix_u64(h, p->identity), p->kind->tunables(p));
  }
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
    h = sl_hash_mix_u64(sl_hash_mix_u64(h, r->bw_down.bytes_per_s), r->bw_up.bytes_per_s);
  }
  return h;
}

/* The top-level maintenance (0: none): on, off, or retuned. It is implied
 * in routes too, which then show as changed; naming it here says why. */
static uint64_t maintenance_hash(const struct sl_config *c) {
  const struct sl_policy_cfg *p = c->maintenance;
  if (!p) return 0;
  uint64_t h = sl_hash_mix_u64(sl_hash_mix_u64(1, (uint64_t)p->mode), p->identity);
  return p->kind->tunables ? sl_hash_mix_u64(h, p->kind->tunables(p)) : h;
}

/* Sections other than routes, upstreams, listeners and the blocklist. */
static void diff_sections(const struct sl_config *a, const struct sl_config *b,
                          struct sl_namelist *out) {
  if (identify_hash(&a->identify) != identify_hash(&b->identify)) sl_namelist_add(out, "identify");
  if (memcmp(&a->reject, &b->reject, sizeof(a->reject)) != 0) sl_namelist_add(out, "reject");
  if (shaping_hash(a) != shaping_hash(b)) sl_namelist_add(out, "shaping");
  if (maintenance_hash(a) != maintenance_hash(b)) sl_namelist_add(out, "maintenance");
  if (cfg_allow_hash(a) != cfg_allow_hash(b)) sl_namelist_add(out, "allow");
  if (a->mode != b->mode) sl_namelist_add(out, "mode");
  if (a->drain_timeout_ms != b->drain_timeout_ms) sl_namelist_add(out, "drain_timeout");
  if (a->drain_spread_ms != b->drain_spread_ms) sl_namelist_add(out, "drain_spread");
  if (a->access_log != b->access_log || a->access_log_query != b->access_log_query)
    sl_namelist_add(out, "access_log");
  if (a->rejection_log_per_sec != b->rejection_log_per_sec) sl_namelist_add(out, "rejection_log");
  if (!a->include_dir != !b->include_dir ||
      (a->include_dir && strcmp(a->include_dir, b->include_dir) != 0))
    sl_namelist_add(out, "include");
}

/* Added, removed and changed members of two arrays of named items (routes,
 * upstreams): |stride| bytes apart, the name a `const char *` at |name_at|,
 * |fp| the fingerprint that tells "changed" from "same". */
struct named_array {
  const void *items;
  size_t n;
};

static const char *item_name(const struct named_array *v, size_t i, size_t stride,
                             size_t name_at) {
  return *(const char *const *)((const char *)v->items + i * stride + name_at);
}

static size_t item_find(const struct named_array *v, const char *name, size_t stride,
                        size_t name_at) {
  for (size_t j = 0; j < v->n; j++)
    if (strcmp(item_name(v, j, stride, name_at), name) == 0) return j;
  return v->n;
}

static void diff_named(struct named_array a, struct named_array b, size_t stride, size_t name_at,
                       uint64_t (*fp)(const void *), struct sl_namelist *added,
                       struct sl_namelist *removed, struct sl_namelist *changed) {
  for (size_t i = 0; i < b.n; i++) {
    const char *name = item_name(&b, i, stride, name_at);
    size_t j = item_find(&a, name, stride, name_at);
    if (j == a.n)
      sl_namelist_add(added, name);
    else if (fp((const char *)a.items + j * stride) != fp((const char *)b.items + i * stride))
      sl_namelist_add(changed, name);
  }
  for (size_t j = 0; j < a.n; j++) {
    const char *name = item_name(&a, j, stride, name_at);
    if (item_find(&b, name, stride, name_at) == b.n) sl_namelist_add(removed, name);
  }
}

static uint64_t route_fp(const void *r) { return route_hash(r); }
static uint64_t upstream_fp(const void *u) { return upstream_hash(u); }

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
                            const struct prev_state *prev, size_t n, struct sl_namelist *carried,
                            struct sl_namelist *retuned, struct sl_namelist *fresh) {
  if (!state) return;
  struct prev_state key = {state, 0};
  const struct prev_state *p = bsearch(&key, prev, n, sizeof(*prev), prev_cmp);
  sl_namelist_add(p ? carried : fresh, label);
  if (p && p->tunables != tunables) sl_namelist_add(retuned, label);
}

/* Every policy of |b| that has state (in |pb|): carried over from |a|
 * (the same state object in |pa|: sl_policy_set_new matched kind and
 * identity), and then possibly retuned, or fresh. */
static void diff_policies(const struct sl_config *a, const struct sl_policy_set *pa,
                          const struct sl_config *b, const struct sl_policy_set *pb,
                          struct sl_namelist *carried, struct sl_namelist *retuned,
                          struct sl_namelist *fresh) {
  size_t n = 0, cap = a->n_upstreams;
  for (size_t i = 0; i < a->n_routes; i++)
    cap += a->routes[i].n_rate_limits + 1 + a->routes[i].n_policies;
  struct prev_state *prev = calloc(cap ? cap : 1, sizeof(*prev));
  if (!prev) abort();
  for (size_t i = 0; i < a->n_routes; i++) {
    const struct sl_route_cfg *r = &a->routes[i];
    const struct sl_route_state *rs = &pa->routes[i];
    for (size_t j = 0; j < r->n_rate_limits; j++)
      if (rs->rate_limits[j])
        prev[n++] = (struct prev_state){rs->rate_limits[j], rate_limit_tunables(&r->rate_limits[j])};
    if (rs->concurrency) prev[n++] = (struct prev_state){rs->concurrency, r->concurrency.max};
    for (size_t j = 0; rs->kinds && j < r->n_policies; j++)
      if (rs->kinds[j] && !r->policies[j].kind->state_of) /* state_of: reported by its slot */
        prev[n++] = (struct prev_state){rs->kinds[j], r->policies[j].kind->tunables(&r->policies[j])};
  }
  for (size_t i = 0; i < a->n_upstreams; i++)
    if (pa->breakers[i])
      prev[n++] = (struct prev_state){pa->breakers[i], breaker_tunables(&a->upstreams[i].breaker)};
  qsort(prev, n, sizeof(*prev), prev_cmp);
  char label[256];
  for (size_t i = 0; i < b->n_routes; i++) {
    const struct sl_route_cfg *r = &b->routes[i];
    const struct sl_route_state *rs = &pb->routes[i];
    for (size_t j = 0; j < r->n_rate_limits; j++)
      policy_classify(rs->rate_limits[j], rate_limit_tunables(&r->rate_limits[j]),
                      r->rate_limits[j].name, prev, n, carried, retuned, fresh);
    snprintf(label, sizeof(label), "%s/concurrency", r->name);
    policy_classify(rs->concurrency, r->concurrency.max, label, prev, n, carried, retuned, fresh);
    for (size_t j = 0; rs->kinds && j < r->n_policies; j++) /* kinds' own states */
      if (rs->kinds[j] && !r->policies[j].kind->state_of)
        policy_classify(rs->kinds[j], r->policies[j].kind->tunables(&r->policies[j]),
                        r->policies[j].name, prev, n, carried, retuned, fresh);
  }
  for (size_t i = 0; i < b->n_upstreams; i++) {
    snprintf(label, sizeof(label), "%s/breaker", b->upstreams[i].name);
    policy_classify(pb->breakers[i], breaker_tunables(&b->upstreams[i].breaker), label, prev, n,
                    carried, retuned, fresh);
  }
  free(prev);
}

/* A JSON fragment ("k":v,...) for sl_log_json, bounded so that the log
 * line stays whole: a field that would not fit is left out. */
struct frag {
  char *buf;
  size_t cap, len;
};

static void frag_names(struct frag *f, const char *key, const struct sl_namelist *nl) {
  if (!nl->n) return;
  char v[sizeof(nl->buf) + 64];
  size_t vl = 0;
  sl_json_escape(v, sizeof(v), &vl, nl->buf);
  if (nl->n > nl->shown) vl += (size_t)snprintf(v + vl, sizeof(v) - vl, " (+%u more)", nl->n - nl->shown);
  if (f->len + strlen(key) + vl + 8 >= f->cap) return;
  f->len += (size_t)snprintf(f->buf + f->len, f->cap - f->len, "%s\"%s\":\"%.*s\"",
                             f->len ? "," : "", key, (int)vl, v);
}

static void frag_str(struct frag *f, const char *key, const char *value) {
  char v[256];
  size_t vl = 0;
  sl_json_escape(v, sizeof(v), &vl, value);
  if (f->len + strlen(key) + vl + 8 >= f->cap) return;
  f->len += (size_t)snprintf(f->buf + f->len, f->cap - f->len, "%s\"%s\":\"%.*s\"",
                             f->len ? "," : "", key, (int)vl, v);
}

static void frag_num(struct frag *f, const char *key, unsigned long long v) {
  if (f->len + strlen(key) + 32 >= f->cap) return;
  f->len += (size_t)snprintf(f->buf + f->len, f->cap - f->len, "%s\"%s\":%llu",
                             f->len ? "," : "", key, v);
}

void sl_config_diff(const struct sl_config *prev, const struct sl_policy_set *prev_set,
                    const struct sl_config *next, const struct sl_policy_set *next_set,
                    struct sl_config_diff *d) {
  memset(d, 0, sizeof(*d));
  diff_named((struct named_array){prev->routes, prev->n_routes},
             (struct named_array){next->routes, next->n_routes}, sizeof(struct sl_route_cfg),
             offsetof(struct sl_route_cfg, name), route_fp, &d->routes_added, &d->routes_removed,
             &d->routes_changed);
  diff_named((struct named_array){prev->upstreams, prev->n_upstreams},
             (struct named_array){next->upstreams, next->n_upstreams},
             sizeof(struct sl_upstream_cfg), offsetof(struct sl_upstream_cfg, name), upstream_fp,
             &d->upstreams_added, &d->upstreams_removed, &d->upstreams_changed);
  diff_sections(prev, next, &d->sections);
  diff_policies(prev, prev_set, next, next_set, &d->carried, &d->retuned, &d->fresh);
}

void sl_config_diff_report(const struct sl_config_diff *d, const struct sl_reload_facts *rf,
                           char *summary, size_t summary_len, char *fields, size_t fields_len) {
  static const struct sl_namelist none;
  const struct sl_namelist *la = rf->listeners_added ? rf->listeners_added : &none;
  const struct sl_namelist *lr = rf->listeners_removed ? rf->listeners_removed : &none;
  const struct sl_namelist *lc = rf->listeners_changed ? rf->listeners_changed : &none;
  const struct sl_namelist *lt = rf->listeners_tls ? rf->listeners_tls : &none;
  struct frag f = {.buf = fields, .cap = fields_len, .len = 0};
  if (fields_len) fields[0] = '\0';
  frag_str(&f, "trigger", rf->trigger);
  if (rf->triggers > 1) frag_num(&f, "coalesced_triggers", rf->triggers);
  frag_num(&f, "generation", rf->generation);
  if (f.len + 40 < f.cap)
    f.len += (size_t)snprintf(f.buf + f.len, f.cap - f.len, ",\"duration_ms\":%.3f",
                              rf->duration_ms);
  snprintf(summary, summary_len,
           "routes +%u -%u ~%u; upstreams +%u -%u ~%u; listeners +%u -%u ~%u tls %u; "
           "blocklist %zu->%zu; policies %u carried, %u fresh; other: %s",
           d->routes_added.n, d->routes_removed.n, d->routes_changed.n, d->upstreams_added.n,
           d->upstreams_removed.n, d->upstreams_changed.n, la->n, lr->n, lc->n, lt->n,
           rf->blocklist_before, rf->blocklist_after, d->carried.n, d->fresh.n,
           d->sections.n ? d->sections.buf : "none");
  frag_str(&f, "summary", summary);
  frag_names(&f, "routes_added", &d->routes_added);
  frag_names(&f, "routes_removed", &d->routes_removed);
  frag_names(&f, "routes_changed", &d->routes_changed);
  frag_names(&f, "upstreams_added", &d->upstreams_added);
  frag_names(&f, "upstreams_removed", &d->upstreams_removed);
  frag_names(&f, "upstreams_changed", &d->upstreams_changed);
  frag_names(&f, "listeners_added", la);
  frag_names(&f, "listeners_removed", lr);
  frag_names(&f, "listeners_changed", lc);
  frag_names(&f, "listeners_tls_reloaded", lt);
  char bl[48];
  snprintf(bl, sizeof(bl), "%zu->%zu", rf->blocklist_before, rf->blocklist_after);
  frag_str(&f, "blocklist_entries", bl);
  /* Active and lapsed apart: an entry past its `expires` still counts in
   * blocklist_entries but blocks nothing. Like the name lists, left out
   * when there is nothing to count (no blocklist entries). */
  if (rf->blocklist_after) {
    size_t expired = rf->blocklist_expired < rf->blocklist_after ? rf->blocklist_expired
                                                                 : rf->blocklist_after;
    frag_num(&f, "blocklist_active", rf->blocklist_after - expired);
    frag_num(&f, "blocklist_expired", expired);
  }
  frag_num(&f, "policies_carried", d->carried.n);
  frag_num(&f, "policies_fresh", d->fresh.n);
  frag_names(&f, "policies_fresh_names", &d->fresh);
  frag_names(&f, "policies_carried_names", &d->carried);
  frag_names(&f, "policies_retuned_names", &d->retuned);
  frag_names(&f, "sections_changed", &d->sections);
  if (f.len < f.cap) f.buf[f.len] = '\0';
}
