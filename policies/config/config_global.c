/*
 * sluice — the top-level `global` section (the backend of fleet-wide
 * rate limits) and the `scope` of rate limits that use it.
 *
 *   global:
 *     redis: "10.0.0.5:6379"        # required
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

#include "sluice/hash.h"
#include "config_global.h"
#include "config_print.h"
#include "config_schema.h"

static const char *const GLOBAL_KEYS[] = {
    "redis",          "password_file",     "database", "connect_timeout", "command_timeout",
    "key_prefix",     "expected_replicas", "fallback", "lease",           NULL};

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
  if (cs_get_sockaddr(s, m, "redis", &g->redis) == 0)
    cs_err(s, m, "global: missing 'redis' (the backend's address, e.g. \"10.0.0.5:6379\")");
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
  h = sl_hash_mix_str(h, g->password ? g->password : "");
  g->identity = sl_hash_mix_u64(h, g->database);
}

void cfg_print_global(FILE *out, const struct sl_config *cfg) {
  const struct sl_global_cfg *g = &cfg->global;
  if (!g->enabled) return;
  fputs("global:\n", out);
  cfg_print_kv_str(out, 2, "redis", g->redis.text);
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
