/*
 * sluice — policy kind `require_header`: a route admits a request only if
 * it carries a header with one of the allowed values.
 *
 *   routes:
 *     - name: devices
 *       require_header:
 *         name: x-device-class      # header name (case-insensitive)
 *         values: [hub, cam]        # allowed values, compared exactly
 *         status: 403               # refusal status (400..599), default 403
 *         mode: shadow              # optional: enforce | shadow
 *
 * Stateless: a peek decides, there is nothing to commit. A refusal has no
 * Retry-After (waiting does not help) and the JSON error
 * "header_required"; its metric reason is "require_header".
 */
#include <stdio.h>
#include <string.h>

#include "sluice/hash.h"
#include "sluice/policy.h"
#include "sluice/route.h"
#include "../config/config_print.h"
#include "../config/config_schema.h"

struct require_header {
  const char *header;     /* lowercase */
  const char **values;
  size_t n_values;
  uint16_t status;
};

static const char *const KEYS[] = {"name", "values", "status", "mode", NULL};

static bool rh_parse(struct cfg_schema *s, const struct cfg_node *v, struct sl_policy_cfg *p) {
  if (!cs_want(s, v, CFG_MAP, "require_header")) return false;
  cs_check_keys(s, v, "require_header", KEYS);
  struct require_header *rh = sl_arena_xalloc(s->a, sizeof(*rh));
  memset(rh, 0, sizeof(*rh));
  rh->status = 403;
  bool ok = true;
  int rc = cs_get_header_name(s, v, "name", &rh->header);
  if (rc == 0) cs_err(s, v, "require_header: missing 'name' (a header name, e.g. x-device-class)");
  ok &= rc > 0;
  node_t *vals = cs_get_node(s, v, "values", CFG_SEQ);
  if (!vals && !cs_val(v, "values")) {
    cs_err(s, v, "require_header: missing 'values' (the allowed values, e.g. [hub, cam])");
    ok = false;
  } else if (vals && vals->n == 0) {
    cs_err(s, vals, "require_header: 'values' must not be empty");
    ok = false;
  } else if (vals) {
    rh->values = sl_arena_xalloc(s->a, vals->n * sizeof(*rh->values));
    for (size_t i = 0; i < vals->n; i++) {
      node_t *it = vals->kids[i];
      if (!cs_want(s, it, CFG_SCALAR, "values item")) {
        ok = false;
        continue;
      }
      if (!it->len || strlen(it->str) != it->len) {
        cs_err(s, it, "values item: must be a non-empty string without NUL");
        ok = false;
        continue;
      }
      rh->values[rh->n_values++] = cs_sdup(s, it->str);
    }
  } else {
    ok = false; /* reported by cs_get_node */
  }
  if (cs_get_u16(s, v, "status", 400, 599, &rh->status) < 0) ok = false;
  cs_get_mode(s, v, &p->mode);
  p->data = rh;
  return ok;
}

static void rh_print(FILE *out, int ind, const struct sl_policy_cfg *p) {
  const struct require_header *rh = p->data;
  cfg_print_indent(out, ind);
  fputs("require_header:\n", out);
  cfg_print_kv_str(out, ind + 2, "name", rh->header);
  cfg_print_indent(out, ind + 2);
  fputs("values: [", out);
  for (size_t i = 0; i < rh->n_values; i++) {
    if (i) fputs(", ", out);
    cfg_print_str(out, rh->values[i]);
  }
  fputs("]\n", out);
  cfg_print_kv_u64(out, ind + 2, "status", rh->status);
  cfg_print_kv_mode(out, ind + 2, p->mode);
}

static uint64_t rh_tunables(const struct sl_policy_cfg *p) {
  const struct require_header *rh = p->data;
  uint64_t h = sl_hash_mix_str(SL_HASH_SEED, rh->header);
  for (size_t i = 0; i < rh->n_values; i++) h = sl_hash_mix_str(h, rh->values[i]);
  return sl_hash_mix_u64(sl_hash_mix_u64(h, rh->n_values), rh->status);
}

static void rh_peek(const struct sl_policy_cfg *p, void *state, const struct sl_policy_ctx *c,
                    struct sl_policy_result *r) {
  (void)state;
  const struct require_header *rh = p->data;
  const struct sl_request_facts *f = c->facts;
  const char *got = f && f->header ? f->header(f->header_ctx, rh->header) : NULL;
  for (size_t i = 0; got && i < rh->n_values; i++) {
    if (strcmp(got, rh->values[i])) continue;
    r->verdict = SL_VERDICT_ADMIT;
    if (c->explain) snprintf(r->why, sizeof(r->why), "%s: '%.80s' is allowed", rh->header, got);
    return;
  }
  r->verdict = SL_VERDICT_REFUSE;
  r->status = rh->status;
  r->error = "header_required";
  if (!c->explain) return;
  if (!got) {
    snprintf(r->why, sizeof(r->why), "no %s header", rh->header);
    return;
  }
  int n = snprintf(r->why, sizeof(r->why), "%s: '%.40s' is not one of ", rh->header, got);
  for (size_t i = 0; i < rh->n_values && n > 0 && (size_t)n < sizeof(r->why); i++)
    n += snprintf(r->why + n, sizeof(r->why) - (size_t)n, "%s%s", i ? ", " : "", rh->values[i]);
}

const struct sl_kind sl_kind_require_header = {
    .key = "require_header",
    .reason = "require_header",
    .parse = rh_parse,
    .print = rh_print,
    .tunables = rh_tunables,
    .peek = rh_peek,
};
