/*
 * sluice — the top-level `global` section (the backend of fleet-wide
 * rate limits) and the `scope` of rate limits that use it.
 *
 *   global:
 *     redis: "10.0.0.5:6379"        # the primary (an IP or a DNS name), or instead:
 *     sentinel:                     # discover it (and follow failovers) through Sentinel
 *       addresses: ["10.0.0.7:26379", "10.0.0.8:26379"]
 *       master_name: mymaster
 *     password_file: /run/secrets/redis-password   # AUTH, optional
 *     database: 0
 *     connect_timeout: 500ms
 *     command_timeout: 100ms        # slower answers count as the backend down
 *     key_prefix: "sluice:"
 *     expected_replicas: 8          # the fallback share is rate / 8
 *     fallback: local               # local | open | closed
 *     lease: 100ms                  # each ask covers this much of a replica's demand
 *
 * The runtime is proxy/global/ (one asynchronous client per worker) and
 * the lease engine policies/lease.c.
 */
#include <string.h>

#include "sluice/config.h"
#include "sluice/hash.h"
#include "config_global.h"
#include "config_print.h"
#include "config_schema.h"

static const char *const GLOBAL_KEYS[] = {
    "redis",          "password_file",     "database", "connect_timeout", "command_timeout",
    "key_prefix",     "expected_replicas", "fallback", "lease",           "sentinel", NULL};
static const char *const SENTINEL_KEYS[] = {"addresses", "master_name", NULL};

#define MAX_SENTINELS 16

/* `sentinel:`; returns whether the section is present (valid or not). */
static bool parse_sentinel(struct cfg_schema *s, node_t *m, struct sl_global_cfg *g) {
  node_t *sm = cs_get_node(s, m, "sentinel", CFG_MAP);
  if (!sm) return cs_val(m, "sentinel") != NULL;
  cs_check_keys(s, sm, "global.sentinel", SENTINEL_KEYS);
  node_t *l = cs_get_node(s, sm, "addresses", CFG_SEQ);
  if (!l || l->n == 0 || l->n > MAX_SENTINELS) {
    cs_err(s, l ? l : sm, "global.sentinel: 'addresses' needs 1 to %d sentinels "
                          "(\"HOST:PORT\")", MAX_SENTINELS);
  } else {
    g->sentinels = sl_arena_xcalloc(s->a, l->n, sizeof(*g->sentinels));
    for (size_t i = 0; i < l->n; i++) {
      node_t *v = l->kids[i];
      char e[200];
      if (v->kind != CFG_SCALAR || !v->str) {
        cs_err(s, v, "global.sentinel.addresses: each item is \"HOST:PORT\"");
      } else if (sl_parse_hostport(cs_sdup(s, v->str), &g->sentinels[g->n_sentinels], e,
                                   sizeof(e))) {
        cs_err(s, v, "global.sentinel.addresses: %s", e);
      } else {
        g->n_sentinels++;
      }
    }
  }
  node_t *mn;
  if (cs_get_text(s, sm, "master_name", &mn) <= 0)
    cs_err(s, sm, "global.sentinel: missing 'master_name' (the name in `sentinel monitor`)");
  else if (!cs_name_ok(mn->str, false))
    cs_err(s, mn, "global.sentinel: master_name '%s' is not a valid name (1 to 64 letters, "
                  "digits, '_', '.', '-')", mn->str);
  else
    g->master_name = cs_sdup(s, mn->str);
  return true;
}

const char *const SL_GLOBAL_FALLBACK_NAMES[] = {"local", "open", "closed", NULL};

void cs_parse_global(struct cfg_schema *s, node_t *root) {
  struct sl_global_cfg *g = &s->cfg->global;
  g->connect_timeout_ms = 500;
  g->command_timeout_ms = 100;
  g->key_prefix = "sluice:";
  g->expected_replicas = 1;
  g->fallback = SL_FALLBACK_LOCAL;
  g->lease_ms = 100;
  node_t *m = cs_get_node(s, root, "global", CFG_MAP);
  if (!m) return;
  g->enabled = true;
  g->mark = m->mark;
  cs_check_keys(s, m, "global", GLOBAL_KEYS);
  bool sentinel = parse_sentinel(s, m, g);
  int has_redis = cs_get_hostport(s, m, "redis", &g->redis);
  if (has_redis == 0 && !sentinel)
    cs_err(s, m, "global: missing 'redis' (the backend's address, e.g. \"10.0.0.5:6379\") "
                 "or 'sentinel'");
  else if (has_redis != 0 && sentinel)
    cs_err(s, cs_val(m, "sentinel"), "global: 'redis' and 'sentinel' both given: use exactly one "
                                     "(sentinel discovers the primary)");
  node_t *pf;
  if (cs_get_text(s, m, "password_file", &pf) > 0) {
    g->password_file = cs_sdup(s, pf->str);
    g->password = cs_read_secret(s, pf, "global", "password_file", pf->str, false);
  }
  cs_get_u32(s, m, "database", 0, 15, &g->database);
  cs_get_ms(s, m, "connect_timeout", 1, &g->connect_timeout_ms);
  cs_get_ms(s, m, "command_timeout", 1, &g->command_timeout_ms);
  const char *prefix;
  if (cs_get_str(s, m, "key_prefix", &prefix) > 0) {
    node_t *v = cs_val(m, "key_prefix");
    if (strlen(prefix) > 64 || strpbrk(prefix, " \t\r\n{}"))
      cs_err(s, v, "global: key_prefix '%s': at most 64 characters, no blanks or braces "
                   "(braces would pick the Redis Cluster slot)", prefix);
    else
      g->key_prefix = cs_sdup(s, prefix);
  }
  cs_get_u32(s, m, "expected_replicas", 1, 100000, &g->expected_replicas);
  int fb;
  if (cs_get_enum(s, m, "fallback", SL_GLOBAL_FALLBACK_NAMES, &fb) > 0)
    g->fallback = (enum sl_global_fallback)fb;
  if (cs_get_ms(s, m, "lease", 10, &g->lease_ms) > 0 && g->lease_ms > 10000) {
    cs_err(s, cs_val(m, "lease"), "global: lease %llums is longer than 10s: a replica would hold "
                                  "tokens it does not use for that long",
           (unsigned long long)g->lease_ms);
  }
  if (g->command_timeout_ms > g->lease_ms * 10)
    cs_err(s, cs_val(m, "command_timeout"),
           "global: command_timeout %llums is more than 10 leases (%llums): replicas would wait "
           "that long before falling back",
           (unsigned long long)g->command_timeout_ms, (unsigned long long)g->lease_ms);
  uint64_t h = sl_hash_mix_str(SL_HASH_SEED, "global");
  h = sl_hash_mix_str(h, g->redis.text ? g->redis.text : "");
  for (size_t i = 0; i < g->n_sentinels; i++) h = sl_hash_mix_str(h, g->sentinels[i].text);
  h = sl_hash_mix_str(h, g->master_name ? g->master_name : "");
  h = sl_hash_mix_str(h, g->password ? g->password : "");
  g->identity = sl_hash_mix_u64(h, g->database);
}

void cfg_print_global(FILE *out, const struct sl_config *cfg) {
  const struct sl_global_cfg *g = &cfg->global;
  if (!g->enabled) return;
  fputs("global:\n", out);
  if (g->n_sentinels) {
    fputs("  sentinel:\n    addresses:\n", out);
    for (size_t i = 0; i < g->n_sentinels; i++) fprintf(out, "      - \"%s\"\n", g->sentinels[i].text);
    cfg_print_kv_str(out, 4, "master_name", g->master_name);
  } else {
    cfg_print_kv_str(out, 2, "redis", g->redis.text);
  }
  /* the file, never the password */
  if (g->password_file) cfg_print_kv_str(out, 2, "password_file", g->password_file);
  cfg_print_kv_u64(out, 2, "database", g->database);
  cfg_print_kv_ms(out, 2, "connect_timeout", g->connect_timeout_ms);
  cfg_print_kv_ms(out, 2, "command_timeout", g->command_timeout_ms);
  cfg_print_kv_str(out, 2, "key_prefix", g->key_prefix);
  cfg_print_kv_u64(out, 2, "expected_replicas", g->expected_replicas);
  cfg_print_kv_raw(out, 2, "fallback", SL_GLOBAL_FALLBACK_NAMES[g->fallback]);
  cfg_print_kv_ms(out, 2, "lease", g->lease_ms);
}
