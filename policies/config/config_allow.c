/*
 * sluice — the `allow` section: exemptions for partners (postmortem 002).
 * Schema (every problem at its FILE:LINE:COL), printer and reload
 * fingerprint. See config_allow.h; matching is policies/allow.c.
 *
 *   allow:
 *     - name: wallet-api
 *       client_ip: [198.51.100.0/24]                  # any of these blocks
 *       header: { name: x-partner, value: wallet-api } # no value: present
 *       class: [partner-gw]
 *       device_id: [dev-42]
 *       routes: [connect]                             # only on these routes
 *       skip: [rate_limits, blocklist, concurrency]
 */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/allow.h"
#include "sluice/cidrset.h"
#include "sluice/config.h"
#include "sluice/hash.h"
#include "sluice/policy.h"
#include "config_allow.h"
#include "config_print.h"
#include "config_schema.h"

static const char *const ALLOW_KEYS[] = {"name",      "client_ip", "header", "class",
                                         "device_id", "routes",    "skip",   NULL};

/* ---- schema ------------------------------------------------------- */

/* The value of list |key| of |m| (a single scalar counts as a list of
 * one; item i: list_item()), with its item count in |*n|; NULL when
 * absent, or after reporting an error: not a list of strings, or empty
 * (an empty list would match nothing, or skip nothing, silently). */
static node_t *get_list(struct cfg_schema *s, node_t *m, const char *key, size_t *n) {
  node_t *v = cs_val(m, key);
  *n = 0;
  if (!v) return NULL;
  if (v->kind != CFG_SCALAR && !cs_want(s, v, CFG_SEQ, key)) return NULL;
  size_t count = v->kind == CFG_SEQ ? v->n : 1;
  if (!count) {
    cs_err(s, v, "%s: must not be an empty list", key);
    return NULL;
  }
  for (size_t i = 0; i < count; i++) {
    node_t *it = v->kind == CFG_SEQ ? v->kids[i] : v;
    if (!cs_want(s, it, CFG_SCALAR, key)) return NULL;
    if (!it->len || strlen(it->str) != it->len) {
      cs_err(s, it, "%s: an item is empty or contains a NUL character", key);
      return NULL;
    }
  }
  *n = count;
  return v;
}

static node_t *list_item(node_t *v, size_t i) { return v->kind == CFG_SEQ ? v->kids[i] : v; }

/* Parses the items of list |key| of |m| into a new array of |size|-byte
 * elements: |one| fills element |*n| from an item, or reports why it
 * cannot (false). Returns the array (NULL: absent or in error) and in
 * |*n| how many items |one| took. */
typedef bool item_parser(struct cfg_schema *s, node_t *item, void *elem);
static void *parse_list(struct cfg_schema *s, node_t *m, const char *key, size_t size,
                        item_parser *one, size_t *n) {
  size_t count;
  node_t *v = get_list(s, m, key, &count);
  *n = 0;
  if (!v) return NULL;
  char *arr = sl_arena_xalloc(s->a, count * size);
  for (size_t i = 0; i < count; i++)
    if (one(s, list_item(v, i), arr + *n * size)) ++*n;
  return arr;
}

static bool one_string(struct cfg_schema *s, node_t *it, void *elem) {
  *(const char **)elem = cs_sdup(s, it->str);
  return true;
}

static int strptr_cmp(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* |key|'s strings, sorted and without repeats (matched by binary search). */
static void parse_strings(struct cfg_schema *s, node_t *m, const char *key, const char ***out,
                          size_t *n_out) {
  size_t n;
  const char **arr = parse_list(s, m, key, sizeof(*arr), one_string, &n);
  if (!arr) return;
  qsort(arr, n, sizeof(*arr), strptr_cmp);
  size_t k = 0;
  for (size_t i = 0; i < n; i++)
    if (!k || strcmp(arr[k - 1], arr[i]) != 0) arr[k++] = arr[i];
  *out = arr;
  *n_out = k;
}

static bool one_cidr(struct cfg_schema *s, node_t *it, void *elem) {
  char e[200];
  if (sl_parse_cidr(it->str, elem, e, sizeof(e)) == 0) return true;
  cs_err(s, it, "client_ip: %s", e);
  return false;
}

static void parse_header(struct cfg_schema *s, node_t *m, struct sl_allow_rule *r) {
  node_t *h = cs_get_node(s, m, "header", CFG_MAP);
  if (!h) return;
  static const char *const keys[] = {"name", "value", NULL};
  cs_check_keys(s, h, "allow header", keys);
  struct sl_header_match *hm = sl_arena_xcalloc(s->a, 1, sizeof(*hm));
  if (cs_get_header_name(s, h, "name", &hm->name) == 0)
    cs_err(s, h, "header: missing 'name' (and 'value' for an exact match; none: present)");
  node_t *val;
  if (cs_get_text(s, h, "value", &val) > 0) hm->value = cs_sdup(s, val->str);
  if (!hm->name) return;
  r->header.headers = hm;
  r->header.n_headers = 1;
}

/* The names `skip` accepts, for messages. */
static size_t skip_names(const char **names, size_t cap) {
  uint64_t bit;
  size_t n = 0;
  for (const char *nm; n < cap && (nm = sl_allow_skip_name(n, &bit));) names[n++] = nm;
  return n;
}

static void parse_skip(struct cfg_schema *s, node_t *m, struct sl_allow_rule *r) {
  size_t n;
  node_t *v = get_list(s, m, "skip", &n);
  if (!v) {
    if (!cs_val(m, "skip"))
      cs_err(s, m, "allow rule '%s': missing 'skip' (what it exempts from, e.g. [rate_limits, "
                   "blocklist])", r->name ? r->name : "?");
    return;
  }
  for (size_t i = 0; i < n; i++) {
    node_t *it = list_item(v, i);
    uint64_t bit = 0;
    const char *nm;
    size_t j = 0;
    while ((nm = sl_allow_skip_name(j, &bit)) && strcmp(nm, it->str) != 0) j++;
    if (nm && !strcmp(nm, "breaker")) {
      cs_err(s, it, "skip: 'breaker' cannot be skipped: it protects a failing upstream, which a "
                    "partner's requests would only hold down (skip rate_limits or concurrency)");
    } else if (nm) {
      r->skip |= bit;
    } else {
      const char *names[SL_ENGINE_MAX_KINDS + 8];
      size_t nn = skip_names(names, sizeof(names) / sizeof(names[0]));
      char sug[512];
      cs_suggestion(sug, sizeof(sug), it->str, names, nn, "valid names are");
      cs_err(s, it, "skip: unknown policy '%s'%s", it->str, sug);
    }
  }
}

/* A route name: the route's own name (the masks compare addresses). */
static bool one_route(struct cfg_schema *s, node_t *it, void *elem) {
  const struct sl_config *cfg = s->cfg;
  for (size_t j = 0; j < cfg->n_routes; j++)
    if (cfg->routes[j].name && !strcmp(cfg->routes[j].name, it->str)) { /* NULL: in error */
      *(const char **)elem = cfg->routes[j].name;
      return true;
    }
  const char **names = malloc((cfg->n_routes + 1) * sizeof(*names));
  if (!names) abort(); /* config load */
  for (size_t j = 0; j < cfg->n_routes; j++) names[j] = cfg->routes[j].name;
  char sug[512];
  cs_suggestion(sug, sizeof(sug), it->str, names, cfg->n_routes, "defined routes are");
  free(names);
  cs_err(s, it, "routes: '%s' is not a defined route%s", it->str, sug);
  return false;
}

static void parse_rule(struct cfg_schema *s, node_t *m, struct sl_allow_rule *r) {
  cs_check_keys(s, m, "allow rule", ALLOW_KEYS);
  r->mark = m->mark;
  r->header.websocket = -1; /* only the header is matched */
  if (cs_get_name(s, m, "name", false, &r->name) == 0)
    cs_err(s, m, "allow rule: missing 'name' (it labels the rule in explain, metrics and "
                 "drop-ins)");
  r->cidrs = parse_list(s, m, "client_ip", sizeof(*r->cidrs), one_cidr, &r->n_cidrs);
  parse_header(s, m, r);
  parse_strings(s, m, "class", &r->classes, &r->n_classes);
  parse_strings(s, m, "device_id", &r->device_ids, &r->n_device_ids);
  r->routes = parse_list(s, m, "routes", sizeof(*r->routes), one_route, &r->n_routes);
  parse_skip(s, m, r);
  if (!cs_val(m, "client_ip") && !cs_val(m, "header") && !cs_val(m, "class") &&
      !cs_val(m, "device_id"))
    cs_err(s, m, "allow rule '%s': give at least one of client_ip, header, class, device_id "
                 "(whom it exempts)", r->name ? r->name : "?");
}

/* The masks and the CIDR set sl_allow_match() works with. */
static void compile(struct cfg_schema *s, struct sl_allow_cfg *a) {
  const struct sl_config *cfg = s->cfg;
  a->route_rules = sl_arena_xcalloc(s->a, cfg->n_routes ? cfg->n_routes : 1, sizeof(uint64_t));
  size_t n_cidrs = 0;
  for (size_t i = 0; i < a->n_rules; i++) {
    const struct sl_allow_rule *r = &a->rules[i];
    uint64_t bit = UINT64_C(1) << i;
    n_cidrs += r->n_cidrs;
    if (!r->n_cidrs) a->any_ip |= bit;
    for (size_t j = 0; j < cfg->n_routes; j++) {
      bool on = !r->n_routes;
      for (size_t k = 0; k < r->n_routes && !on; k++) on = r->routes[k] == cfg->routes[j].name;
      if (on) a->route_rules[j] |= bit;
    }
  }
  if (!n_cidrs) return;
  struct sl_cidr *blocks = malloc(n_cidrs * sizeof(*blocks));
  uint32_t *values = malloc(n_cidrs * sizeof(*values));
  if (!blocks || !values) abort(); /* config load */
  size_t k = 0;
  for (size_t i = 0; i < a->n_rules; i++)
    for (size_t j = 0; j < a->rules[i].n_cidrs; j++) {
      blocks[k] = a->rules[i].cidrs[j];
      values[k++] = (uint32_t)i;
    }
  a->cidrs = sl_cidrset_new(blocks, values, n_cidrs);
  free(blocks);
  free(values);
  if (!a->cidrs) abort();
}

void cs_parse_allow(struct cfg_schema *s, const struct cfg_node *root) {
  struct sl_allow_cfg *a = &s->cfg->allow;
  node_t *seq = cs_get_node(s, root, "allow", CFG_SEQ);
  if (!seq || !seq->n) return;
  size_t n = seq->n;
  if (n > SL_ALLOW_MAX_RULES) {
    cs_err(s, seq->kids[SL_ALLOW_MAX_RULES],
           "allow: at most %d rules (a rule takes any number of client_ip blocks, classes and "
           "device ids)", SL_ALLOW_MAX_RULES);
    n = SL_ALLOW_MAX_RULES;
  }
  a->rules = sl_arena_xcalloc(s->a, n, sizeof(*a->rules));
  for (size_t i = 0; i < n; i++) {
    if (!cs_want(s, seq->kids[i], CFG_MAP, "allow item")) continue;
    parse_rule(s, seq->kids[i], &a->rules[a->n_rules++]);
  }
  CFG_CHECK_UNIQUE(s, "allow rule", a->rules, a->n_rules, struct sl_allow_rule);
  compile(s, a);
}

/* ---- printer ------------------------------------------------------ */

static void print_strings(FILE *out, const char *key, const char *const *v, size_t n) {
  if (!n) return;
  fprintf(out, "    %s: [", key);
  for (size_t i = 0; i < n; i++) {
    if (i) fputs(", ", out);
    cfg_print_str(out, v[i]);
  }
  fputs("]\n", out);
}

void cfg_print_allow(FILE *out, const struct sl_config *cfg) {
  const struct sl_allow_cfg *a = &cfg->allow;
  fputs(a->n_rules ? "allow:\n" : "allow: []\n", out);
  for (size_t i = 0; i < a->n_rules; i++) {
    const struct sl_allow_rule *r = &a->rules[i];
    fputs("  - ", out);
    cfg_print_kv_str(out, 0, "name", r->name);
    if (r->n_cidrs) {
      fputs("    client_ip: [", out);
      for (size_t j = 0; j < r->n_cidrs; j++) {
        char addr[64], text[80];
        inet_ntop(r->cidrs[j].family, r->cidrs[j].addr, addr, sizeof(addr));
        snprintf(text, sizeof(text), "%s/%u", addr, r->cidrs[j].prefix);
        fputs(j ? ", " : "", out);
        cfg_print_str(out, text);
      }
      fputs("]\n", out);
    }
    if (r->header.n_headers) {
      fputs("    header:\n", out);
      cfg_print_kv_str(out, 6, "name", r->header.headers[0].name);
      if (r->header.headers[0].value) cfg_print_kv_str(out, 6, "value", r->header.headers[0].value);
    }
    print_strings(out, "class", r->classes, r->n_classes);
    print_strings(out, "device_id", r->device_ids, r->n_device_ids);
    print_strings(out, "routes", r->routes, r->n_routes);
    char skip[512];
    sl_allow_describe_skip(r->skip, skip, sizeof(skip));
    fprintf(out, "    skip: [%s]\n", skip);
  }
}

/* ---- reload fingerprint ------------------------------------------- */

static uint64_t mix_strings(uint64_t h, const char *const *v, size_t n) {
  for (size_t i = 0; i < n; i++) h = sl_hash_mix_str(h, v[i]);
  return sl_hash_mix_u64(h, n);
}

uint64_t cfg_allow_hash(const struct sl_config *cfg) {
  const struct sl_allow_cfg *a = &cfg->allow;
  uint64_t h = sl_hash_mix_u64(SL_HASH_SEED, a->n_rules);
  for (size_t i = 0; i < a->n_rules; i++) {
    const struct sl_allow_rule *r = &a->rules[i];
    h = sl_hash_mix_str(h, r->name);
    h = sl_hash_mix(h, r->cidrs, r->n_cidrs * sizeof(*r->cidrs));
    h = sl_hash_mix_u64(h, r->n_cidrs);
    if (r->header.n_headers)
      h = sl_hash_mix_str(sl_hash_mix_str(h, r->header.headers[0].name),
                          r->header.headers[0].value);
    h = mix_strings(h, r->classes, r->n_classes);
    h = mix_strings(h, r->device_ids, r->n_device_ids);
    h = mix_strings(h, r->routes, r->n_routes);
    h = sl_hash_mix_u64(h, r->skip);
  }
  return h;
}
