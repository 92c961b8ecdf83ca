/*
 * sluice — exemptions: the first matching `allow` rule. See
 * include/sluice/allow.h; the rules are parsed in config/config_allow.c.
 */
#include <stdio.h>
#include <string.h>

#include "sluice/allow.h"
#include "sluice/cidrset.h"
#include "sluice/policy.h"

/* The slice |s| (|n| bytes) is one of the |count| strings of |sorted|
 * (ascending by strcmp): a binary search, comparing as strcmp would. */
static bool sorted_has(const char *const *sorted, size_t count, const char *s, size_t n) {
  size_t lo = 0, hi = count;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    const char *m = sorted[mid];
    size_t ml = strlen(m);
    int c = memcmp(m, s, ml < n ? ml : n);
    if (c == 0) c = ml < n ? -1 : ml > n;
    if (c == 0) return true;
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return false;
}

/* Every criterion of |r| but client_ip (decided by the caller's set). */
static bool rest_matches(const struct sl_allow_rule *r, const struct sl_identity *id,
                         const struct sl_request_facts *f) {
  if (r->n_classes &&
      (!id->device_class ||
       !sorted_has(r->classes, r->n_classes, id->device_class, id->device_class_len)))
    return false;
  if (r->n_device_ids &&
      (!id->device_id ||
       !sorted_has(r->device_ids, r->n_device_ids, id->device_id, id->device_id_len)))
    return false;
  /* The header as routes match one (exact value, or presence). */
  if (r->header.n_headers && (!f || !sl_route_match_one(&r->header, f))) return false;
  return true;
}

const struct sl_allow_rule *sl_allow_match(const struct sl_allow_cfg *a,
                                           const struct sl_route_cfg *route,
                                           const struct sl_identity *id,
                                           const struct sl_request_facts *f) {
  uint64_t cand = a->route_rules ? a->route_rules[route->index] : 0;
  if (!cand) return NULL;
  /* One lookup in the set of every rule's blocks gives the rules whose
   * client_ip covers the address (at most 64 rules: never truncated). */
  uint64_t ip_ok = a->any_ip;
  if (a->cidrs && (cand & ~a->any_ip) && id->family) {
    uint32_t hits[SL_ALLOW_MAX_RULES];
    size_t n = sl_cidrset_lookup(a->cidrs, id->family, id->addr, hits, SL_ALLOW_MAX_RULES, NULL);
    for (size_t i = 0; i < n; i++) ip_ok |= UINT64_C(1) << hits[i];
  }
  for (cand &= ip_ok; cand; cand &= cand - 1) {
    const struct sl_allow_rule *r = &a->rules[__builtin_ctzll(cand)];
    if (rest_matches(r, id, f)) return r;
  }
  return NULL;
}

enum { N_BUILTIN = 3 };

const char *sl_allow_skip_name(size_t i, uint64_t *bit) {
  static const char *const builtin[N_BUILTIN] = {"blocklist", "rate_limits", "shaping"};
  static const uint64_t builtin_bit[N_BUILTIN] = {SL_SKIP_BLOCKLIST, SL_SKIP_RATE_LIMITS,
                                                  SL_SKIP_SHAPING};
  if (i < N_BUILTIN) {
    *bit = builtin_bit[i];
    return builtin[i];
  }
  i -= N_BUILTIN;
  if (i >= sl_n_policy_kinds || i >= SL_ENGINE_MAX_KINDS) return NULL;
  *bit = SL_SKIP_KIND(i);
  return sl_policy_kinds[i]->key;
}

/* Appends |s| to |buf| (|*off| bytes used so far), cut to fit. */
static void put(char *buf, size_t len, size_t *off, const char *s) {
  if (*off >= len) return;
  int n = snprintf(buf + *off, len - *off, "%s", s);
  *off = n < 0 ? len : *off + (size_t)n;
}

static void describe_skip_at(uint64_t skip, char *buf, size_t len, size_t *off) {
  uint64_t bit;
  const char *name;
  bool any = false;
  for (size_t i = 0; (name = sl_allow_skip_name(i, &bit)); i++) {
    if (!(skip & bit)) continue;
    if (any) put(buf, len, off, ", ");
    put(buf, len, off, name);
    any = true;
  }
}

void sl_allow_describe_skip(uint64_t skip, char *buf, size_t len) {
  size_t off = 0;
  if (len) buf[0] = '\0';
  describe_skip_at(skip, buf, len, &off);
}

void sl_allow_describe(const struct sl_allow_rule *r, char *buf, size_t len) {
  size_t off = 0;
  char num[48];
  if (len) buf[0] = '\0';
  put(buf, len, &off, "matched on");
  if (r->n_cidrs) {
    snprintf(num, sizeof(num), " client_ip (%zu block%s),", r->n_cidrs, r->n_cidrs == 1 ? "" : "s");
    put(buf, len, &off, num);
  }
  if (r->header.n_headers) {
    put(buf, len, &off, " header ");
    put(buf, len, &off, r->header.headers[0].name);
    put(buf, len, &off, ",");
  }
  if (r->n_classes) put(buf, len, &off, " class,");
  if (r->n_device_ids) put(buf, len, &off, " device_id,");
  if (r->n_routes) put(buf, len, &off, " route,");
  if (off && off <= len && buf[off - 1] == ',') buf[--off] = '\0';
  put(buf, len, &off, "; skips ");
  describe_skip_at(r->skip, buf, len, &off);
}
