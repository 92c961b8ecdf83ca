/*
 * sluice — a refusal's `body` and `headers`. See reject_extra.h.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "sluice/hash.h"
#include "sluice/json.h"
#include "config_int.h"
#include "config_print.h"
#include "config_schema.h"
#include "reject_extra.h"

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

static bool parse_body(struct cfg_schema *s, node_t *b, struct sl_reject_extra *x) {
  if (!cs_want(s, b, CFG_MAP, "body")) return false;
  bool ok = true;
  char buf[SL_REJECT_EXTRA_BODY_MAX + 1];
  size_t len = 0;
  const char **keys = sl_arena_xalloc(s->a, (b->n + 1) * sizeof(*keys));
  const char **vals = sl_arena_xalloc(s->a, (b->n + 1) * sizeof(*vals));
  bool *strs = sl_arena_xalloc(s->a, (b->n + 1) * sizeof(*strs));
  x->body_keys = keys;
  x->body_vals = vals;
  x->body_str = strs;
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
    keys[x->n_body] = cs_sdup(s, k->str);
    vals[x->n_body] = cs_sdup(s, v->str);
    strs[x->n_body++] = str;
  }
  buf[len] = '\0';
  if (len && ok) x->body = cs_sdup(s, buf);
  return ok;
}

static bool header_value_ok(const char *v, size_t len) {
  if (strlen(v) != len) return false;
  for (const unsigned char *p = (const unsigned char *)v; *p; p++)
    if ((*p < 0x20 && *p != '\t') || *p == 0x7f) return false;
  return !len || (v[0] != ' ' && v[0] != '\t' && v[len - 1] != ' ' && v[len - 1] != '\t');
}

static bool parse_headers(struct cfg_schema *s, node_t *h, struct sl_reject_extra *x) {
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
    hs[x->n_headers++] = (struct sl_reject_header){name, cs_sdup(s, v->str)};
  }
  x->headers = hs;
  return ok;
}

bool cs_parse_reject_extra(struct cfg_schema *s, node_t *map, struct sl_reject_extra *x) {
  memset(x, 0, sizeof(*x));
  bool ok = true;
  node_t *b = cs_val(map, "body");
  if (b && !parse_body(s, b, x)) ok = false;
  node_t *h = cs_val(map, "headers");
  if (h && !parse_headers(s, h, x)) ok = false;
  return ok;
}

/* `key:` and |n| lines `"k(i)": v(i)` (v quoted unless |quote| says not). */
static void print_map(FILE *out, int ind, const char *key, size_t n,
                      const char *(*k)(const void *, size_t), const char *(*v)(const void *, size_t),
                      const bool *quote, const void *ctx) {
  if (!n) return;
  cfg_print_indent(out, ind);
  fprintf(out, "%s:\n", key);
  for (size_t i = 0; i < n; i++) {
    cfg_print_indent(out, ind + 2);
    cfg_print_str(out, k(ctx, i));
    fputs(": ", out);
    if (!quote || quote[i])
      cfg_print_str(out, v(ctx, i));
    else
      fputs(v(ctx, i), out);
    fputc('\n', out);
  }
}

static const char *body_key(const void *x, size_t i) {
  return ((const struct sl_reject_extra *)x)->body_keys[i];
}
static const char *body_val(const void *x, size_t i) {
  return ((const struct sl_reject_extra *)x)->body_vals[i];
}
static const char *hdr_key(const void *x, size_t i) {
  return ((const struct sl_reject_extra *)x)->headers[i].name;
}
static const char *hdr_val(const void *x, size_t i) {
  return ((const struct sl_reject_extra *)x)->headers[i].value;
}

void cfg_print_reject_extra(FILE *out, int ind, const struct sl_reject_extra *x) {
  print_map(out, ind, "body", x->n_body, body_key, body_val, x->body_str, x);
  print_map(out, ind, "headers", x->n_headers, hdr_key, hdr_val, NULL, x);
}

uint64_t sl_reject_extra_mix(uint64_t h, const struct sl_reject_extra *x) {
  h = sl_hash_mix_str(h, x->body ? x->body : "");
  for (size_t i = 0; i < x->n_headers; i++)
    h = sl_hash_mix_str(sl_hash_mix_str(h, x->headers[i].name), x->headers[i].value);
  return h;
}
