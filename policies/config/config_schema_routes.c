/*
 * sluice — configuration schema: routes (match, rate limits, concurrency)
 * and shaping rules. See config_schema.h.
 */
#include <ctype.h>
#include <math.h>
#include <regex.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/hash.h"
#include "sluice/config.h"
#include "sluice/path.h"
#include "sluice/policy.h"
#include "sluice/version.h"
#include "config_schema.h"

/* ---- routes ------------------------------------------------------- */

static const char *const MATCH_KEYS[] = {"path_prefix", "method",    "host",
                                         "header",      "listener",  "websocket", NULL};

/* Requests are matched on their normalised path (sluice/path.h): a prefix
 * that is not itself in normal form could never match what it says, so it
 * is an error rather than a silent dead route. Returns true if |v| is a
 * usable prefix. */
static bool check_path_prefix(struct cfg_schema *s, node_t *v) {
  size_t len = strlen(v->str);
  if (strcspn(v->str, "?#") != len) {
    cs_err(s, v, "path_prefix: '%s' has a query or fragment; routes match the path only", v->str);
    return false;
  }
  char *norm = malloc(len + 1);
  if (!norm) abort(); /* config load: out of memory is fatal */
  size_t nlen;
  enum sl_path_status st = sl_path_normalize(v->str, len, norm, &nlen);
  bool ok = st == SL_PATH_OK && nlen == len && memcmp(norm, v->str, len) == 0;
  if (st != SL_PATH_OK)
    cs_err(s, v, "path_prefix: '%s' can never match: requests with such a path are refused (%s)",
        v->str, sl_path_status_name(st));
  else if (!ok)
    cs_err(s, v, "path_prefix: '%s' is not a normalised path; requests are matched on their normal "
              "form, write '%s'", v->str, norm);
  free(norm);
  return ok;
}

void cs_parse_match(struct cfg_schema *s, node_t *m, struct sl_route_match *rm) {
  struct sl_config *cfg = s->cfg;
  cs_check_keys(s, m, "match", MATCH_KEYS);
  node_t *v;
  if (cs_get_text(s, m, "path_prefix", &v) > 0) {
    if (v->str[0] != '/')
      cs_err(s, v, "path_prefix: must start with '/' (got '%s')", v->str);
    else if (check_path_prefix(s, v))
      rm->path_prefix = cs_sdup(s, v->str);
  }
  if (cs_get_text(s, m, "method", &v) > 0) {
    if (!cfg_is_token(v->str)) {
      cs_err(s, v, "method: '%s' is not a valid HTTP method", v->str);
    } else {
      char *p = sl_arena_xstrdup(s->a, v->str);
      for (char *q = p; *q; q++) *q = (char)toupper((unsigned char)*q);
      rm->method = p;
    }
  }
  if (cs_get_text(s, m, "host", &v) > 0) {
    bool ok = v->len > 0;
    for (const char *p = v->str; *p && ok; p++)
      ok = isalnum((unsigned char)*p) || strchr("-._*[]", *p) || (*p == ':' && v->str[0] == '[');
    if (!ok)
      cs_err(s, v, "host: '%s' is not a host name (write it without scheme or port)", v->str);
    else
      rm->host = cs_lowercase_dup(s, v->str);
  }
  node_t *hdr = cs_get_node(s, m, "header", CFG_MAP);
  if (hdr && hdr->n) {
    rm->headers = sl_arena_xalloc(s->a, hdr->n * sizeof(*rm->headers));
    for (size_t i = 0; i < hdr->n; i++) {
      node_t *k = hdr->kids[2 * i], *hv = hdr->kids[2 * i + 1];
      if (!cfg_is_token(k->str)) {
        cs_err(s, k, "header: '%s' is not a valid header name", k->str);
        continue;
      }
      struct sl_header_match *h = &rm->headers[rm->n_headers];
      h->name = cs_lowercase_dup(s, k->str);
      h->value = NULL;
      if (hv->kind != CFG_NULL) {
        if (!cs_want(s, hv, CFG_SCALAR, k->str)) continue;
        h->value = cs_sdup(s, hv->str);
      }
      rm->n_headers++;
    }
  }
  if (cs_get_text(s, m, "listener", &v) > 0) {
    size_t i;
    for (i = 0; i < cfg->n_listeners; i++)
      if (cfg->listeners[i].name && !strcmp(cfg->listeners[i].name, v->str)) break;
    if (i < cfg->n_listeners) {
      rm->listener = cfg->listeners[i].name;
    } else {
      const char **names = malloc((cfg->n_listeners + 1) * sizeof(*names));
      if (!names) abort();
      for (i = 0; i < cfg->n_listeners; i++) names[i] = cfg->listeners[i].name;
      char sug[512];
      cs_suggestion(sug, sizeof(sug), v->str, names, cfg->n_listeners, "defined listeners are");
      free(names);
      cs_err(s, v, "listener: '%s' is not a defined listener%s", v->str, sug);
    }
  }
  rm->websocket = -1;
  bool ws;
  if (cs_get_bool(s, m, "websocket", &ws) > 0) rm->websocket = ws;
}

static const char *const RATE_LIMIT_KEYS[] = {"name",     "key",      "rate", "burst",
                                              "max_keys", "override", "mode", "missing_key",
                                              "new_keys", "scope", NULL};
static const char *const KEY_NAMES[] = {"client_ip", "device_class", "device_id", "route", NULL};

static void parse_overrides(struct cfg_schema *s, node_t *ov, struct sl_rate_limit_cfg *rl) {
  if (rl->key == SL_KEY_ROUTE) {
    cs_err(s, ov, "override: a limit keyed by route has one bucket; nothing to override");
    return;
  }
  if (rl->key == SL_KEY_CLIENT_IP) {
    /* Overrides name key values (a device class, a device id); per-address
     * exceptions belong in identify.client_ip.trusted_proxies or a route. */
    cs_err(s, ov, "override: a limit keyed by client_ip has no named values to override "
               "(use key: device_class or device_id)");
    return;
  }
  if (!ov->n) return;
  rl->overrides = sl_arena_xalloc(s->a, ov->n * sizeof(*rl->overrides));
  for (size_t i = 0; i < ov->n; i++) {
    node_t *k = ov->kids[2 * i], *v = ov->kids[2 * i + 1];
    struct sl_rate_override *o = &rl->overrides[rl->n_overrides];
    memset(o, 0, sizeof(*o));
    o->match = cs_sdup(s, k->str);
    if (v->kind == CFG_SCALAR) {
      char e[160];
      if (sl_parse_rate(cs_sdup(s, v->str), &o->rate, e, sizeof(e))) {
        cs_err(s, v, "override '%s': %s", k->str, e);
        continue;
      }
    } else if (v->kind == CFG_MAP) {
      static const char *const okeys[] = {"rate", "burst", NULL};
      cs_check_keys(s, v, "override", okeys);
      int rc = cs_get_rate(s, v, "rate", &o->rate);
      if (rc == 0) cs_err(s, v, "override '%s': missing 'rate'", k->str);
      if (rc <= 0) continue;
      if (cs_get_burst(s, v, &o->burst) < 0) continue;
    } else {
      char got[64];
      cs_describe(v, got, sizeof(got));
      cs_err(s, v, "override '%s': expected a rate (e.g. \"200/s\") or {rate, burst}, got %s",
          k->str, got);
      continue;
    }
    rl->n_overrides++;
  }
}

/* What a limiter table's keys mean: whose limit, keyed by what, how big.
 * Rates, bursts and overrides are tunables: a reload that changes them
 * keeps the table and converts each key (sl_policies_attach). */
static uint64_t rate_limit_identity(const char *route, const struct sl_rate_limit_cfg *rl) {
  uint64_t h = sl_hash_mix_str(SL_HASH_SEED, "rate_limit");
  h = sl_hash_mix_str(h, route);
  h = sl_hash_mix_str(h, rl->name);
  h = sl_hash_mix_u64(h, rl->key);
  h = sl_hash_mix_u64(h, rl->scope);
  return sl_hash_mix_u64(h, rl->max_keys);
}

/* `new_keys: {per, rate, burst, max_keys}` of |rl| (named already). Only
 * for keys the client picks: an address or a route is not chosen per
 * request, so there is nothing to rotate. */
static void parse_new_keys(struct cfg_schema *s, node_t *v, const char *route,
                           struct sl_rate_limit_cfg *rl) {
  static const char *const keys[] = {"per", "rate", "burst", "max_keys", NULL};
  static const char *const per_names[] = {"client_ip", NULL};
  struct sl_new_keys_cfg *nk = &rl->new_keys;
  if (rl->key == SL_KEY_CLIENT_IP || rl->key == SL_KEY_ROUTE) {
    cs_err(s, v, "new_keys: a limit keyed by %s has keys the client cannot choose; it applies "
                 "to device_class and device_id", KEY_NAMES[rl->key]);
    return;
  }
  cs_check_keys(s, v, "new_keys", keys);
  int per = 0;
  cs_get_enum(s, v, "per", per_names, &per);
  int rc = cs_get_rate(s, v, "rate", &nk->rate);
  if (rc == 0) cs_err(s, v, "new_keys: missing 'rate' (new keys per client address, e.g. \"20/m\")");
  if (rc <= 0) {
    nk->rate.period_ns = 0;
    return;
  }
  nk->burst = cs_default_burst(&nk->rate);
  cs_get_burst(s, v, &nk->burst);
  cs_get_u32(s, v, "max_keys", 1, 100000000, &nk->max_keys);
  char buf[200];
  snprintf(buf, sizeof(buf), "%s/new_keys", rl->name);
  nk->name = cs_sdup(s, buf);
  uint64_t h = sl_hash_mix_str(SL_HASH_SEED, "new_keys");
  h = sl_hash_mix_str(h, route);
  h = sl_hash_mix_str(h, rl->name);
  nk->identity = sl_hash_mix_u64(h, nk->max_keys);
}

static bool parse_rate_limit(struct cfg_schema *s, node_t *m, struct sl_route_cfg *r,
                             struct sl_rate_limit_cfg *rl) {
  cs_check_keys(s, m, "rate limit", RATE_LIMIT_KEYS);
  memset(rl, 0, sizeof(*rl));
  rl->mark = m->mark;
  int key = 0;
  int rc = cs_get_enum(s, m, "key", KEY_NAMES, &key);
  if (rc == 0) cs_err(s, m, "rate limit: missing 'key' (client_ip, device_class, device_id or route)");
  rl->key = (enum sl_limit_key)key;
  rc = cs_get_rate(s, m, "rate", &rl->rate);
  if (rc == 0) cs_err(s, m, "rate limit: missing 'rate' (e.g. \"5/s\")");
  if (rl->rate.period_ns) rl->burst = cs_default_burst(&rl->rate);
  cs_get_burst(s, m, &rl->burst);
  cs_get_u32(s, m, "max_keys", 1, 100000000, &rl->max_keys);
  node_t *ov = cs_get_node(s, m, "override", CFG_MAP);
  if (ov) parse_overrides(s, ov, rl);
  cs_get_mode(s, m, &rl->mode);
  cs_get_missing_key(s, m, rl->key, &rl->missing_key);
  static const char *const scopes[] = {"local", "global", NULL};
  int sc;
  if (cs_get_enum(s, m, "scope", scopes, &sc) > 0) {
    rl->scope = (enum sl_rl_scope)sc;
    if (rl->scope == SL_SCOPE_GLOBAL && !s->cfg->global.enabled)
      cs_err(s, cs_val(m, "scope"), "rate limit: scope: global needs the top-level 'global' "
                                    "section (global: {redis: \"HOST:PORT\"})");
  }
  if (cs_get_name(s, m, "name", true, &rl->name) <= 0) {
    char buf[160];
    snprintf(buf, sizeof(buf), "%s/%s", r->name ? r->name : "?", KEY_NAMES[rl->key]);
    rl->name = cs_sdup(s, buf);
  }
  rl->identity = rate_limit_identity(r->name, rl);
  node_t *nk = cs_get_node(s, m, "new_keys", CFG_MAP);
  if (nk && rl->scope == SL_SCOPE_GLOBAL)
    cs_err(s, nk, "new_keys: applies to scope: local limits (a global limit's keys live in "
                  "Redis; cap new keys with a local limit beside it)");
  else if (nk)
    parse_new_keys(s, nk, r->name ? r->name : "?", rl);
  return rl->rate.period_ns != 0;
}

static const char *const ROUTE_KEYS[] = {"name",        "match",    "upstream", "rate_limits",
                                         "concurrency", "priority", "idle_timeout", NULL};

static void resolve_upstream(struct cfg_schema *s, node_t *v, struct sl_route_cfg *r) {
  struct sl_config *cfg = s->cfg;
  for (size_t i = 0; i < cfg->n_upstreams; i++) {
    if (!strcmp(cfg->upstreams[i].name, v->str)) {
      r->upstream = &cfg->upstreams[i];
      return;
    }
  }
  const char **names = malloc((cfg->n_upstreams + 1) * sizeof(*names));
  if (!names) abort();
  for (size_t i = 0; i < cfg->n_upstreams; i++) names[i] = cfg->upstreams[i].name;
  char sug[512];
  cs_suggestion(sug, sizeof(sug), v->str, names, cfg->n_upstreams, "defined upstreams are");
  free(names);
  cs_err(s, v, "upstream: '%s' is not a defined upstream%s", v->str, sug);
}

/* The policies of registered kinds (sluice/policy.h) |m| has, each
 * under its kind's key: by stage (the order admission runs them), in the
 * order of kinds.def within a stage. */
static void parse_kinds(struct cfg_schema *s, node_t *m, struct sl_route_cfg *r) {
  s->route = r;
  static const enum sl_kind_stage order[] = {SL_STAGE_BEFORE_BLOCKLIST, SL_STAGE_BEFORE_LIMITS,
                                             SL_STAGE_AFTER_LIMITS};
  for (size_t i = 0; i < 3 * sl_n_policy_kinds; i++) {
    size_t k = i % sl_n_policy_kinds;
    const struct sl_kind *kind = sl_policy_kinds[k];
    if (kind->stage != order[i / sl_n_policy_kinds]) continue;
    node_t *v = kind->parse ? cs_val(m, kind->key) : NULL;
    if (!v && !kind->implied) continue;
    if (!r->policies) r->policies = sl_arena_xalloc(s->a, sl_n_policy_kinds * sizeof(*r->policies));
    struct sl_policy_cfg *p = &r->policies[r->n_policies];
    memset(p, 0, sizeof(*p));
    p->kind = kind;
    p->kind_index = (uint16_t)k;
    if (!v) { /* configured elsewhere (the breaker: with the upstream) */
      if (kind->implied(s, r, p)) r->n_policies++;
      continue;
    }
    p->mark = v->mark;
    char buf[160];
    snprintf(buf, sizeof(buf), "%s/%s", r->name ? r->name : "?", kind->key);
    p->name = cs_sdup(s, buf);
    if (kind->parse(s, v, p)) r->n_policies++;
  }
  s->route = NULL;
}

static void parse_route(struct cfg_schema *s, node_t *m, struct sl_route_cfg *r) {
  /* The route's own keys (some of them kinds', kept in their place for
   * the "valid keys" list), then the other kinds' keys. */
  const char *route_keys[sizeof(ROUTE_KEYS) / sizeof(ROUTE_KEYS[0]) + SL_ENGINE_MAX_KINDS];
  size_t nk = 0, n_own;
  for (; ROUTE_KEYS[nk]; nk++) route_keys[nk] = ROUTE_KEYS[nk];
  n_own = nk;
  for (size_t k = 0; k < sl_n_policy_kinds && k < SL_ENGINE_MAX_KINDS; k++) {
    if (!sl_policy_kinds[k]->parse) continue; /* no key in a route */
    size_t j = 0;
    while (j < n_own && strcmp(route_keys[j], sl_policy_kinds[k]->key)) j++;
    if (j == n_own) route_keys[nk++] = sl_policy_kinds[k]->key;
  }
  route_keys[nk] = NULL;
  cs_check_keys(s, m, "route", route_keys);
  r->mark = m->mark;
  if (cs_get_name(s, m, "name", false, &r->name) == 0) cs_err(s, m, "route: missing 'name'");
  r->match.websocket = -1;
  node_t *match = cs_get_node(s, m, "match", CFG_MAP);
  if (match) cs_parse_match(s, match, &r->match);
  node_t *v;
  if (cs_get_text(s, m, "upstream", &v) > 0)
    resolve_upstream(s, v, r);
  else if (!cs_val(m, "upstream"))
    cs_err(s, m, "route '%s': missing 'upstream'", r->name ? r->name : "?");
  node_t *rls = cs_get_node(s, m, "rate_limits", CFG_SEQ);
  if (rls && rls->n > SL_ROUTE_MAX_RATE_LIMITS) {
    cs_err(s, rls, "route '%s': %zu rate limits, at most %d are allowed", r->name ? r->name : "?",
        (size_t)rls->n, SL_ROUTE_MAX_RATE_LIMITS);
  } else if (rls && rls->n) {
    r->rate_limits = sl_arena_xalloc(s->a, rls->n * sizeof(*r->rate_limits));
    for (size_t i = 0; i < rls->n; i++) {
      if (!cs_want(s, rls->kids[i], CFG_MAP, "rate_limits item")) continue;
      if (parse_rate_limit(s, rls->kids[i], r, &r->rate_limits[r->n_rate_limits]))
        r->n_rate_limits++;
    }
    for (size_t i = 1; i < r->n_rate_limits; i++) {
      for (size_t j = 0; j < i; j++) {
        if (strcmp(r->rate_limits[i].name, r->rate_limits[j].name)) continue;
        const struct sl_mark *mk = &r->rate_limits[i].mark;
        cfg_error_add(s->errs, mk->file, mk->line, mk->col,
                      "duplicate rate limit name '%s' in route '%s' (give each limit a "
                      "distinct 'name')",
                      r->rate_limits[i].name, r->name ? r->name : "?");
        break;
      }
    }
  }
  /* Every route has a counter (`concurrency` is parsed by its kind). The
   * route name only: a new `max` applies to the same counter, which still
   * holds the requests in flight. */
  r->concurrency.identity = sl_hash_mix_str(sl_hash_mix_str(SL_HASH_SEED, "concurrency"), r->name);
  static const char *const prios[] = {"normal", "low", "high", NULL};
  int p;
  if (cs_get_enum(s, m, "priority", prios, &p) > 0) r->priority = (enum sl_priority)p;
  cs_get_ms(s, m, "idle_timeout", 0, &r->idle_timeout_ms);
  parse_kinds(s, m, r);
}

void cs_parse_routes(struct cfg_schema *s, node_t *root) {
  struct sl_config *cfg = s->cfg;
  node_t *seq = cs_required_list(s, root, "routes", "no routes defined: add at least one under 'routes'");
  if (!seq) return;
  cfg->routes = sl_arena_xcalloc(s->a, seq->n, sizeof(*cfg->routes));
  for (size_t i = 0; i < seq->n; i++) {
    if (!cs_want(s, seq->kids[i], CFG_MAP, "routes item")) continue;
    struct sl_route_cfg *r = &cfg->routes[cfg->n_routes];
    r->index = cfg->n_routes++;
    parse_route(s, seq->kids[i], r);
  }
  CFG_CHECK_UNIQUE(s, "route", cfg->routes, cfg->n_routes, struct sl_route_cfg);
}

static const char *const SHAPING_KEYS[] = {"name", "match", "delay", "abort", "rate",
                                           "bandwidth", "mode", NULL};

static void get_bandwidth(struct cfg_schema *s, node_t *bw, const char *key, struct sl_bandwidth *out) {
  node_t *v;
  if (cs_get_text(s, bw, key, &v) <= 0) return;
  char e[160];
  if (sl_parse_bandwidth(cs_sdup(s, v->str), out, e, sizeof(e)) != 0) cs_err(s, v, "%s: %s", key, e);
}

/* `bandwidth: {down, up}`: either or both (sl_parse_bandwidth). */
static void parse_bandwidth(struct cfg_schema *s, node_t *m, struct sl_shaping_rule *sr) {
  node_t *bw = cs_get_node(s, m, "bandwidth", CFG_MAP);
  if (!bw) return;
  static const char *const keys[] = {"down", "up", NULL};
  cs_check_keys(s, bw, "bandwidth", keys);
  if (bw->n == 0) {
    cs_err(s, bw, "bandwidth: give 'down', 'up' or both (e.g. { down: 64KiB/s, up: 16KiB/s })");
    return;
  }
  get_bandwidth(s, bw, "down", &sr->bw_down);
  get_bandwidth(s, bw, "up", &sr->bw_up);
}

static void parse_shaping_rule(struct cfg_schema *s, node_t *m, struct sl_shaping_rule *sr) {
  cs_check_keys(s, m, "shaping rule", SHAPING_KEYS);
  sr->mark = m->mark;
  sr->abort_status = 503;
  sr->match.websocket = -1;
  cs_get_name(s, m, "name", false, &sr->name);
  node_t *match = cs_get_node(s, m, "match", CFG_MAP);
  if (match) cs_parse_match(s, match, &sr->match);
  node_t *d = cs_get_node(s, m, "delay", CFG_MAP);
  if (d) {
    static const char *const keys[] = {"fixed", "jitter", NULL};
    cs_check_keys(s, d, "delay", keys);
    cs_get_ms(s, d, "fixed", 0, &sr->delay_fixed_ms);
    cs_get_ms(s, d, "jitter", 0, &sr->delay_jitter_ms);
  }
  node_t *ab = cs_get_node(s, m, "abort", CFG_MAP);
  if (ab) {
    static const char *const keys[] = {"percent", "status", NULL};
    cs_check_keys(s, ab, "abort", keys);
    if (cs_get_double(s, ab, "percent", 0, 100, &sr->abort_percent) == 0)
      cs_err(s, ab, "abort: missing 'percent'");
    cs_get_status(s, ab, "status", &sr->abort_status);
  }
  cs_get_rate(s, m, "rate", &sr->rate_cap);
  parse_bandwidth(s, m, sr);
  cs_get_mode(s, m, &sr->mode);
  size_t index = (size_t)(sr - s->cfg->shaping);
  char label[SL_SHAPING_LABEL_MAX];
  if (sr->name)
    snprintf(label, sizeof(label), "shaping/%s", sr->name);
  else
    snprintf(label, sizeof(label), "shaping/%zu", index);
  sr->label = cs_sdup(s, label);
  /* The cap's state survives a reload while the rule keeps its position in
   * the list; a new rate converts it (sl_policies_attach). */
  sr->identity = sl_hash_mix_u64(sl_hash_mix_str(SL_HASH_SEED, "shaping-rate"),
                                 (uint64_t)index);
}

void cs_parse_shaping(struct cfg_schema *s, node_t *root) {
  struct sl_config *cfg = s->cfg;
  node_t *seq = cs_get_node(s, root, "shaping", CFG_SEQ);
  if (!seq || !seq->n) return;
  cfg->shaping = sl_arena_xcalloc(s->a, seq->n, sizeof(*cfg->shaping));
  for (size_t i = 0; i < seq->n; i++) {
    if (!cs_want(s, seq->kids[i], CFG_MAP, "shaping item")) continue;
    parse_shaping_rule(s, seq->kids[i], &cfg->shaping[cfg->n_shaping++]);
  }
  CFG_CHECK_UNIQUE(s, "shaping rule", cfg->shaping, cfg->n_shaping, struct sl_shaping_rule);
}

