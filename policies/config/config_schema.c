/*
 * sluice — configuration schema: the merged node tree to struct sl_config,
 * with every problem reported at its FILE:LINE:COL (SPEC section 3). The
 * toolkit shared by every section (errors, suggestions, typed getters) and
 * the top level; the sections are in config_schema_sections.c and
 * config_schema_routes.c, conventions in config_schema.h.
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
#include "sluice/version.h"
#include "config_allow.h"
#include "config_schema.h"
#include "../kinds/maintenance.h"

void cs_err_at(struct cfg_schema *s, node_t *n, uint32_t col, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  cfg_error_addv(s->errs, n->mark.file, n->mark.line, col, fmt, ap);
  va_end(ap);
}

void cs_err(struct cfg_schema *s, node_t *n, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  cfg_error_addv(s->errs, n->mark.file, n->mark.line, n->mark.col, fmt, ap);
  va_end(ap);
}

const char *cs_sdup(struct cfg_schema *s, const char *str) { return sl_arena_xstrdup(s->a, str); }

const char *cs_lowercase_dup(struct cfg_schema *s, const char *str) {
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
void cs_suggestion(char *buf, size_t len, const char *word, const char *const *cands, size_t n,
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
void cs_check_keys(struct cfg_schema *s, node_t *map, const char *where, const char *const *keys) {
  size_t nk = list_len(keys);
  for (size_t i = 0; i < map->n; i++) {
    node_t *k = map->kids[2 * i];
    size_t j;
    for (j = 0; j < nk; j++)
      if (!strcmp(k->str, keys[j])) break;
    if (j < nk) continue;
    char sug[512];
    cs_suggestion(sug, sizeof(sug), k->str, keys, nk, "valid keys are");
    cs_err(s, k, "unknown key '%s' in %s%s", k->str, where, sug);
  }
}

/* ---- typed getters -------------------------------------------------
 * Each takes a map and a key; returns 1 when the key is present and
 * valid (|*out| set), 0 when absent or null (|*out| untouched), -1 after
 * reporting an error. */

node_t *cs_val(node_t *map, const char *key) {
  node_t *v = cfg_map_get(map, key, NULL);
  return v && v->kind != CFG_NULL ? v : NULL;
}

void cs_describe(node_t *n, char *buf, size_t len) {
  if (n->kind == CFG_SCALAR)
    snprintf(buf, len, "'%.40s%s'", n->str, n->len > 40 ? "..." : "");
  else
    snprintf(buf, len, "%s", cfg_kind_name(n));
}

bool cs_want(struct cfg_schema *s, node_t *n, enum cfg_kind kind, const char *key) {
  if (n->kind == kind) return true;
  char got[64];
  cs_describe(n, got, sizeof(got));
  cs_err(s, n, "%s: expected %s, got %s", key,
      kind == CFG_MAP ? "a mapping" : kind == CFG_SEQ ? "a list" : "a string", got);
  return false;
}

node_t *cs_get_node(struct cfg_schema *s, node_t *map, const char *key, enum cfg_kind kind) {
  node_t *v = cs_val(map, key);
  if (!v) return NULL;
  return cs_want(s, v, kind, key) ? v : NULL;
}

int cs_get_text(struct cfg_schema *s, node_t *map, const char *key, node_t **out) {
  node_t *v = cs_val(map, key);
  if (!v) return 0;
  if (!cs_want(s, v, CFG_SCALAR, key)) return -1;
  if (strlen(v->str) != v->len) {
    cs_err(s, v, "%s: contains a NUL character", key);
    return -1;
  }
  *out = v;
  return 1;
}

int cs_get_str(struct cfg_schema *s, node_t *map, const char *key, const char **out) {
  node_t *v;
  int rc = cs_get_text(s, map, key, &v);
  if (rc > 0) {
    if (!v->len) {
      cs_err(s, v, "%s: must not be empty", key);
      return -1;
    }
    *out = cs_sdup(s, v->str);
  }
  return rc;
}

int cs_get_u64(struct cfg_schema *s, node_t *map, const char *key, uint64_t min, uint64_t max,
                   uint64_t *out) {
  node_t *v = cs_val(map, key);
  if (!v) return 0;
  char got[64];
  cs_describe(v, got, sizeof(got));
  if (v->kind != CFG_SCALAR || v->quoted || !isdigit((unsigned char)v->str[0])) {
    cs_err(s, v, "%s: expected an integer, got %s%s", key, v->quoted ? "quoted " : "", got);
    return -1;
  }
  uint64_t x = 0;
  for (const char *p = v->str; *p; p++) {
    if (!isdigit((unsigned char)*p)) {
      cs_err(s, v, "%s: expected an integer, got %s", key, got);
      return -1;
    }
    if (__builtin_mul_overflow(x, 10, &x) || __builtin_add_overflow(x, (uint64_t)(*p - '0'), &x)) {
      x = UINT64_MAX;
      break;
    }
  }
  if (x < min || x > max) {
    cs_err(s, v, "%s: %s is out of range (%llu..%llu)", key, v->str, (unsigned long long)min,
        (unsigned long long)max);
    return -1;
  }
  *out = x;
  return 1;
}

int cs_get_u32(struct cfg_schema *s, node_t *map, const char *key, uint32_t min, uint32_t max,
                   uint32_t *out) {
  uint64_t x;
  int rc = cs_get_u64(s, map, key, min, max, &x);
  if (rc > 0) *out = (uint32_t)x;
  return rc;
}

int cs_get_u16(struct cfg_schema *s, node_t *map, const char *key, uint16_t min, uint16_t max,
                   uint16_t *out) {
  uint64_t x;
  int rc = cs_get_u64(s, map, key, min, max, &x);
  if (rc > 0) *out = (uint16_t)x;
  return rc;
}

int cs_get_status(struct cfg_schema *s, node_t *map, const char *key, uint16_t *out) {
  return cs_get_u16(s, map, key, 100, 599, out);
}

int cs_get_double(struct cfg_schema *s, node_t *map, const char *key, double min, double max,
                      double *out) {
  node_t *v = cs_val(map, key);
  if (!v) return 0;
  char got[64];
  cs_describe(v, got, sizeof(got));
  char *end;
  double d = 0;
  if (v->kind == CFG_SCALAR && !v->quoted && v->len) d = strtod(v->str, &end);
  if (v->kind != CFG_SCALAR || v->quoted || !v->len || *end || !isfinite(d) ||
      !(isdigit((unsigned char)v->str[0]) || v->str[0] == '.' || v->str[0] == '-')) {
    cs_err(s, v, "%s: expected a number, got %s", key, got);
    return -1;
  }
  if (d < min || d > max) {
    cs_err(s, v, "%s: %s is out of range (%g..%g)", key, v->str, min, max);
    return -1;
  }
  *out = d;
  return 1;
}

int cs_get_bool(struct cfg_schema *s, node_t *map, const char *key, bool *out) {
  node_t *v = cs_val(map, key);
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
  cs_describe(v, got, sizeof(got));
  cs_err(s, v, "%s: expected true or false, got %s", key, got);
  return -1;
}

/* |names| is NULL-terminated; |*out| receives the index. */
int cs_get_enum(struct cfg_schema *s, node_t *map, const char *key, const char *const *names,
                    int *out) {
  node_t *v;
  int rc = cs_get_text(s, map, key, &v);
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
  cs_err(s, v, "%s: expected one of %s, got '%s'", key, list, v->str);
  return -1;
}

int cs_get_missing_key(struct cfg_schema *s, node_t *map, enum sl_limit_key key,
                       enum sl_missing_key *out) {
  static const char *const names[] = {"skip", "deny", "shared", NULL};
  static const char *const keys[] = {"client_ip", "device_class", "device_id", "route"};
  int mk, rc = cs_get_enum(s, map, "missing_key", names, &mk);
  if (rc <= 0) return rc;
  *out = (enum sl_missing_key)mk;
  if (key == SL_KEY_CLIENT_IP || key == SL_KEY_ROUTE)
    cs_err(s, cfg_map_get(map, "missing_key", NULL),
           "missing_key: every request has a %s key; it applies to device_class and device_id",
           keys[key]);
  return 1;
}

int cs_get_mode(struct cfg_schema *s, node_t *map, enum sl_mode *out) {
  static const char *const names[] = {"enforce", "shadow", NULL};
  int i;
  int rc = cs_get_enum(s, map, "mode", names, &i);
  if (rc > 0) *out = i == 0 ? SL_MODE_ENFORCE : SL_MODE_SHADOW;
  return rc;
}

/* A value whose parser refused it: the parser's message at its place. */
static int cs_refused(struct cfg_schema *s, node_t *v, const char *key, const char *e) {
  cs_err(s, v, "%s: %s", key, e);
  return -1;
}

/* |min_ms| 0 accepts "0s"; durations always need a unit. */
int cs_get_ms(struct cfg_schema *s, node_t *map, const char *key, uint64_t min_ms, uint64_t *out) {
  node_t *v;
  int rc = cs_get_text(s, map, key, &v);
  if (rc <= 0) return rc;
  char e[160];
  uint64_t ms;
  if (sl_parse_duration_ms(v->str, &ms, e, sizeof(e))) return cs_refused(s, v, key, e);
  if (ms < min_ms) {
    cs_err(s, v, "%s: must be at least %llums", key, (unsigned long long)min_ms);
    return -1;
  }
  if (ms > UINT64_C(31536000000)) {
    cs_err(s, v, "%s: '%s' is longer than a year", key, v->str);
    return -1;
  }
  *out = ms;
  return 1;
}

int cs_get_rate(struct cfg_schema *s, node_t *map, const char *key, struct sl_rate *out) {
  node_t *v;
  int rc = cs_get_text(s, map, key, &v);
  if (rc <= 0) return rc;
  char e[160];
  return sl_parse_rate(cs_sdup(s, v->str), out, e, sizeof(e)) ? cs_refused(s, v, key, e) : 1;
}

int cs_get_sockaddr(struct cfg_schema *s, node_t *map, const char *key, struct sl_sockaddr *out) {
  node_t *v;
  int rc = cs_get_text(s, map, key, &v);
  if (rc <= 0) return rc;
  char e[200];
  return sl_parse_sockaddr(cs_sdup(s, v->str), out, e, sizeof(e)) ? cs_refused(s, v, key, e) : 1;
}

int cs_get_hostport(struct cfg_schema *s, node_t *map, const char *key, struct sl_hostport *out) {
  node_t *v;
  int rc = cs_get_text(s, map, key, &v);
  if (rc <= 0) return rc;
  char e[200];
  return sl_parse_hostport(cs_sdup(s, v->str), out, e, sizeof(e)) ? cs_refused(s, v, key, e) : 1;
}

bool cs_name_ok(const char *n, bool slash) {
  size_t len = strlen(n);
  if (len == 0 || len > 64) return false;
  for (; *n; n++)
    if (!isalnum((unsigned char)*n) && !strchr(slash ? "_.-/" : "_.-", *n)) return false;
  return true;
}

/* Names appear in metric labels, log lines and JSON bodies. */
int cs_get_name(struct cfg_schema *s, node_t *map, const char *key, bool slash, const char **out) {
  node_t *v;
  int rc = cs_get_text(s, map, key, &v);
  if (rc <= 0) return rc;
  if (!cs_name_ok(v->str, slash)) {
    cs_err(s, v, "%s: '%s' is not a valid name (1 to 64 letters, digits, '_', '.', '-'%s)", key,
        v->str, slash ? ", '/'" : "");
    return -1;
  }
  *out = cs_sdup(s, v->str);
  return 1;
}

int cs_get_header_name(struct cfg_schema *s, node_t *map, const char *key, const char **out) {
  node_t *v;
  int rc = cs_get_text(s, map, key, &v);
  if (rc <= 0) return rc;
  if (!cfg_is_token(v->str)) {
    cs_err(s, v, "%s: '%s' is not a valid header name", key, v->str);
    return -1;
  }
  *out = cs_lowercase_dup(s, v->str);
  return 1;
}

/* Default burst: one second's worth of the rate, at least 1. */
uint32_t cs_default_burst(const struct sl_rate *r) {
  uint64_t b = (UINT64_C(1000000000) + r->period_ns - 1) / r->period_ns;
  return b > UINT32_MAX ? UINT32_MAX : b ? (uint32_t)b : 1;
}

int cs_get_burst(struct cfg_schema *s, node_t *map, uint32_t *out) {
  node_t *v = cs_val(map, "burst");
  if (v && v->kind == CFG_SCALAR && !v->quoted && !strcmp(v->str, "0")) {
    cs_err(s, v, "burst: must be at least 1 (a burst of 0 admits nothing)");
    return -1;
  }
  return cs_get_u32(s, map, "burst", 1, UINT32_MAX, out);
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
void cs_check_unique(struct cfg_schema *s, const char *what, const void *base, size_t n,
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

#define CFG_CHECK_UNIQUE(s, what, arr, n, type)                                                   \
  cs_check_unique((s), (what), (arr), (n), sizeof(type), offsetof(type, name), offsetof(type, mark))

/* An absent, null or empty list of required things. */
node_t *cs_required_list(struct cfg_schema *s, node_t *root, const char *key, const char *msg) {
  struct cfg_node *k;
  node_t *v = cfg_map_get(root, key, &k);
  if (!v || v->kind == CFG_NULL || (v->kind == CFG_SEQ && v->n == 0)) {
    cs_err(s, k ? (node_t *)k : root, "%s", msg);
    return NULL;
  }
  return cs_want(s, v, CFG_SEQ, key) ? v : NULL;
}
/* ---- top level ---------------------------------------------------- */

static const char *const ROOT_KEYS[] = {
    "listeners", "admin",  "upstreams", "identify", "routes",        "blocklist",
    "reject",    "shaping", "mode",     "drain_timeout", "access_log", "rejection_log_per_sec",
    "include",   "maintenance", "access_log_query", "allow", "drain_spread", "global", NULL};

void cfg_schema_apply(struct sl_config *cfg, const struct cfg_node *root,
                      struct sl_config_errors *errs) {
  struct cfg_schema sc = {.cfg = cfg, .a = cfg->arena, .errs = errs};
  struct cfg_schema *s = &sc;
  cfg->mode = SL_MODE_ENFORCE;
  cfg->drain_timeout_ms = 20000;
  cfg->access_log = SL_ACCESS_LOG_OFF;
  cfg->rejection_log_per_sec = 10;
  if (!cs_want(s, root, CFG_MAP, "the top level")) return;
  cs_check_keys(s, root, "the top level", ROOT_KEYS);

  cs_parse_listeners(s, root);
  cs_parse_admin(s, root);
  cs_parse_upstreams(s, root);
  cs_parse_identify(s, root);
  sl_maintenance_parse_top(s, root); /* before the routes: implied in them */
  cs_parse_global(s, root);          /* before the routes: `scope: global` needs it */
  cs_parse_routes(s, root);
  cs_parse_blocklist(s, root);
  cs_parse_reject(s, root);
  cs_parse_shaping(s, root);
  cs_parse_allow(s, root); /* after the routes: rules name them */

  cs_get_mode(s, root, &cfg->mode);
  cs_get_ms(s, root, "drain_timeout", 0, &cfg->drain_timeout_ms);
  /* Most of the drain: the last close leaves a quarter of drain_timeout
   * for the closing handshakes and the streams a GOAWAY lets finish. */
  cfg->drain_spread_ms = cfg->drain_timeout_ms - cfg->drain_timeout_ms / 4;
  if (cs_get_ms(s, root, "drain_spread", 0, &cfg->drain_spread_ms) > 0 &&
      cfg->drain_spread_ms > cfg->drain_timeout_ms)
    cs_err(s, cfg_map_get(root, "drain_spread", NULL),
           "drain_spread: %llums is longer than drain_timeout (%llums): the closes must be spread "
           "within the drain",
           (unsigned long long)cfg->drain_spread_ms, (unsigned long long)cfg->drain_timeout_ms);
  static const char *const logs[] = {"off", "on", "sampled", NULL};
  int li;
  if (cs_get_enum(s, root, "access_log", logs, &li) > 0) cfg->access_log = (enum sl_access_log)li;
  static const char *const queries[] = {"redact", "full", NULL};
  if (cs_get_enum(s, root, "access_log_query", queries, &li) > 0)
    cfg->access_log_query = (enum sl_access_log_query)li;
  cs_get_u32(s, root, "rejection_log_per_sec", 0, 1000000, &cfg->rejection_log_per_sec);
  const char *inc;
  cs_get_str(s, root, "include", &inc); /* resolved and read by the loader */
}
