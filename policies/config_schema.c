/*
 * sluice — configuration schema: the merged node tree to struct sl_config,
 * with every problem reported at its FILE:LINE:COL (SPEC section 3).
 *
 * Conventions. A key whose value is null (`key:` or `key: ~`) is the same
 * as an absent key, so a drop-in can put a default back. Every map level
 * checks its keys against the list of valid ones and suggests the closest
 * for a typo. Validation goes on after an error, so that one run reports
 * all of them; a value in error is left at its default.
 */
#include <ctype.h>
#include <math.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/hash.h"
#include "sluice/config.h"
#include "sluice/path.h"
#include "sluice/version.h"
#include "config_int.h"

struct schema {
  struct sl_config *cfg;
  struct sl_arena *a;
  struct sl_config_errors *errs;
};

typedef const struct cfg_node node_t;

static void err_at(struct schema *s, node_t *n, uint32_t col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void err(struct schema *s, node_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void err_at(struct schema *s, node_t *n, uint32_t col, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  cfg_error_addv(s->errs, n->mark.file, n->mark.line, col, fmt, ap);
  va_end(ap);
}

static void err(struct schema *s, node_t *n, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  cfg_error_addv(s->errs, n->mark.file, n->mark.line, n->mark.col, fmt, ap);
  va_end(ap);
}

static const char *sdup(struct schema *s, const char *str) { return sl_arena_xstrdup(s->a, str); }

static const char *lowercase_dup(struct schema *s, const char *str) {
  char *p = sl_arena_xstrdup(s->a, str);
  for (char *q = p; *q; q++) *q = (char)tolower((unsigned char)*q);
  return p;
}

/* ---- did you mean ------------------------------------------------- */

static size_t edit_distance(const char *a, size_t la, const char *b, size_t lb) {
  size_t row[65];
  if (la > 64 || lb > 64) return SIZE_MAX;
  for (size_t j = 0; j <= lb; j++) row[j] = j;
  for (size_t i = 1; i <= la; i++) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= lb; j++) {
      size_t up = row[j];
      size_t best = diag + (a[i - 1] != b[j - 1]);
      if (up + 1 < best) best = up + 1;
      if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
      row[j] = best;
      diag = up;
    }
  }
  return row[lb];
}

/* Beyond this many candidates no "did you mean" is looked for: each costs
 * an edit distance per error, and a file of many thousand routes naming an
 * unknown upstream must not cost minutes. Real lists are a few hundred. */
#define SUGGEST_MAX_CANDIDATES 1000u

/* The candidate closest to |word| if it is close enough to be a typo. */
static const char *closest(const char *word, const char *const *cands, size_t n) {
  size_t lw = strlen(word), best_d = SIZE_MAX;
  size_t limit = lw <= 3 ? 1 : lw <= 6 ? 2 : 3;
  const char *best = NULL;
  if (n > SUGGEST_MAX_CANDIDATES) return NULL;
  for (size_t i = 0; i < n; i++) {
    if (!cands[i]) continue;
    size_t lc = strlen(cands[i]);
    if ((lc > lw ? lc - lw : lw - lc) > limit) continue; /* distance >= length difference */
    size_t d = edit_distance(word, lw, cands[i], lc);
    if (d < best_d) {
      best_d = d;
      best = cands[i];
    }
  }
  return best && best_d <= limit ? best : NULL;
}

static size_t list_len(const char *const *keys) {
  size_t n = 0;
  while (keys[n]) n++;
  return n;
}

/* Writes ", did you mean 'x'?" or "; valid keys: a, b" for |word|. */
static void suggestion(char *buf, size_t len, const char *word, const char *const *cands, size_t n,
                       const char *what) {
  const char *c = closest(word, cands, n);
  if (c) {
    snprintf(buf, len, " (did you mean '%s'?)", c);
    return;
  }
  size_t off = (size_t)snprintf(buf, len, "; %s: ", what), shown = 0;
  for (size_t i = 0; i < n && off < len; i++) {
    if (!cands[i]) continue;
    off += (size_t)snprintf(buf + off, len - off, "%s%s", shown++ ? ", " : "", cands[i]);
  }
  if (!shown) snprintf(buf, len, " (none are defined)");
}

/* Reports each key of |map| that is not in |keys| (NULL-terminated). */
static void check_keys(struct schema *s, node_t *map, const char *where, const char *const *keys) {
  size_t nk = list_len(keys);
  for (size_t i = 0; i < map->n; i++) {
    node_t *k = map->kids[2 * i];
    size_t j;
    for (j = 0; j < nk; j++)
      if (!strcmp(k->str, keys[j])) break;
    if (j < nk) continue;
    char sug[512];
    suggestion(sug, sizeof(sug), k->str, keys, nk, "valid keys are");
    err(s, k, "unknown key '%s' in %s%s", k->str, where, sug);
  }
}

/* ---- typed getters -------------------------------------------------
 * Each takes a map and a key; returns 1 when the key is present and
 * valid (|*out| set), 0 when absent or null (|*out| untouched), -1 after
 * reporting an error. */

static node_t *val(node_t *map, const char *key) {
  node_t *v = cfg_map_get(map, key, NULL);
  return v && v->kind != CFG_NULL ? v : NULL;
}

static void describe(node_t *n, char *buf, size_t len) {
  if (n->kind == CFG_SCALAR)
    snprintf(buf, len, "'%.40s%s'", n->str, n->len > 40 ? "..." : "");
  else
    snprintf(buf, len, "%s", cfg_kind_name(n));
}

static bool want(struct schema *s, node_t *n, enum cfg_kind kind, const char *key) {
  if (n->kind == kind) return true;
  char got[64];
  describe(n, got, sizeof(got));
  err(s, n, "%s: expected %s, got %s", key,
      kind == CFG_MAP ? "a mapping" : kind == CFG_SEQ ? "a list" : "a string", got);
  return false;
}

static node_t *get_node(struct schema *s, node_t *map, const char *key, enum cfg_kind kind) {
  node_t *v = val(map, key);
  if (!v) return NULL;
  return want(s, v, kind, key) ? v : NULL;
}

static int get_text(struct schema *s, node_t *map, const char *key, node_t **out) {
  node_t *v = val(map, key);
  if (!v) return 0;
  if (!want(s, v, CFG_SCALAR, key)) return -1;
  if (strlen(v->str) != v->len) {
    err(s, v, "%s: contains a NUL character", key);
    return -1;
  }
  *out = v;
  return 1;
}

static int get_str(struct schema *s, node_t *map, const char *key, const char **out) {
  node_t *v;
  int rc = get_text(s, map, key, &v);
  if (rc > 0) {
    if (!v->len) {
      err(s, v, "%s: must not be empty", key);
      return -1;
    }
    *out = sdup(s, v->str);
  }
  return rc;
}

static int get_u64(struct schema *s, node_t *map, const char *key, uint64_t min, uint64_t max,
                   uint64_t *out) {
  node_t *v = val(map, key);
  if (!v) return 0;
  char got[64];
  describe(v, got, sizeof(got));
  if (v->kind != CFG_SCALAR || v->quoted || !isdigit((unsigned char)v->str[0])) {
    err(s, v, "%s: expected an integer, got %s%s", key, v->quoted ? "quoted " : "", got);
    return -1;
  }
  uint64_t x = 0;
  for (const char *p = v->str; *p; p++) {
    if (!isdigit((unsigned char)*p)) {
      err(s, v, "%s: expected an integer, got %s", key, got);
      return -1;
    }
    if (__builtin_mul_overflow(x, 10, &x) || __builtin_add_overflow(x, (uint64_t)(*p - '0'), &x)) {
      x = UINT64_MAX;
      break;
    }
  }
  if (x < min || x > max) {
    err(s, v, "%s: %s is out of range (%llu..%llu)", key, v->str, (unsigned long long)min,
        (unsigned long long)max);
    return -1;
  }
  *out = x;
  return 1;
}

static int get_u32(struct schema *s, node_t *map, const char *key, uint32_t min, uint32_t max,
                   uint32_t *out) {
  uint64_t x;
  int rc = get_u64(s, map, key, min, max, &x);
  if (rc > 0) *out = (uint32_t)x;
  return rc;
}

static int get_u16(struct schema *s, node_t *map, const char *key, uint16_t min, uint16_t max,
                   uint16_t *out) {
  uint64_t x;
  int rc = get_u64(s, map, key, min, max, &x);
  if (rc > 0) *out = (uint16_t)x;
  return rc;
}

static int get_status(struct schema *s, node_t *map, const char *key, uint16_t *out) {
  return get_u16(s, map, key, 100, 599, out);
}

static int get_double(struct schema *s, node_t *map, const char *key, double min, double max,
                      double *out) {
  node_t *v = val(map, key);
  if (!v) return 0;
  char got[64];
  describe(v, got, sizeof(got));
  char *end;
  double d = 0;
  if (v->kind == CFG_SCALAR && !v->quoted && v->len) d = strtod(v->str, &end);
  if (v->kind != CFG_SCALAR || v->quoted || !v->len || *end || !isfinite(d) ||
      !(isdigit((unsigned char)v->str[0]) || v->str[0] == '.' || v->str[0] == '-')) {
    err(s, v, "%s: expected a number, got %s", key, got);
    return -1;
  }
  if (d < min || d > max) {
    err(s, v, "%s: %s is out of range (%g..%g)", key, v->str, min, max);
    return -1;
  }
  *out = d;
  return 1;
}

static int get_bool(struct schema *s, node_t *map, const char *key, bool *out) {
  node_t *v = val(map, key);
  if (!v) return 0;
  if (v->kind == CFG_SCALAR && !v->quoted) {
    if (!strcmp(v->str, "true") || !strcmp(v->str, "True") || !strcmp(v->str, "TRUE")) {
      *out = true;
      return 1;
    }
    if (!strcmp(v->str, "false") || !strcmp(v->str, "False") || !strcmp(v->str, "FALSE")) {
      *out = false;
      return 1;
    }
  }
  char got[64];
  describe(v, got, sizeof(got));
  err(s, v, "%s: expected true or false, got %s", key, got);
  return -1;
}

/* |names| is NULL-terminated; |*out| receives the index. */
static int get_enum(struct schema *s, node_t *map, const char *key, const char *const *names,
                    int *out) {
  node_t *v;
  int rc = get_text(s, map, key, &v);
  if (rc <= 0) return rc;
  for (int i = 0; names[i]; i++) {
    if (!strcmp(v->str, names[i])) {
      *out = i;
      return 1;
    }
  }
  char list[256];
  size_t off = 0;
  for (int i = 0; names[i] && off < sizeof(list); i++)
    off += (size_t)snprintf(list + off, sizeof(list) - off, "%s%s", i ? ", " : "", names[i]);
  err(s, v, "%s: expected one of %s, got '%s'", key, list, v->str);
  return -1;
}

static int get_mode(struct schema *s, node_t *map, enum sl_mode *out) {
  static const char *const names[] = {"enforce", "shadow", NULL};
  int i;
  int rc = get_enum(s, map, "mode", names, &i);
  if (rc > 0) *out = i == 0 ? SL_MODE_ENFORCE : SL_MODE_SHADOW;
  return rc;
}

/* |min_ms| 0 accepts "0s"; durations always need a unit. */
static int get_ms(struct schema *s, node_t *map, const char *key, uint64_t min_ms, uint64_t *out) {
  node_t *v;
  int rc = get_text(s, map, key, &v);
  if (rc <= 0) return rc;
  char e[160];
  uint64_t ms;
  if (sl_parse_duration_ms(v->str, &ms, e, sizeof(e))) {
    err(s, v, "%s: %s", key, e);
    return -1;
  }
  if (ms < min_ms) {
    err(s, v, "%s: must be at least %llums", key, (unsigned long long)min_ms);
    return -1;
  }
  if (ms > UINT64_C(31536000000)) {
    err(s, v, "%s: '%s' is longer than a year", key, v->str);
    return -1;
  }
  *out = ms;
  return 1;
}

static int get_rate(struct schema *s, node_t *map, const char *key, struct sl_rate *out) {
  node_t *v;
  int rc = get_text(s, map, key, &v);
  if (rc <= 0) return rc;
  char e[160];
  const char *text = sdup(s, v->str);
  if (sl_parse_rate(text, out, e, sizeof(e))) {
    err(s, v, "%s: %s", key, e);
    return -1;
  }
  return 1;
}

static int get_sockaddr(struct schema *s, node_t *map, const char *key, struct sl_sockaddr *out) {
  node_t *v;
  int rc = get_text(s, map, key, &v);
  if (rc <= 0) return rc;
  char e[200];
  if (sl_parse_sockaddr(sdup(s, v->str), out, e, sizeof(e))) {
    err(s, v, "%s: %s", key, e);
    return -1;
  }
  return 1;
}

static bool name_ok(const char *n, bool slash) {
  size_t len = strlen(n);
  if (len == 0 || len > 64) return false;
  for (; *n; n++)
    if (!isalnum((unsigned char)*n) && !strchr(slash ? "_.-/" : "_.-", *n)) return false;
  return true;
}

/* Names appear in metric labels, log lines and JSON bodies. */
static int get_name(struct schema *s, node_t *map, const char *key, bool slash, const char **out) {
  node_t *v;
  int rc = get_text(s, map, key, &v);
  if (rc <= 0) return rc;
  if (!name_ok(v->str, slash)) {
    err(s, v, "%s: '%s' is not a valid name (1 to 64 letters, digits, '_', '.', '-'%s)", key,
        v->str, slash ? ", '/'" : "");
    return -1;
  }
  *out = sdup(s, v->str);
  return 1;
}

static int get_header_name(struct schema *s, node_t *map, const char *key, const char **out) {
  node_t *v;
  int rc = get_text(s, map, key, &v);
  if (rc <= 0) return rc;
  if (!cfg_is_token(v->str)) {
    err(s, v, "%s: '%s' is not a valid header name", key, v->str);
    return -1;
  }
  *out = lowercase_dup(s, v->str);
  return 1;
}

/* Default burst: one second's worth of the rate, at least 1. */
static uint32_t default_burst(const struct sl_rate *r) {
  uint64_t b = (UINT64_C(1000000000) + r->period_ns - 1) / r->period_ns;
  return b > UINT32_MAX ? UINT32_MAX : b ? (uint32_t)b : 1;
}

static int get_burst(struct schema *s, node_t *map, uint32_t *out) {
  node_t *v = val(map, "burst");
  if (v && v->kind == CFG_SCALAR && !v->quoted && !strcmp(v->str, "0")) {
    err(s, v, "burst: must be at least 1 (a burst of 0 admits nothing)");
    return -1;
  }
  return get_u32(s, map, "burst", 1, UINT32_MAX, out);
}

/* ---- listeners ---------------------------------------------------- */

static const char *const LISTENER_KEYS[] = {
    "name", "address", "tls", "max_connections", "connect_rate", "timeouts", "limits", NULL};

static void parse_listener(struct schema *s, node_t *m, struct sl_listener_cfg *l) {
  check_keys(s, m, "listener", LISTENER_KEYS);
  l->mark = m->mark;
  l->max_connections = 50000;
  l->request_header_timeout_ms = 10000;
  l->idle_timeout_ms = 60000;
  l->header_bytes = 16384;
  l->headers = 100;
  l->h2_streams = 100;
  if (get_name(s, m, "name", false, &l->name) == 0) err(s, m, "listener: missing 'name'");
  if (get_sockaddr(s, m, "address", &l->address) == 0)
    err(s, m, "listener: missing 'address' (e.g. \"0.0.0.0:8443\")");
  node_t *tls = get_node(s, m, "tls", CFG_MAP);
  if (tls) {
    static const char *const keys[] = {"certificate", "private_key", NULL};
    check_keys(s, tls, "tls", keys);
    if (get_str(s, tls, "certificate", &l->tls_certificate) == 0)
      err(s, tls, "tls: missing 'certificate'");
    if (get_str(s, tls, "private_key", &l->tls_private_key) == 0)
      err(s, tls, "tls: missing 'private_key'");
  }
  get_u32(s, m, "max_connections", 1, 10000000, &l->max_connections);
  node_t *cr = get_node(s, m, "connect_rate", CFG_MAP);
  if (cr) {
    static const char *const keys[] = {"per_ip", "burst", "mode", NULL};
    check_keys(s, cr, "connect_rate", keys);
    if (get_rate(s, cr, "per_ip", &l->connect_rate.per_ip) == 0)
      err(s, cr, "connect_rate: missing 'per_ip' (e.g. \"20/s\")");
    if (l->connect_rate.per_ip.period_ns) l->connect_rate.burst = default_burst(&l->connect_rate.per_ip);
    get_burst(s, cr, &l->connect_rate.burst);
    get_mode(s, cr, &l->connect_rate.mode);
  }
  node_t *to = get_node(s, m, "timeouts", CFG_MAP);
  if (to) {
    static const char *const keys[] = {"request_header", "idle", NULL};
    check_keys(s, to, "listener timeouts", keys);
    get_ms(s, to, "request_header", 1, &l->request_header_timeout_ms);
    get_ms(s, to, "idle", 1, &l->idle_timeout_ms);
  }
  node_t *lim = get_node(s, m, "limits", CFG_MAP);
  if (lim) {
    static const char *const keys[] = {"header_bytes", "headers", "h2_streams", NULL};
    check_keys(s, lim, "limits", keys);
    get_u32(s, lim, "header_bytes", 1024, 1048576, &l->header_bytes);
    get_u32(s, lim, "headers", 1, 10000, &l->headers);
    get_u32(s, lim, "h2_streams", 1, 1000000, &l->h2_streams);
  }
  /* Not the rate nor the burst: a reload that changes them converts the
   * table (sl_policies_attach) instead of starting it full. */
  l->connect_rate.identity = sl_hash_mix_str(sl_hash_mix_str(SL_HASH_SEED, "connect_rate"), l->name);
}

struct named_ref {
  const char *name;
  size_t index;
};

static int named_ref_cmp(const void *pa, const void *pb) {
  const struct named_ref *a = pa, *b = pb;
  int c = strcmp(a->name, b->name);
  if (c) return c;
  return a->index < b->index ? -1 : a->index > b->index;
}

/* Reports the second and later items of |n| items that share a name, each
 * against the first. |name_of(i)| and |mark_of(i)| are read through
 * strides. Sorts, so a list of many thousand items costs O(n log n), not
 * O(n^2). */
static void check_unique(struct schema *s, const char *what, const void *base, size_t n,
                         size_t stride, size_t name_off, size_t mark_off) {
  if (n < 2) return;
  struct named_ref *refs = malloc(n * sizeof(*refs));
  if (!refs) abort();
  size_t m = 0;
  for (size_t i = 0; i < n; i++) {
    const char *ni = *(const char *const *)((const char *)base + i * stride + name_off);
    if (ni) refs[m++] = (struct named_ref){ni, i};
  }
  qsort(refs, m, sizeof(*refs), named_ref_cmp);
  for (size_t i = 1, first = 0; i < m; i++) {
    if (strcmp(refs[i].name, refs[first].name)) {
      first = i;
      continue;
    }
    const struct sl_mark *mi =
        (const void *)((const char *)base + refs[i].index * stride + mark_off);
    const struct sl_mark *mj =
        (const void *)((const char *)base + refs[first].index * stride + mark_off);
    cfg_error_add(s->errs, mi->file, mi->line, mi->col,
                  "duplicate %s name '%s' (first defined at %s:%u:%u)", what, refs[i].name,
                  mj->file, mj->line, mj->col);
  }
  free(refs);
}

#define CHECK_UNIQUE(s, what, arr, n, type)                                                   \
  check_unique((s), (what), (arr), (n), sizeof(type), offsetof(type, name), offsetof(type, mark))

/* An absent, null or empty list of required things. */
static node_t *required_list(struct schema *s, node_t *root, const char *key, const char *msg) {
  struct cfg_node *k;
  node_t *v = cfg_map_get(root, key, &k);
  if (!v || v->kind == CFG_NULL || (v->kind == CFG_SEQ && v->n == 0)) {
    err(s, k ? (node_t *)k : root, "%s", msg);
    return NULL;
  }
  return want(s, v, CFG_SEQ, key) ? v : NULL;
}

static void parse_listeners(struct schema *s, node_t *root) {
  struct sl_config *cfg = s->cfg;
  node_t *seq = required_list(s, root, "listeners",
                              "no listeners defined: add at least one under 'listeners'");
  if (!seq) return;
  cfg->listeners = sl_arena_xalloc(s->a, seq->n * sizeof(*cfg->listeners));
  memset(cfg->listeners, 0, seq->n * sizeof(*cfg->listeners));
  for (size_t i = 0; i < seq->n; i++) {
    if (!want(s, seq->kids[i], CFG_MAP, "listeners item")) continue;
    parse_listener(s, seq->kids[i], &cfg->listeners[cfg->n_listeners++]);
  }
  CHECK_UNIQUE(s, "listener", cfg->listeners, cfg->n_listeners, struct sl_listener_cfg);
}

static void parse_admin(struct schema *s, node_t *root) {
  node_t *m = get_node(s, root, "admin", CFG_MAP);
  if (!m) return;
  static const char *const keys[] = {"address", NULL};
  check_keys(s, m, "admin", keys);
  if (get_sockaddr(s, m, "address", &s->cfg->admin_address) == 0)
    err(s, m, "admin: missing 'address' (e.g. \"127.0.0.1:9901\")");
}

/* ---- upstreams ---------------------------------------------------- */

static const char *const UPSTREAM_KEYS[] = {"address",  "max_connections", "max_pending", "pipeline",
                                            "timeouts", "circuit_breaker", NULL};
static const char *const BREAKER_KEYS[] = {
    "enabled",  "consecutive_failures", "failure_ratio",    "window",        "min_requests",
    "slow_call", "open_for",            "half_open_probes", "recovery_ramp", "mode",
    NULL};

static void parse_breaker(struct schema *s, node_t *m, struct sl_upstream_cfg *u) {
  struct sl_breaker_cfg *b = &u->breaker;
  check_keys(s, m, "circuit_breaker", BREAKER_KEYS);
  b->enabled = true;
  get_bool(s, m, "enabled", &b->enabled);
  get_u32(s, m, "consecutive_failures", 0, 1000000, &b->consecutive_failures);
  get_double(s, m, "failure_ratio", 0, 1, &b->failure_ratio);
  get_ms(s, m, "window", 1, &b->window_ms);
  get_u32(s, m, "min_requests", 1, 100000000, &b->min_requests);
  get_ms(s, m, "slow_call", 0, &b->slow_call_ms);
  get_ms(s, m, "open_for", 1, &b->open_for_ms);
  get_u32(s, m, "half_open_probes", 1, 100000, &b->half_open_probes);
  get_ms(s, m, "recovery_ramp", 0, &b->recovery_ramp_ms);
  get_mode(s, m, &b->mode);
  if (b->enabled && b->consecutive_failures == 0 && b->failure_ratio == 0)
    err(s, m, "circuit_breaker: can never open: set consecutive_failures or failure_ratio");
}

static void breaker_defaults(struct sl_breaker_cfg *b) {
  b->consecutive_failures = 20;
  b->failure_ratio = 0.5;
  b->window_ms = 10000;
  b->min_requests = 50;
  b->slow_call_ms = 0;
  b->open_for_ms = 5000;
  b->half_open_probes = 5;
  b->recovery_ramp_ms = 30000;
}

/* Which origin the breaker judges: the upstream's name and address. Its
 * settings are tunables: a reload that changes them keeps the state (an
 * open breaker stays open) and retunes it (sl_policies_attach). */
static uint64_t breaker_identity(const struct sl_upstream_cfg *u) {
  uint64_t h = sl_hash_mix_str(SL_HASH_SEED, "breaker");
  h = sl_hash_mix_str(h, u->name);
  return sl_hash_mix_str(h, u->address.text);
}

static void parse_upstream(struct schema *s, node_t *key, node_t *m, struct sl_upstream_cfg *u) {
  u->mark = key->mark;
  u->name = sdup(s, key->str);
  if (!name_ok(key->str, false))
    err(s, key, "upstream name '%s' is not valid (1 to 64 letters, digits, '_', '.', '-')", key->str);
  u->max_connections = 256;
  u->max_pending = 1024;
  u->pipeline = 1;
  u->connect_timeout_ms = 1000;
  u->response_timeout_ms = 10000;
  u->idle_timeout_ms = 60000;
  breaker_defaults(&u->breaker);
  check_keys(s, m, "upstream", UPSTREAM_KEYS);
  int rc = get_sockaddr(s, m, "address", &u->address);
  if (rc == 0) err(s, m, "upstream '%s': missing 'address' (e.g. \"127.0.0.1:8080\")", u->name);
  if (rc > 0) {
    const struct sockaddr_in *sin = (const void *)&u->address.ss;
    if (sin->sin_port == 0) err(s, val(m, "address"), "address: port 0 is not a valid upstream port");
  }
  get_u32(s, m, "max_connections", 1, 1000000, &u->max_connections);
  get_u32(s, m, "max_pending", 0, 10000000, &u->max_pending);
  get_u32(s, m, "pipeline", 1, SL_PIPELINE_MAX, &u->pipeline);
  node_t *to = get_node(s, m, "timeouts", CFG_MAP);
  if (to) {
    static const char *const keys[] = {"connect", "response", "idle", NULL};
    check_keys(s, to, "upstream timeouts", keys);
    get_ms(s, to, "connect", 1, &u->connect_timeout_ms);
    get_ms(s, to, "response", 1, &u->response_timeout_ms);
    get_ms(s, to, "idle", 1, &u->idle_timeout_ms);
  }
  node_t *cb = get_node(s, m, "circuit_breaker", CFG_MAP);
  if (cb) parse_breaker(s, cb, u);
  u->breaker.identity = breaker_identity(u);
}

static void parse_upstreams(struct schema *s, node_t *root) {
  struct sl_config *cfg = s->cfg;
  node_t *map = get_node(s, root, "upstreams", CFG_MAP);
  if (!map) return;
  cfg->upstreams = sl_arena_xalloc(s->a, (map->n ? map->n : 1) * sizeof(*cfg->upstreams));
  memset(cfg->upstreams, 0, (map->n ? map->n : 1) * sizeof(*cfg->upstreams));
  for (size_t i = 0; i < map->n; i++) {
    node_t *k = map->kids[2 * i], *v = map->kids[2 * i + 1];
    if (v->kind == CFG_NULL) {
      err(s, k, "upstream '%s': missing its settings (at least 'address')", k->str);
      continue;
    }
    if (!want(s, v, CFG_MAP, k->str)) continue;
    parse_upstream(s, k, v, &cfg->upstreams[cfg->n_upstreams++]);
  }
}

/* ---- identify ----------------------------------------------------- */

static void compile_ua_regex(struct schema *s, node_t *v) {
  struct sl_identify_cfg *id = &s->cfg->identify;
  char e[256];
  size_t off = 0;
  unsigned group;
  char *posix = cfg_regex_to_posix(v->str, &group, e, sizeof(e), &off);
  if (!posix) {
    err_at(s, v, cfg_scalar_col(v, off), "user_agent: %s", e);
    return;
  }
  if (!group) {
    err(s, v, "user_agent: the pattern needs a group named 'class', e.g. "
              "\"^Homey/(?P<class>[A-Za-z]+)\"");
    free(posix);
    return;
  }
  regex_t *re = malloc(sizeof(*re));
  if (!re) abort();
  int rc = regcomp(re, posix, REG_EXTENDED);
  if (rc) {
    regerror(rc, re, e, sizeof(e));
    err(s, v, "user_agent: invalid regular expression: %s", e);
    free(re);
    free(posix);
    return;
  }
  id->device_class_ua_regex = sdup(s, v->str);
  id->device_class_ua_posix = sdup(s, posix);
  id->device_class_ua_compiled = re;
  id->device_class_ua_group = group;
  id->device_class_header = NULL;
  free(posix);
}

static void parse_header_section(struct schema *s, node_t *m, const char *what, const char **out) {
  node_t *sec = get_node(s, m, what, CFG_MAP);
  if (!sec) return;
  static const char *const keys[] = {"header", NULL};
  check_keys(s, sec, what, keys);
  if (get_header_name(s, sec, "header", out) == 0) err(s, sec, "%s: missing 'header'", what);
}

static void parse_identify(struct schema *s, node_t *root) {
  struct sl_identify_cfg *id = &s->cfg->identify;
  id->ipv6_prefix = 128;
  id->device_class_header = "x-device-class";
  id->firmware_header = "x-firmware-version";
  id->device_id_header = "x-device-id";
  node_t *m = get_node(s, root, "identify", CFG_MAP);
  if (!m) return;
  static const char *const keys[] = {"client_ip", "device_class", "firmware", "device_id", NULL};
  check_keys(s, m, "identify", keys);

  node_t *ci = get_node(s, m, "client_ip", CFG_MAP);
  if (ci) {
    static const char *const ckeys[] = {"trusted_proxies", "ipv6_prefix", NULL};
    check_keys(s, ci, "client_ip", ckeys);
    node_t *tp = get_node(s, ci, "trusted_proxies", CFG_SEQ);
    if (tp && tp->n) {
      id->trusted_proxies = sl_arena_xalloc(s->a, tp->n * sizeof(*id->trusted_proxies));
      for (size_t i = 0; i < tp->n; i++) {
        node_t *c = tp->kids[i];
        if (!want(s, c, CFG_SCALAR, "trusted_proxies item")) continue;
        char e[200];
        if (sl_parse_cidr(c->str, &id->trusted_proxies[id->n_trusted_proxies], e, sizeof(e)))
          err(s, c, "trusted_proxies: %s", e);
        else
          id->n_trusted_proxies++;
      }
    }
    uint32_t p;
    if (get_u32(s, ci, "ipv6_prefix", 1, 128, &p) > 0) id->ipv6_prefix = (uint8_t)p;
  }

  node_t *dc = get_node(s, m, "device_class", CFG_MAP);
  if (dc) {
    static const char *const dkeys[] = {"header", "user_agent", NULL};
    check_keys(s, dc, "device_class", dkeys);
    node_t *ua;
    int has_header = get_header_name(s, dc, "header", &id->device_class_header);
    int has_ua = get_text(s, dc, "user_agent", &ua);
    if (has_header > 0 && has_ua > 0)
      err(s, dc, "device_class: give either 'header' or 'user_agent', not both");
    else if (has_ua > 0)
      compile_ua_regex(s, ua);
    else if (has_header == 0 && has_ua == 0)
      err(s, dc, "device_class: missing 'header' or 'user_agent'");
  }
  parse_header_section(s, m, "firmware", &id->firmware_header);
  parse_header_section(s, m, "device_id", &id->device_id_header);
}

/* ---- routes ------------------------------------------------------- */

static const char *const MATCH_KEYS[] = {"path_prefix", "method",    "host",
                                         "header",      "listener",  "websocket", NULL};

/* Requests are matched on their normalised path (sluice/path.h): a prefix
 * that is not itself in normal form could never match what it says, so it
 * is an error rather than a silent dead route. Returns true if |v| is a
 * usable prefix. */
static bool check_path_prefix(struct schema *s, node_t *v) {
  size_t len = strlen(v->str);
  if (strcspn(v->str, "?#") != len) {
    err(s, v, "path_prefix: '%s' has a query or fragment; routes match the path only", v->str);
    return false;
  }
  char *norm = malloc(len + 1);
  if (!norm) abort(); /* config load: out of memory is fatal */
  size_t nlen;
  enum sl_path_status st = sl_path_normalize(v->str, len, norm, &nlen);
  bool ok = st == SL_PATH_OK && nlen == len && memcmp(norm, v->str, len) == 0;
  if (st != SL_PATH_OK)
    err(s, v, "path_prefix: '%s' can never match: requests with such a path are refused (%s)",
        v->str, sl_path_status_name(st));
  else if (!ok)
    err(s, v, "path_prefix: '%s' is not a normalised path; requests are matched on their normal "
              "form, write '%s'", v->str, norm);
  free(norm);
  return ok;
}

static void parse_match(struct schema *s, node_t *m, struct sl_route_match *rm) {
  struct sl_config *cfg = s->cfg;
  check_keys(s, m, "match", MATCH_KEYS);
  node_t *v;
  if (get_text(s, m, "path_prefix", &v) > 0) {
    if (v->str[0] != '/')
      err(s, v, "path_prefix: must start with '/' (got '%s')", v->str);
    else if (check_path_prefix(s, v))
      rm->path_prefix = sdup(s, v->str);
  }
  if (get_text(s, m, "method", &v) > 0) {
    if (!cfg_is_token(v->str)) {
      err(s, v, "method: '%s' is not a valid HTTP method", v->str);
    } else {
      char *p = sl_arena_xstrdup(s->a, v->str);
      for (char *q = p; *q; q++) *q = (char)toupper((unsigned char)*q);
      rm->method = p;
    }
  }
  if (get_text(s, m, "host", &v) > 0) {
    bool ok = v->len > 0;
    for (const char *p = v->str; *p && ok; p++)
      ok = isalnum((unsigned char)*p) || strchr("-._*[]", *p) || (*p == ':' && v->str[0] == '[');
    if (!ok)
      err(s, v, "host: '%s' is not a host name (write it without scheme or port)", v->str);
    else
      rm->host = lowercase_dup(s, v->str);
  }
  node_t *hdr = get_node(s, m, "header", CFG_MAP);
  if (hdr && hdr->n) {
    rm->headers = sl_arena_xalloc(s->a, hdr->n * sizeof(*rm->headers));
    for (size_t i = 0; i < hdr->n; i++) {
      node_t *k = hdr->kids[2 * i], *hv = hdr->kids[2 * i + 1];
      if (!cfg_is_token(k->str)) {
        err(s, k, "header: '%s' is not a valid header name", k->str);
        continue;
      }
      struct sl_header_match *h = &rm->headers[rm->n_headers];
      h->name = lowercase_dup(s, k->str);
      h->value = NULL;
      if (hv->kind != CFG_NULL) {
        if (!want(s, hv, CFG_SCALAR, k->str)) continue;
        h->value = sdup(s, hv->str);
      }
      rm->n_headers++;
    }
  }
  if (get_text(s, m, "listener", &v) > 0) {
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
      suggestion(sug, sizeof(sug), v->str, names, cfg->n_listeners, "defined listeners are");
      free(names);
      err(s, v, "listener: '%s' is not a defined listener%s", v->str, sug);
    }
  }
  rm->websocket = -1;
  bool ws;
  if (get_bool(s, m, "websocket", &ws) > 0) rm->websocket = ws;
}

static const char *const RATE_LIMIT_KEYS[] = {"name", "key",      "rate", "burst",
                                              "max_keys", "override", "mode", NULL};
static const char *const KEY_NAMES[] = {"client_ip", "device_class", "device_id", "route", NULL};

static void parse_overrides(struct schema *s, node_t *ov, struct sl_rate_limit_cfg *rl) {
  if (rl->key == SL_KEY_ROUTE) {
    err(s, ov, "override: a limit keyed by route has one bucket; nothing to override");
    return;
  }
  if (rl->key == SL_KEY_CLIENT_IP) {
    /* Overrides name key values (a device class, a device id); per-address
     * exceptions belong in identify.client_ip.trusted_proxies or a route. */
    err(s, ov, "override: a limit keyed by client_ip has no named values to override "
               "(use key: device_class or device_id)");
    return;
  }
  if (!ov->n) return;
  rl->overrides = sl_arena_xalloc(s->a, ov->n * sizeof(*rl->overrides));
  for (size_t i = 0; i < ov->n; i++) {
    node_t *k = ov->kids[2 * i], *v = ov->kids[2 * i + 1];
    struct sl_rate_override *o = &rl->overrides[rl->n_overrides];
    memset(o, 0, sizeof(*o));
    o->match = sdup(s, k->str);
    if (v->kind == CFG_SCALAR) {
      char e[160];
      if (sl_parse_rate(sdup(s, v->str), &o->rate, e, sizeof(e))) {
        err(s, v, "override '%s': %s", k->str, e);
        continue;
      }
    } else if (v->kind == CFG_MAP) {
      static const char *const okeys[] = {"rate", "burst", NULL};
      check_keys(s, v, "override", okeys);
      int rc = get_rate(s, v, "rate", &o->rate);
      if (rc == 0) err(s, v, "override '%s': missing 'rate'", k->str);
      if (rc <= 0) continue;
      if (get_burst(s, v, &o->burst) < 0) continue;
    } else {
      char got[64];
      describe(v, got, sizeof(got));
      err(s, v, "override '%s': expected a rate (e.g. \"200/s\") or {rate, burst}, got %s",
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
  return sl_hash_mix_u64(h, rl->max_keys);
}

static bool parse_rate_limit(struct schema *s, node_t *m, struct sl_route_cfg *r,
                             struct sl_rate_limit_cfg *rl) {
  check_keys(s, m, "rate limit", RATE_LIMIT_KEYS);
  memset(rl, 0, sizeof(*rl));
  rl->mark = m->mark;
  int key = 0;
  int rc = get_enum(s, m, "key", KEY_NAMES, &key);
  if (rc == 0) err(s, m, "rate limit: missing 'key' (client_ip, device_class, device_id or route)");
  rl->key = (enum sl_limit_key)key;
  rc = get_rate(s, m, "rate", &rl->rate);
  if (rc == 0) err(s, m, "rate limit: missing 'rate' (e.g. \"5/s\")");
  if (rl->rate.period_ns) rl->burst = default_burst(&rl->rate);
  get_burst(s, m, &rl->burst);
  get_u32(s, m, "max_keys", 1, 100000000, &rl->max_keys);
  node_t *ov = get_node(s, m, "override", CFG_MAP);
  if (ov) parse_overrides(s, ov, rl);
  get_mode(s, m, &rl->mode);
  if (get_name(s, m, "name", true, &rl->name) <= 0) {
    char buf[160];
    snprintf(buf, sizeof(buf), "%s/%s", r->name ? r->name : "?", KEY_NAMES[rl->key]);
    rl->name = sdup(s, buf);
  }
  rl->identity = rate_limit_identity(r->name, rl);
  return rl->rate.period_ns != 0;
}

static const char *const ROUTE_KEYS[] = {"name",        "match",    "upstream", "rate_limits",
                                         "concurrency", "priority", "idle_timeout", NULL};

static void resolve_upstream(struct schema *s, node_t *v, struct sl_route_cfg *r) {
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
  suggestion(sug, sizeof(sug), v->str, names, cfg->n_upstreams, "defined upstreams are");
  free(names);
  err(s, v, "upstream: '%s' is not a defined upstream%s", v->str, sug);
}

static void parse_route(struct schema *s, node_t *m, struct sl_route_cfg *r) {
  check_keys(s, m, "route", ROUTE_KEYS);
  r->mark = m->mark;
  if (get_name(s, m, "name", false, &r->name) == 0) err(s, m, "route: missing 'name'");
  r->match.websocket = -1;
  node_t *match = get_node(s, m, "match", CFG_MAP);
  if (match) parse_match(s, match, &r->match);
  node_t *v;
  if (get_text(s, m, "upstream", &v) > 0)
    resolve_upstream(s, v, r);
  else if (!val(m, "upstream"))
    err(s, m, "route '%s': missing 'upstream'", r->name ? r->name : "?");
  node_t *rls = get_node(s, m, "rate_limits", CFG_SEQ);
  if (rls && rls->n > SL_ROUTE_MAX_RATE_LIMITS) {
    err(s, rls, "route '%s': %zu rate limits, at most %d are allowed", r->name ? r->name : "?",
        (size_t)rls->n, SL_ROUTE_MAX_RATE_LIMITS);
  } else if (rls && rls->n) {
    r->rate_limits = sl_arena_xalloc(s->a, rls->n * sizeof(*r->rate_limits));
    for (size_t i = 0; i < rls->n; i++) {
      if (!want(s, rls->kids[i], CFG_MAP, "rate_limits item")) continue;
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
  node_t *cc = get_node(s, m, "concurrency", CFG_MAP);
  if (cc) {
    static const char *const keys[] = {"max", "mode", NULL};
    check_keys(s, cc, "concurrency", keys);
    if (get_u32(s, cc, "max", 1, 10000000, &r->concurrency.max) == 0)
      err(s, cc, "concurrency: missing 'max'");
    get_mode(s, cc, &r->concurrency.mode);
  }
  /* The route name only: a new `max` applies to the same counter, which
   * still holds the requests in flight. */
  r->concurrency.identity = sl_hash_mix_str(sl_hash_mix_str(SL_HASH_SEED, "concurrency"), r->name);
  static const char *const prios[] = {"normal", "low", "high", NULL};
  int p;
  if (get_enum(s, m, "priority", prios, &p) > 0) r->priority = (enum sl_priority)p;
  get_ms(s, m, "idle_timeout", 0, &r->idle_timeout_ms);
}

static void parse_routes(struct schema *s, node_t *root) {
  struct sl_config *cfg = s->cfg;
  node_t *seq = required_list(s, root, "routes", "no routes defined: add at least one under 'routes'");
  if (!seq) return;
  cfg->routes = sl_arena_xalloc(s->a, seq->n * sizeof(*cfg->routes));
  memset(cfg->routes, 0, seq->n * sizeof(*cfg->routes));
  for (size_t i = 0; i < seq->n; i++) {
    if (!want(s, seq->kids[i], CFG_MAP, "routes item")) continue;
    struct sl_route_cfg *r = &cfg->routes[cfg->n_routes];
    r->index = cfg->n_routes++;
    parse_route(s, seq->kids[i], r);
  }
  CHECK_UNIQUE(s, "route", cfg->routes, cfg->n_routes, struct sl_route_cfg);
}

/* ---- blocklist ---------------------------------------------------- */

static const char *const BLOCK_KEYS[] = {"name",   "class",   "versions", "status",
                                         "reason", "expires", "mode",     NULL};

static void parse_block_entry(struct schema *s, node_t *m, struct sl_block_entry *b) {
  check_keys(s, m, "blocklist entry", BLOCK_KEYS);
  b->mark = m->mark;
  b->status = 403;
  get_name(s, m, "name", false, &b->name);
  get_str(s, m, "class", &b->device_class);
  node_t *v;
  int rc = get_text(s, m, "versions", &v);
  if (rc == 0) err(s, m, "blocklist entry: missing 'versions' (e.g. \">=3.8.0-b3 <3.8.1\")");
  if (rc > 0) {
    char e[200] = "";
    size_t off = 0;
    if (sl_vrange_parse(v->str, &b->versions, e, sizeof(e), &off)) {
      memset(&b->versions, 0, sizeof(b->versions));
      err_at(s, v, cfg_scalar_col(v, off), "versions: %s", e);
    } else {
      b->versions_text = sdup(s, v->str);
    }
  }
  get_status(s, m, "status", &b->status);
  get_str(s, m, "reason", &b->reason);
  if (get_text(s, m, "expires", &v) > 0) {
    char e[200];
    if (cfg_parse_timestamp(v->str, &b->expires_unix, e, sizeof(e)))
      err(s, v, "expires: %s", e);
    else if (b->expires_unix <= 0)
      err(s, v, "expires: '%s' is not after 1970", v->str);
  }
  get_mode(s, m, &b->mode);
}

static void parse_blocklist(struct schema *s, node_t *root) {
  struct sl_blocklist_cfg *bl = &s->cfg->blocklist;
  node_t *m = get_node(s, root, "blocklist", CFG_MAP);
  if (!m) return;
  static const char *const keys[] = {"firmware", "unknown", NULL};
  check_keys(s, m, "blocklist", keys);
  node_t *fw = get_node(s, m, "firmware", CFG_SEQ);
  if (fw && fw->n) {
    bl->firmware = sl_arena_xalloc(s->a, fw->n * sizeof(*bl->firmware));
    memset(bl->firmware, 0, fw->n * sizeof(*bl->firmware));
    for (size_t i = 0; i < fw->n; i++) {
      if (!want(s, fw->kids[i], CFG_MAP, "firmware item")) continue;
      /* counted before parsing, so that sl_config_free() releases the
       * range even when this entry has another error */
      parse_block_entry(s, fw->kids[i], &bl->firmware[bl->n_firmware++]);
    }
    CHECK_UNIQUE(s, "blocklist entry", bl->firmware, bl->n_firmware, struct sl_block_entry);
  }
  static const char *const unknown[] = {"allow", "deny", NULL};
  int u;
  if (get_enum(s, m, "unknown", unknown, &u) > 0) bl->unknown = (enum sl_unknown_firmware)u;
}

/* ---- reject, shaping ---------------------------------------------- */

static void parse_reject(struct schema *s, node_t *root) {
  struct sl_reject_cfg *rj = &s->cfg->reject;
  rj->retry_after_min_ms = 1000;
  rj->retry_after_max_ms = 120000;
  rj->jitter = 0.5;
  rj->body_json = true;
  node_t *m = get_node(s, root, "reject", CFG_MAP);
  if (!m) return;
  static const char *const keys[] = {"retry_after", "body", NULL};
  check_keys(s, m, "reject", keys);
  node_t *ra = get_node(s, m, "retry_after", CFG_MAP);
  if (ra) {
    static const char *const rkeys[] = {"min", "max", "jitter", NULL};
    check_keys(s, ra, "retry_after", rkeys);
    int a = get_ms(s, ra, "min", 0, &rj->retry_after_min_ms);
    int b = get_ms(s, ra, "max", 1, &rj->retry_after_max_ms);
    get_double(s, ra, "jitter", 0, 1, &rj->jitter);
    if (a >= 0 && b >= 0 && rj->retry_after_min_ms > rj->retry_after_max_ms) {
      char mn[24], mx[24];
      cfg_format_duration(rj->retry_after_min_ms, mn, sizeof(mn));
      cfg_format_duration(rj->retry_after_max_ms, mx, sizeof(mx));
      err(s, a > 0 ? val(ra, "min") : val(ra, "max"),
          "retry_after: min (%s) is greater than max (%s)", mn, mx);
    }
  }
  static const char *const bodies[] = {"json", "text", NULL};
  int bi;
  if (get_enum(s, m, "body", bodies, &bi) > 0) rj->body_json = bi == 0;
}

static const char *const SHAPING_KEYS[] = {"name", "match", "delay", "abort", "rate", "mode", NULL};

static void parse_shaping_rule(struct schema *s, node_t *m, struct sl_shaping_rule *sr) {
  check_keys(s, m, "shaping rule", SHAPING_KEYS);
  sr->mark = m->mark;
  sr->abort_status = 503;
  sr->match.websocket = -1;
  get_name(s, m, "name", false, &sr->name);
  node_t *match = get_node(s, m, "match", CFG_MAP);
  if (match) parse_match(s, match, &sr->match);
  node_t *d = get_node(s, m, "delay", CFG_MAP);
  if (d) {
    static const char *const keys[] = {"fixed", "jitter", NULL};
    check_keys(s, d, "delay", keys);
    get_ms(s, d, "fixed", 0, &sr->delay_fixed_ms);
    get_ms(s, d, "jitter", 0, &sr->delay_jitter_ms);
  }
  node_t *ab = get_node(s, m, "abort", CFG_MAP);
  if (ab) {
    static const char *const keys[] = {"percent", "status", NULL};
    check_keys(s, ab, "abort", keys);
    if (get_double(s, ab, "percent", 0, 100, &sr->abort_percent) == 0)
      err(s, ab, "abort: missing 'percent'");
    get_status(s, ab, "status", &sr->abort_status);
  }
  get_rate(s, m, "rate", &sr->rate_cap);
  get_mode(s, m, &sr->mode);
  /* The cap's state survives a reload while the rule keeps its position in
   * the list; a new rate converts it (sl_policies_attach). */
  sr->identity = sl_hash_mix_u64(sl_hash_mix_str(SL_HASH_SEED, "shaping-rate"),
                                 (uint64_t)(sr - s->cfg->shaping));
}

static void parse_shaping(struct schema *s, node_t *root) {
  struct sl_config *cfg = s->cfg;
  node_t *seq = get_node(s, root, "shaping", CFG_SEQ);
  if (!seq || !seq->n) return;
  cfg->shaping = sl_arena_xalloc(s->a, seq->n * sizeof(*cfg->shaping));
  memset(cfg->shaping, 0, seq->n * sizeof(*cfg->shaping));
  for (size_t i = 0; i < seq->n; i++) {
    if (!want(s, seq->kids[i], CFG_MAP, "shaping item")) continue;
    parse_shaping_rule(s, seq->kids[i], &cfg->shaping[cfg->n_shaping++]);
  }
  CHECK_UNIQUE(s, "shaping rule", cfg->shaping, cfg->n_shaping, struct sl_shaping_rule);
}

/* ---- top level ---------------------------------------------------- */

static const char *const ROOT_KEYS[] = {
    "listeners", "admin",  "upstreams", "identify", "routes",        "blocklist",
    "reject",    "shaping", "mode",     "drain_timeout", "access_log", "rejection_log_per_sec",
    "include",   NULL};

void cfg_schema_apply(struct sl_config *cfg, const struct cfg_node *root,
                      struct sl_config_errors *errs) {
  struct schema sc = {.cfg = cfg, .a = cfg->arena, .errs = errs};
  struct schema *s = &sc;
  cfg->mode = SL_MODE_ENFORCE;
  cfg->drain_timeout_ms = 20000;
  cfg->access_log = SL_ACCESS_LOG_OFF;
  cfg->rejection_log_per_sec = 10;
  if (!want(s, root, CFG_MAP, "the top level")) return;
  check_keys(s, root, "the top level", ROOT_KEYS);

  parse_listeners(s, root);
  parse_admin(s, root);
  parse_upstreams(s, root);
  parse_identify(s, root);
  parse_routes(s, root);
  parse_blocklist(s, root);
  parse_reject(s, root);
  parse_shaping(s, root);

  get_mode(s, root, &cfg->mode);
  get_ms(s, root, "drain_timeout", 0, &cfg->drain_timeout_ms);
  static const char *const logs[] = {"off", "on", "sampled", NULL};
  int li;
  if (get_enum(s, root, "access_log", logs, &li) > 0) cfg->access_log = (enum sl_access_log)li;
  get_u32(s, root, "rejection_log_per_sec", 0, 1000000, &cfg->rejection_log_per_sec);
  const char *inc;
  get_str(s, root, "include", &inc); /* resolved and read by the loader */
}
