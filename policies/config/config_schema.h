/*
 * sluice — the configuration schema's toolkit, private to the loader
 * (policies/config/) and the policy kinds (policies/kinds/), which parse
 * their own sections with it.
 *
 *   config_schema.c           errors, "did you mean", typed getters, the top level
 *   config_schema_sections.c  listeners, admin, upstreams, identify, blocklist, reject
 *   config_schema_routes.c    routes (match, rate limits, concurrency, kinds), shaping
 *
 * Conventions. A key whose value is null (`key:` or `key: ~`) is the same
 * as an absent key, so a drop-in can put a default back. Every map level
 * checks its keys against the list of valid ones and suggests the closest
 * for a typo. Validation goes on after an error, so that one run reports
 * all of them; a value in error is left at its default.
 */
#ifndef SLUICE_POLICIES_CONFIG_SCHEMA_H
#define SLUICE_POLICIES_CONFIG_SCHEMA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice/arena.h"
#include "sluice/config-t.h"
#include "config_int.h"

struct cfg_schema {
  struct sl_config *cfg;
  struct sl_arena *a;
  struct sl_config_errors *errs;
  struct sl_route_cfg *route; /* the route whose kinds' keys are being parsed */
};

typedef const struct cfg_node node_t;

/* An error at |n| (its column, or |col|). */
void cs_err_at(struct cfg_schema *s, node_t *n, uint32_t col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void cs_err(struct cfg_schema *s, node_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* 'text' (cut at 40 bytes) or "a mapping", for messages. */
void cs_describe(node_t *n, char *buf, size_t len);
/* 1 to 64 letters, digits, '_', '.', '-' (and '/' if |slash|). */
bool cs_name_ok(const char *n, bool slash);

const char *cs_sdup(struct cfg_schema *s, const char *str);
const char *cs_lowercase_dup(struct cfg_schema *s, const char *str);

/* Writes ", did you mean 'x'?" or "; valid keys: a, b" for |word|. */
void cs_suggestion(char *buf, size_t len, const char *word, const char *const *cands, size_t n,
                   const char *what);
/* Reports each key of |map| that is not in |keys| (NULL-terminated). */
void cs_check_keys(struct cfg_schema *s, node_t *map, const char *where, const char *const *keys);

/* Typed getters. Each takes a map and a key; returns 1 when the key is
 * present and valid (|*out| set), 0 when absent or null (|*out|
 * untouched), -1 after reporting an error. */
node_t *cs_val(node_t *map, const char *key); /* NULL: absent or null */
bool cs_want(struct cfg_schema *s, node_t *n, enum cfg_kind kind, const char *key);
node_t *cs_get_node(struct cfg_schema *s, node_t *map, const char *key, enum cfg_kind kind);
int cs_get_text(struct cfg_schema *s, node_t *map, const char *key, node_t **out);
int cs_get_str(struct cfg_schema *s, node_t *map, const char *key, const char **out);
int cs_get_u64(struct cfg_schema *s, node_t *map, const char *key, uint64_t min, uint64_t max,
               uint64_t *out);
int cs_get_u32(struct cfg_schema *s, node_t *map, const char *key, uint32_t min, uint32_t max,
               uint32_t *out);
int cs_get_u16(struct cfg_schema *s, node_t *map, const char *key, uint16_t min, uint16_t max,
               uint16_t *out);
int cs_get_status(struct cfg_schema *s, node_t *map, const char *key, uint16_t *out);
int cs_get_double(struct cfg_schema *s, node_t *map, const char *key, double min, double max,
                  double *out);
int cs_get_bool(struct cfg_schema *s, node_t *map, const char *key, bool *out);
/* |names| is NULL-terminated; |*out| receives the index. */
int cs_get_enum(struct cfg_schema *s, node_t *map, const char *key, const char *const *names,
                int *out);
int cs_get_mode(struct cfg_schema *s, node_t *map, enum sl_mode *out);
/* `missing_key` of a policy keyed by |key| (skip | deny | shared), an
 * error where the key is never missing (client_ip, route). */
int cs_get_missing_key(struct cfg_schema *s, node_t *map, enum sl_limit_key key,
                       enum sl_missing_key *out);
/* |min_ms| 0 accepts "0s"; durations always need a unit. */
int cs_get_ms(struct cfg_schema *s, node_t *map, const char *key, uint64_t min_ms, uint64_t *out);
int cs_get_rate(struct cfg_schema *s, node_t *map, const char *key, struct sl_rate *out);
int cs_get_sockaddr(struct cfg_schema *s, node_t *map, const char *key, struct sl_sockaddr *out);
/* The same for an address that may be a host name (sl_parse_hostport). */
int cs_get_hostport(struct cfg_schema *s, node_t *map, const char *key, struct sl_hostport *out);
/* Names appear in metric labels, log lines and JSON bodies. */
int cs_get_name(struct cfg_schema *s, node_t *map, const char *key, bool slash, const char **out);
/* A header name (an RFC 9110 token), lowercased. */
int cs_get_header_name(struct cfg_schema *s, node_t *map, const char *key, const char **out);
/* Default burst: one second's worth of the rate, at least 1. */
uint32_t cs_default_burst(const struct sl_rate *r);
int cs_get_burst(struct cfg_schema *s, node_t *map, uint32_t *out);

/* Reports the second and later items of |n| items that share a name, each
 * against the first (O(n log n)). */
void cs_check_unique(struct cfg_schema *s, const char *what, const void *base, size_t n,
                     size_t stride, size_t name_off, size_t mark_off);
#define CFG_CHECK_UNIQUE(s, what, arr, n, type)                                                \
  cs_check_unique((s), (what), (arr), (n), sizeof(type), offsetof(type, name), offsetof(type, mark))

/* An absent, null or empty list of required things: reports |msg|. */
node_t *cs_required_list(struct cfg_schema *s, node_t *root, const char *key, const char *msg);

/* The one-line secret in the file |path|, the value of |key| in |section|
 * (see config_schema_sections.c); NULL after an error at |v|. */
const char *cs_read_secret(struct cfg_schema *s, node_t *v, const char *section, const char *key,
                           const char *path, bool token68);

/* Sections (config_schema_sections.c, config_schema_routes.c,
 * config_global.c). */
void cs_parse_global(struct cfg_schema *s, node_t *root);
void cs_parse_listeners(struct cfg_schema *s, node_t *root);
void cs_parse_admin(struct cfg_schema *s, node_t *root);
void cs_parse_upstreams(struct cfg_schema *s, node_t *root);
void cs_parse_identify(struct cfg_schema *s, node_t *root);
void cs_parse_match(struct cfg_schema *s, node_t *m, struct sl_route_match *rm);
void cs_parse_routes(struct cfg_schema *s, node_t *root);
void cs_parse_blocklist(struct cfg_schema *s, node_t *root);
void cs_parse_reject(struct cfg_schema *s, node_t *root);
void cs_parse_shaping(struct cfg_schema *s, node_t *root);

#endif
