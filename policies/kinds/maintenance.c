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
#include <stdio.h>
#include <string.h>

#include "sluice/hash.h"
#include "sluice/policy.h"
#include "sluice/retry.h"
#include "../config/config_int.h"
#include "../config/config_print.h"
#include "../config/config_schema.h"
#include "../config/reject_extra.h"
#include "maintenance.h"

struct maintenance {
  uint16_t status;
  uint64_t retry_after_ms;
  bool top; /* the top level's: printed there, not in each route */
  struct sl_reject_extra extra;
};

static const char *const KEYS[] = {"status", "retry_after", "body", "headers", "mode", NULL};

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
  if (!cs_parse_reject_extra(s, v, &m->extra)) ok = false;
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

static void print_policy(FILE *out, int ind, const struct sl_policy_cfg *p) {
  const struct maintenance *m = p->data;
  char d[32];
  cfg_print_indent(out, ind);
  fputs("maintenance:\n", out);
  cfg_print_kv_u64(out, ind + 2, "status", m->status);
  cfg_format_duration(m->retry_after_ms, d, sizeof(d));
  cfg_print_kv_raw(out, ind + 2, "retry_after", d);
  cfg_print_reject_extra(out, ind + 2, &m->extra);
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
  return sl_reject_extra_mix(h, &m->extra);
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
