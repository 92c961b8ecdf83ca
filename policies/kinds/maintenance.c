/*
 * sluice — policy kind `maintenance`: a route (or, at the top level, every
 * route) answers every request itself, without the upstream: "come back
 * in N", postmortems 003 and 004.
 *
 *   maintenance:                  # top level, or in a route (which wins)
 *     status: 503                 # 400..599, default 503
 *     retry_after: 300s           # the Retry-After base, default 300s;
 *                                 # spread and clamped by reject.retry_after
 *     body: {message: "back at 14:00"}   # extra JSON body fields
 *     headers: {x-maintenance: planned}  # extra response headers
 *     mode: shadow                # optional: enforce | shadow
 *
 * It runs first (SL_STAGE_BEFORE_BLOCKLIST: right after route selection
 * and identification), so a refused request reaches no upstream and is
 * charged no quota. The top-level form is an implied policy of every route
 * without a `maintenance` key of its own (like the breaker), named
 * "maintenance"; a route's is "<route>/maintenance". Error and metric
 * reason "maintenance". Stateless: a peek decides.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "sluice/hash.h"
#include "sluice/json.h"
#include "sluice/policy.h"
#include "sluice/retry.h"
#include "../config/config_int.h"
#include "../config/config_print.h"
#include "../config/config_schema.h"
#include "maintenance.h"

struct maintenance {
  uint16_t status;
  uint64_t retry_after_ms;
  bool top; /* the top level's: printed there, not in each route */
  struct sl_reject_extra extra;
  /* For the printer: the body's fields as configured. */
  const char **body_keys, **body_vals;
  bool *body_str; /* the value is a string (printed quoted) */
  size_t n_body;
};

static const char *const KEYS[] = {"status", "retry_after", "body", "headers", "mode", NULL};
static const char *const BUILTIN[] = {"error", "policy", "retry_after", NULL};
/* Hop-by-hop, framing and the refusal's own headers. */
static const char *const FORBIDDEN[] = {
    "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te",
    "trailer", "content-length", "content-type", "retry-after", "host", "http2-settings", NULL};

static bool in_list(const char *const *l, const char *s) {
  for (; *l; l++)
    if (!strcmp(*l, s)) return true;
  return false;
}

static bool is_json_number(const char *s) {
  const char *p = s;
  if (*p == '-') p++;
  if (!isdigit((unsigned char)*p)) return false;
  if (*p == '0' && isdigit((unsigned char)p[1])) return false;
  while (isdigit((unsigned char)*p)) p++;
  if (*p == '.') {
    p++;
    if (!isdigit((unsigned char)*p)) return false;
    while (isdigit((unsigned char)*p)) p++;
  }
  if (*p == 'e' || *p == 'E') {
    p++;
    if (*p == '+' || *p == '-') p++;
    if (!isdigit((unsigned char)*p)) return false;
    while (isdigit((unsigned char)*p)) p++;
  }
  return *p == '\0';
}

static bool put(char *buf, size_t cap, size_t *len, const char *s, size_t n) {
  if (cap - *len <= n) return false;
  memcpy(buf + *len, s, n);
  *len += n;
  return true;
}

static bool parse_body(struct cfg_schema *s, node_t *b, struct maintenance *m) {
  if (!cs_want(s, b, CFG_MAP, "body")) return false;
  bool ok = true;
  char buf[257]; /* with the built-in fields, fits the refusal's 512-byte body */
  size_t len = 0;
  m->body_keys = sl_arena_xalloc(s->a, (b->n + 1) * sizeof(*m->body_keys));
  m->body_vals = sl_arena_xalloc(s->a, (b->n + 1) * sizeof(*m->body_vals));
  m->body_str = sl_arena_xalloc(s->a, (b->n + 1) * sizeof(*m->body_str));
  for (size_t i = 0; i < b->n; i++) {
    node_t *k = b->kids[2 * i], *v = b->kids[2 * i + 1];
    if (in_list(BUILTIN, k->str)) {
      cs_err(s, k, "body: '%s' is a built-in field of the rejection body (error, policy, "
                   "retry_after)", k->str);
      ok = false;
      continue;
    }
    if (!k->len || strlen(k->str) != k->len) {
      cs_err(s, k, "body: a key must be a non-empty string without NUL");
      ok = false;
      continue;
    }
    if (v->kind != CFG_SCALAR || strlen(v->str) != v->len) {
      cs_err(s, v, "body: '%s' must be a string, a number or a boolean", k->str);
      ok = false;
      continue;
    }
    bool str = v->quoted || !(is_json_number(v->str) || !strcmp(v->str, "true") ||
                              !strcmp(v->str, "false"));
    bool fit = put(buf, sizeof(buf), &len, ",\"", 2) &&
               sl_json_escape(buf, sizeof(buf), &len, k->str) &&
               put(buf, sizeof(buf), &len, "\":", 2) && (!str || put(buf, sizeof(buf), &len, "\"", 1));
    if (fit && str)
      fit = sl_json_escape(buf, sizeof(buf), &len, v->str) && put(buf, sizeof(buf), &len, "\"", 1);
    else if (fit)
      fit = put(buf, sizeof(buf), &len, v->str, v->len);
    if (!fit) {
      cs_err(s, b, "body: longer than %zu bytes of JSON", sizeof(buf) - 1);
      return false;
    }
    m->body_keys[m->n_body] = cs_sdup(s, k->str);
    m->body_vals[m->n_body] = cs_sdup(s, v->str);
    m->body_str[m->n_body++] = str;
  }
  buf[len] = '\0';
  if (len && ok) m->extra.body = cs_sdup(s, buf);
  return ok;
}

static bool header_value_ok(const char *v, size_t len) {
  if (strlen(v) != len) return false;
  for (const unsigned char *p = (const unsigned char *)v; *p; p++)
    if ((*p < 0x20 && *p != '\t') || *p == 0x7f) return false;
  return !len || (v[0] != ' ' && v[0] != '\t' && v[len - 1] != ' ' && v[len - 1] != '\t');
}

static bool parse_headers(struct cfg_schema *s, node_t *h, struct maintenance *m) {
  if (!cs_want(s, h, CFG_MAP, "headers")) return false;
  bool ok = true;
  struct sl_reject_header *hs = sl_arena_xalloc(s->a, (h->n + 1) * sizeof(*hs));
  for (size_t i = 0; i < h->n; i++) {
    node_t *k = h->kids[2 * i], *v = h->kids[2 * i + 1];
    if (!cfg_is_token(k->str) || strlen(k->str) != k->len) {
      cs_err(s, k, "headers: '%s' is not a header name (an RFC 9110 token)", k->str);
      ok = false;
      continue;
    }
    const char *name = cs_lowercase_dup(s, k->str);
    if (in_list(FORBIDDEN, name)) {
      cs_err(s, k, "headers: '%s' is a hop-by-hop, framing or refusal header sluice sets itself",
             name);
      ok = false;
      continue;
    }
    if (v->kind != CFG_SCALAR || !header_value_ok(v->str, v->len)) {
      cs_err(s, v, "headers: '%s' must be a string without control characters or surrounding "
                   "blanks", name);
      ok = false;
      continue;
    }
    hs[m->extra.n_headers++] = (struct sl_reject_header){name, cs_sdup(s, v->str)};
  }
  m->extra.headers = hs;
  return ok;
}

static bool mt_parse(struct cfg_schema *s, const struct cfg_node *v, struct sl_policy_cfg *p) {
  if (!cs_want(s, v, CFG_MAP, "maintenance")) return false;
  cs_check_keys(s, v, "maintenance", KEYS);
  struct maintenance *m = sl_arena_xalloc(s->a, sizeof(*m));
  memset(m, 0, sizeof(*m));
  m->status = 503;
  m->retry_after_ms = 300000;
  bool ok = true;
  if (cs_get_u16(s, v, "status", 400, 599, &m->status) < 0) ok = false;
  if (cs_get_ms(s, v, "retry_after", 0, &m->retry_after_ms) < 0) ok = false;
  node_t *b = cs_val(v, "body");
  if (b && !parse_body(s, b, m)) ok = false;
  node_t *h = cs_val(v, "headers");
  if (h && !parse_headers(s, h, m)) ok = false;
  cs_get_mode(s, v, &p->mode);
  p->data = m;
  return ok;
}

void sl_maintenance_parse_top(struct cfg_schema *s, const struct cfg_node *root) {
  node_t *v = cs_val(root, "maintenance");
  if (!v) return;
  struct sl_policy_cfg *p = sl_arena_xalloc(s->a, sizeof(*p));
  memset(p, 0, sizeof(*p));
  p->kind = &sl_kind_maintenance;
  p->name = "maintenance";
  p->mark = v->mark;
  if (!mt_parse(s, v, p)) return;
  ((struct maintenance *)p->data)->top = true;
  s->cfg->maintenance = p;
}

/* A route without a `maintenance` key of its own: the top level's. */
static bool mt_implied(struct cfg_schema *s, struct sl_route_cfg *route, struct sl_policy_cfg *p) {
  (void)route;
  const struct sl_policy_cfg *top = s->cfg->maintenance;
  if (!top) return false;
  p->name = top->name;
  p->mark = top->mark;
  p->mode = top->mode;
  p->data = top->data;
  return true;
}

static void print_map(FILE *out, int ind, const char *key, const char *const *ks,
                      const char *const *vs, const bool *quote, size_t n) {
  if (!n) return;
  cfg_print_indent(out, ind);
  fprintf(out, "%s:\n", key);
  for (size_t i = 0; i < n; i++) {
    cfg_print_indent(out, ind + 2);
    cfg_print_str(out, ks[i]);
    fputs(": ", out);
    if (!quote || quote[i])
      cfg_print_str(out, vs[i]);
    else
      fputs(vs[i], out);
    fputc('\n', out);
  }
}

static void print_policy(FILE *out, int ind, const struct sl_policy_cfg *p) {
  const struct maintenance *m = p->data;
  char d[32];
  cfg_print_indent(out, ind);
  fputs("maintenance:\n", out);
  cfg_print_kv_u64(out, ind + 2, "status", m->status);
  cfg_format_duration(m->retry_after_ms, d, sizeof(d));
  cfg_print_kv_raw(out, ind + 2, "retry_after", d);
  print_map(out, ind + 2, "body", m->body_keys, m->body_vals, m->body_str, m->n_body);
  const char *hk[64], *hv[64];
  size_t nh = 0;
  for (; nh < m->extra.n_headers && nh < 64; nh++)
    hk[nh] = m->extra.headers[nh].name, hv[nh] = m->extra.headers[nh].value;
  print_map(out, ind + 2, "headers", hk, hv, NULL, nh);
  cfg_print_kv_mode(out, ind + 2, p->mode);
}

static void mt_print(FILE *out, int ind, const struct sl_policy_cfg *p) {
  const struct maintenance *m = p->data;
  if (!m->top) print_policy(out, ind, p); /* the top level's is printed there */
}

void sl_maintenance_print_top(FILE *out, const struct sl_config *cfg) {
  if (cfg->maintenance) print_policy(out, 0, cfg->maintenance);
}

static uint64_t mt_tunables(const struct sl_policy_cfg *p) {
  const struct maintenance *m = p->data;
  uint64_t h = sl_hash_mix_u64(sl_hash_mix_u64(SL_HASH_SEED, m->status), m->retry_after_ms);
  h = sl_hash_mix_u64(h, m->top);
  h = sl_hash_mix_str(h, m->extra.body ? m->extra.body : "");
  for (size_t i = 0; i < m->extra.n_headers; i++)
    h = sl_hash_mix_str(sl_hash_mix_str(h, m->extra.headers[i].name), m->extra.headers[i].value);
  return h;
}

static void mt_peek(const struct sl_policy_cfg *p, void *state, const struct sl_policy_ctx *c,
                    struct sl_policy_result *r) {
  (void)state;
  const struct maintenance *m = p->data;
  r->verdict = SL_VERDICT_REFUSE;
  r->status = m->status;
  r->error = "maintenance";
  r->retry_after_ns = m->retry_after_ms * 1000000ull;
  r->retry = true;
  r->extra = &m->extra;
  if (c->explain)
    snprintf(r->why, sizeof(r->why), "in maintenance (%s): %u, retry after %llu s",
             m->top ? "top level" : "route", m->status,
             (unsigned long long)(m->retry_after_ms / 1000));
}

const struct sl_kind sl_kind_maintenance = {
    .key = "maintenance",
    .reason = "maintenance",
    .stage = SL_STAGE_BEFORE_BLOCKLIST,
    .parse = mt_parse,
    .implied = mt_implied,
    .print = mt_print,
    .tunables = mt_tunables,
    .peek = mt_peek,
};
