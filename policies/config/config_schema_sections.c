/*
 * sluice — configuration schema: listeners, admin, upstreams (breakers),
 * identify, blocklist and reject sections. See config_schema.h.
 */
#include <ctype.h>
#include <errno.h>
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
#include "config_schema.h"
#include "reject_extra.h"

/* ---- listeners ---------------------------------------------------- */

static const char *const LISTENER_KEYS[] = {
    "name", "address", "tls", "max_connections", "connect_rate", "timeouts", "limits",
    "proxy_protocol", NULL};

/* A list of CIDR blocks under |key| of |m| into the arena (*out, *n; both
 * left alone when the key is absent). Returns the list's node or NULL. */
static node_t *get_cidrs(struct cfg_schema *s, node_t *m, const char *key, struct sl_cidr **out,
                         size_t *n) {
  node_t *seq = cs_get_node(s, m, key, CFG_SEQ);
  if (!seq || !seq->n) return seq;
  *out = sl_arena_xalloc(s->a, seq->n * sizeof(**out));
  *n = 0;
  for (size_t i = 0; i < seq->n; i++) {
    node_t *c = seq->kids[i];
    char what[64], e[200];
    snprintf(what, sizeof(what), "%s item", key);
    if (!cs_want(s, c, CFG_SCALAR, what)) continue;
    if (sl_parse_cidr(c->str, &(*out)[*n], e, sizeof(e)))
      cs_err(s, c, "%s: %s", key, e);
    else
      (*n)++;
  }
  return seq;
}

/* proxy_protocol: {trusted: [CIDRs], timeout: 3s}. */
static void parse_proxy_protocol(struct cfg_schema *s, node_t *m, struct sl_listener_cfg *l) {
  node_t *pp = cs_get_node(s, m, "proxy_protocol", CFG_MAP);
  if (!pp) return;
  static const char *const keys[] = {"trusted", "timeout", NULL};
  cs_check_keys(s, pp, "proxy_protocol", keys);
  l->proxy_protocol.timeout_ms = 3000;
  cs_get_ms(s, pp, "timeout", 1, &l->proxy_protocol.timeout_ms);
  node_t *t = get_cidrs(s, pp, "trusted", &l->proxy_protocol.trusted, &l->proxy_protocol.n_trusted);
  if (!t || !t->n)
    cs_err(s, t ? t : pp,
           "proxy_protocol: 'trusted' must list the load balancers' addresses (e.g. [\"10.0.0.0/8\"]): "
           "a PROXY header from anyone else would let them choose their client address");
}

static void parse_listener(struct cfg_schema *s, node_t *m, struct sl_listener_cfg *l) {
  cs_check_keys(s, m, "listener", LISTENER_KEYS);
  l->mark = m->mark;
  l->max_connections = 50000;
  l->request_header_timeout_ms = 10000;
  l->idle_timeout_ms = 60000;
  l->header_bytes = 16384;
  l->headers = 100;
  l->h2_streams = 100;
  if (cs_get_name(s, m, "name", false, &l->name) == 0) cs_err(s, m, "listener: missing 'name'");
  if (cs_get_sockaddr(s, m, "address", &l->address) == 0)
    cs_err(s, m, "listener: missing 'address' (e.g. \"0.0.0.0:8443\")");
  node_t *tls = cs_get_node(s, m, "tls", CFG_MAP);
  if (tls) {
    static const char *const keys[] = {"certificate", "private_key", "ticket_keys_file",
                                       "ciphersuites", "groups", NULL};
    cs_check_keys(s, tls, "tls", keys);
    cs_get_str(s, tls, "ticket_keys_file", &l->tls_ticket_keys);
    cs_get_str(s, tls, "ciphersuites", &l->tls_ciphersuites);
    cs_get_str(s, tls, "groups", &l->tls_groups);
    if (cs_get_str(s, tls, "certificate", &l->tls_certificate) == 0)
      cs_err(s, tls, "tls: missing 'certificate'");
    if (cs_get_str(s, tls, "private_key", &l->tls_private_key) == 0)
      cs_err(s, tls, "tls: missing 'private_key'");
  }
  cs_get_u32(s, m, "max_connections", 1, 10000000, &l->max_connections);
  node_t *cr = cs_get_node(s, m, "connect_rate", CFG_MAP);
  if (cr) {
    static const char *const keys[] = {"per_ip", "burst", "mode", NULL};
    cs_check_keys(s, cr, "connect_rate", keys);
    if (cs_get_rate(s, cr, "per_ip", &l->connect_rate.per_ip) == 0)
      cs_err(s, cr, "connect_rate: missing 'per_ip' (e.g. \"20/s\")");
    if (l->connect_rate.per_ip.period_ns) l->connect_rate.burst = cs_default_burst(&l->connect_rate.per_ip);
    cs_get_burst(s, cr, &l->connect_rate.burst);
    cs_get_mode(s, cr, &l->connect_rate.mode);
  }
  node_t *to = cs_get_node(s, m, "timeouts", CFG_MAP);
  if (to) {
    static const char *const keys[] = {"request_header", "idle", NULL};
    cs_check_keys(s, to, "listener timeouts", keys);
    cs_get_ms(s, to, "request_header", 1, &l->request_header_timeout_ms);
    cs_get_ms(s, to, "idle", 1, &l->idle_timeout_ms);
  }
  node_t *lim = cs_get_node(s, m, "limits", CFG_MAP);
  if (lim) {
    static const char *const keys[] = {"header_bytes", "headers", "h2_streams", "max_idle", NULL};
    cs_check_keys(s, lim, "limits", keys);
    cs_get_u32(s, lim, "header_bytes", 1024, 1048576, &l->header_bytes);
    cs_get_u32(s, lim, "headers", 1, 10000, &l->headers);
    cs_get_u32(s, lim, "h2_streams", 1, 1000000, &l->h2_streams);
    cs_get_u32(s, lim, "max_idle", 0, 100000000, &l->max_idle);
  }
  parse_proxy_protocol(s, m, l);
  /* Not the rate nor the burst: a reload that changes them converts the
   * table (sl_policies_attach) instead of starting it full. */
  l->connect_rate.identity = sl_hash_mix_str(sl_hash_mix_str(SL_HASH_SEED, "connect_rate"), l->name);
}

void cs_parse_listeners(struct cfg_schema *s, node_t *root) {
  struct sl_config *cfg = s->cfg;
  node_t *seq = cs_required_list(s, root, "listeners",
                              "no listeners defined: add at least one under 'listeners'");
  if (!seq) return;
  cfg->listeners = sl_arena_xcalloc(s->a, seq->n, sizeof(*cfg->listeners));
  for (size_t i = 0; i < seq->n; i++) {
    if (!cs_want(s, seq->kids[i], CFG_MAP, "listeners item")) continue;
    parse_listener(s, seq->kids[i], &cfg->listeners[cfg->n_listeners++]);
  }
  CFG_CHECK_UNIQUE(s, "listener", cfg->listeners, cfg->n_listeners, struct sl_listener_cfg);
}

/* The secret in |path|, the value of |key| of |section| (messages): one line
 * (surrounding blanks and a final newline ignored), at most 4096 bytes,
 * of RFC 6750 token68 characters when |token68|, else of any printable
 * ASCII. Returns it in the arena, or NULL after reporting an error at |v|. */
const char *cs_read_secret(struct cfg_schema *s, node_t *v, const char *section, const char *key,
                           const char *path, bool token68) {
  const char *what = token68 ? "token" : "secret";
  FILE *f = fopen(path, "r");
  if (!f) {
    cs_err(s, v, "%s: cannot read %s %s: %s", section, key, path, strerror(errno));
    return NULL;
  }
  char buf[4098];
  size_t n = fread(buf, 1, sizeof(buf) - 1, f);
  bool more = !feof(f) && fgetc(f) != EOF;
  fclose(f);
  buf[n] = '\0';
  char *p = buf, *end = buf + n;
  while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) p++;
  while (end > p && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r' || end[-1] == '\n')) end--;
  *end = '\0';
  if (more || end - p > 4096) {
    cs_err(s, v, "%s: %s %s: the %s is longer than 4096 bytes", section, key, path, what);
    return NULL;
  }
  if (p == end) {
    cs_err(s, v, "%s: %s %s is empty", section, key, path);
    return NULL;
  }
  for (const char *q = p; q < end; q++) {
    /* strchr finds the terminating NUL too: a NUL byte is refused here,
     * not left to cut the secret short. */
    bool ok = token68 ? *q != '\0' && (isalnum((unsigned char)*q) || strchr("-._~+/=", *q))
                      : *q > 0x20 && *q < 0x7f;
    if (!ok) {
      cs_err(s, v, "%s: %s %s: the %s may hold only %s (one line)", section, key, path, what,
             token68 ? "letters, digits and -._~+/=" : "printable ASCII without blanks");
      return NULL;
    }
  }
  return cs_sdup(s, p);
}

void cs_parse_admin(struct cfg_schema *s, node_t *root) {
  node_t *m = cs_get_node(s, root, "admin", CFG_MAP);
  if (!m) return;
  static const char *const keys[] = {"address", "metrics_address", "token_file", "readiness",
                                     NULL};
  cs_check_keys(s, m, "admin", keys);
  /* Loopback unless said otherwise: the admin API reloads, reveals the
   * configuration and explains policies. */
  if (cs_get_sockaddr(s, m, "address", &s->cfg->admin_address) == 0) {
    char err[128];
    if (sl_parse_sockaddr("127.0.0.1:9901", &s->cfg->admin_address, err, sizeof(err)) == 0)
      s->cfg->admin_address.text = "127.0.0.1:9901";
  }
  cs_get_sockaddr(s, m, "metrics_address", &s->cfg->admin_metrics_address);
  static const char *const readiness[] = {"listeners", "upstreams", NULL};
  int r;
  if (cs_get_enum(s, m, "readiness", readiness, &r) > 0)
    s->cfg->admin_readiness = (enum sl_readiness)r;
  node_t *tf;
  if (cs_get_text(s, m, "token_file", &tf) > 0) {
    s->cfg->admin_token_file = cs_sdup(s, tf->str);
    s->cfg->admin_token = cs_read_secret(s, tf, "admin", "token_file", tf->str, true);
  }
}

/* ---- upstreams ---------------------------------------------------- */

static const char *const UPSTREAM_KEYS[] = {"address",  "max_connections", "max_pending", "pipeline",
                                            "timeouts", "circuit_breaker", NULL};
static const char *const BREAKER_KEYS[] = {
    "enabled",  "consecutive_failures", "failure_ratio",    "window",        "min_requests",
    "slow_call", "open_for",            "half_open_probes", "recovery_ramp", "mode",
    NULL};

static void parse_breaker(struct cfg_schema *s, node_t *m, struct sl_upstream_cfg *u) {
  struct sl_breaker_cfg *b = &u->breaker;
  cs_check_keys(s, m, "circuit_breaker", BREAKER_KEYS);
  b->enabled = true;
  cs_get_bool(s, m, "enabled", &b->enabled);
  cs_get_u32(s, m, "consecutive_failures", 0, 1000000, &b->consecutive_failures);
  cs_get_double(s, m, "failure_ratio", 0, 1, &b->failure_ratio);
  cs_get_ms(s, m, "window", 1, &b->window_ms);
  cs_get_u32(s, m, "min_requests", 1, 100000000, &b->min_requests);
  cs_get_ms(s, m, "slow_call", 0, &b->slow_call_ms);
  cs_get_ms(s, m, "open_for", 1, &b->open_for_ms);
  cs_get_u32(s, m, "half_open_probes", 1, 100000, &b->half_open_probes);
  cs_get_ms(s, m, "recovery_ramp", 0, &b->recovery_ramp_ms);
  cs_get_mode(s, m, &b->mode);
  if (b->enabled && b->consecutive_failures == 0 && b->failure_ratio == 0)
    cs_err(s, m, "circuit_breaker: can never open: set consecutive_failures or failure_ratio");
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

static void parse_upstream(struct cfg_schema *s, node_t *key, node_t *m, struct sl_upstream_cfg *u) {
  u->mark = key->mark;
  u->name = cs_sdup(s, key->str);
  if (!cs_name_ok(key->str, false))
    cs_err(s, key, "upstream name '%s' is not valid (1 to 64 letters, digits, '_', '.', '-')", key->str);
  u->max_connections = 256;
  u->max_pending = 1024;
  u->pipeline = 1;
  u->connect_timeout_ms = 1000;
  u->response_timeout_ms = 10000;
  u->idle_timeout_ms = 60000;
  breaker_defaults(&u->breaker);
  cs_check_keys(s, m, "upstream", UPSTREAM_KEYS);
  int rc = cs_get_sockaddr(s, m, "address", &u->address);
  if (rc == 0) cs_err(s, m, "upstream '%s': missing 'address' (e.g. \"127.0.0.1:8080\")", u->name);
  if (rc > 0) {
    const struct sockaddr_in *sin = (const void *)&u->address.ss;
    if (sin->sin_port == 0) cs_err(s, cs_val(m, "address"), "address: port 0 is not a valid upstream port");
  }
  cs_get_u32(s, m, "max_connections", 1, 1000000, &u->max_connections);
  cs_get_u32(s, m, "max_pending", 0, 10000000, &u->max_pending);
  cs_get_u32(s, m, "pipeline", 1, SL_PIPELINE_MAX, &u->pipeline);
  node_t *to = cs_get_node(s, m, "timeouts", CFG_MAP);
  if (to) {
    static const char *const keys[] = {"connect", "response", "idle", NULL};
    cs_check_keys(s, to, "upstream timeouts", keys);
    cs_get_ms(s, to, "connect", 1, &u->connect_timeout_ms);
    cs_get_ms(s, to, "response", 1, &u->response_timeout_ms);
    cs_get_ms(s, to, "idle", 1, &u->idle_timeout_ms);
  }
  node_t *cb = cs_get_node(s, m, "circuit_breaker", CFG_MAP);
  if (cb) parse_breaker(s, cb, u);
  u->breaker.identity = breaker_identity(u);
}

void cs_parse_upstreams(struct cfg_schema *s, node_t *root) {
  struct sl_config *cfg = s->cfg;
  node_t *map = cs_get_node(s, root, "upstreams", CFG_MAP);
  if (!map) return;
  cfg->upstreams = sl_arena_xcalloc(s->a, (map->n ? map->n : 1), sizeof(*cfg->upstreams));
  for (size_t i = 0; i < map->n; i++) {
    node_t *k = map->kids[2 * i], *v = map->kids[2 * i + 1];
    if (v->kind == CFG_NULL) {
      cs_err(s, k, "upstream '%s': missing its settings (at least 'address')", k->str);
      continue;
    }
    if (!cs_want(s, v, CFG_MAP, k->str)) continue;
    parse_upstream(s, k, v, &cfg->upstreams[cfg->n_upstreams++]);
  }
}

/* ---- identify ----------------------------------------------------- */

static void compile_ua_regex(struct cfg_schema *s, node_t *v) {
  struct sl_identify_cfg *id = &s->cfg->identify;
  char e[256];
  size_t off = 0;
  unsigned group;
  char *posix = cfg_regex_to_posix(v->str, &group, e, sizeof(e), &off);
  if (!posix) {
    cs_err_at(s, v, cfg_scalar_col(v, off), "user_agent: %s", e);
    return;
  }
  if (!group) {
    cs_err(s, v, "user_agent: the pattern needs a group named 'class', e.g. "
              "\"^Homey/(?P<class>[A-Za-z]+)\"");
    free(posix);
    return;
  }
  regex_t *re = malloc(sizeof(*re));
  if (!re) abort();
  int rc = regcomp(re, posix, REG_EXTENDED);
  if (rc) {
    regerror(rc, re, e, sizeof(e));
    cs_err(s, v, "user_agent: invalid regular expression: %s", e);
    free(re);
    free(posix);
    return;
  }
  id->device_class_ua_regex = cs_sdup(s, v->str);
  id->device_class_ua_posix = cs_sdup(s, posix);
  id->device_class_ua_compiled = re;
  id->device_class_ua_group = group;
  id->device_class_header = NULL;
  free(posix);
}

static void parse_header_section(struct cfg_schema *s, node_t *m, const char *what, const char **out) {
  node_t *sec = cs_get_node(s, m, what, CFG_MAP);
  if (!sec) return;
  static const char *const keys[] = {"header", NULL};
  cs_check_keys(s, sec, what, keys);
  if (cs_get_header_name(s, sec, "header", out) == 0) cs_err(s, sec, "%s: missing 'header'", what);
}

void cs_parse_identify(struct cfg_schema *s, node_t *root) {
  struct sl_identify_cfg *id = &s->cfg->identify;
  id->ipv6_prefix = 128;
  id->device_class_header = "x-device-class";
  id->firmware_header = "x-firmware-version";
  id->device_id_header = "x-device-id";
  node_t *m = cs_get_node(s, root, "identify", CFG_MAP);
  if (!m) return;
  static const char *const keys[] = {"client_ip", "device_class", "firmware", "device_id", NULL};
  cs_check_keys(s, m, "identify", keys);

  node_t *ci = cs_get_node(s, m, "client_ip", CFG_MAP);
  if (ci) {
    static const char *const ckeys[] = {"trusted_proxies", "ipv6_prefix", NULL};
    cs_check_keys(s, ci, "client_ip", ckeys);
    get_cidrs(s, ci, "trusted_proxies", &id->trusted_proxies, &id->n_trusted_proxies);
    uint32_t p;
    if (cs_get_u32(s, ci, "ipv6_prefix", 1, 128, &p) > 0) id->ipv6_prefix = (uint8_t)p;
  }

  node_t *dc = cs_get_node(s, m, "device_class", CFG_MAP);
  if (dc) {
    static const char *const dkeys[] = {"header", "user_agent", NULL};
    cs_check_keys(s, dc, "device_class", dkeys);
    node_t *ua;
    int has_header = cs_get_header_name(s, dc, "header", &id->device_class_header);
    int has_ua = cs_get_text(s, dc, "user_agent", &ua);
    if (has_header > 0 && has_ua > 0)
      cs_err(s, dc, "device_class: give either 'header' or 'user_agent', not both");
    else if (has_ua > 0)
      compile_ua_regex(s, ua);
    else if (has_header == 0 && has_ua == 0)
      cs_err(s, dc, "device_class: missing 'header' or 'user_agent'");
  }
  parse_header_section(s, m, "firmware", &id->firmware_header);
  parse_header_section(s, m, "device_id", &id->device_id_header);
}

/* ---- blocklist ---------------------------------------------------- */

/* Keys every entry has, then its list's own (what it matches). */
#define BLOCK_COMMON "name", "class", "status", "reason", "expires", "mode", "body", "headers"
static const char *const FIRMWARE_KEYS[] = {BLOCK_COMMON, "versions", NULL};
static const char *const CLIENT_IP_KEYS[] = {BLOCK_COMMON, "cidrs", NULL};
static const char *const DEVICE_ID_KEYS[] = {BLOCK_COMMON, "ids", NULL};

/* Indexed by enum sl_block_list. */
static const char *const LIST_NAMES[] = {"firmware", "client_ip", "device_id"};
/* How messages call an entry ("blocklist entry" for firmware, as before
 * the other lists existed). */
static const char *const ENTRY_WHAT[] = {"blocklist entry", "client_ip entry", "device_id entry"};

/* The longest device id an entry may list (longer ids are a paste error:
 * real ones are serial numbers and UUIDs). */
#define BLOCK_ID_MAX 256

static void parse_versions(struct cfg_schema *s, node_t *m, struct sl_block_entry *b) {
  node_t *v;
  int rc = cs_get_text(s, m, "versions", &v);
  if (rc == 0) cs_err(s, m, "blocklist entry: missing 'versions' (e.g. \">=3.8.0-b3 <3.8.1\")");
  if (rc <= 0) return;
  char e[200] = "";
  size_t off = 0;
  if (sl_vrange_parse(v->str, &b->versions, e, sizeof(e), &off)) {
    memset(&b->versions, 0, sizeof(b->versions));
    cs_err_at(s, v, cfg_scalar_col(v, off), "versions: %s", e);
  } else {
    b->versions_text = cs_sdup(s, v->str);
  }
}

static void parse_cidrs(struct cfg_schema *s, node_t *m, struct sl_block_entry *b) {
  node_t *l = cs_required_list(s, m, "cidrs",
                               "client_ip entry: 'cidrs' needs at least one block (e.g. "
                               "[203.0.113.0/24, \"2001:db8:bad::/48\"])");
  if (!l) return;
  struct sl_cidr *c = sl_arena_xcalloc(s->a, l->n, sizeof(*c));
  const char **t = sl_arena_xcalloc(s->a, l->n, sizeof(*t));
  for (size_t i = 0; i < l->n; i++) {
    node_t *it = l->kids[i];
    char e[200];
    if (!cs_want(s, it, CFG_SCALAR, "cidrs item")) continue;
    if (strlen(it->str) != it->len || sl_parse_cidr(it->str, &c[b->n_cidrs], e, sizeof(e))) {
      cs_err(s, it, "cidrs: %s", strlen(it->str) != it->len ? "contains a NUL character" : e);
      continue;
    }
    t[b->n_cidrs++] = cs_sdup(s, it->str);
  }
  b->cidrs = c;
  b->cidr_texts = t;
}

static void parse_ids(struct cfg_schema *s, node_t *m, struct sl_block_entry *b) {
  node_t *l = cs_required_list(s, m, "ids",
                               "device_id entry: 'ids' needs at least one device id (e.g. "
                               "[dev-0001, dev-0002])");
  if (!l) return;
  const char **ids = sl_arena_xcalloc(s->a, l->n, sizeof(*ids));
  for (size_t i = 0; i < l->n; i++) {
    node_t *it = l->kids[i];
    if (!cs_want(s, it, CFG_SCALAR, "ids item")) continue;
    if (!it->len || strlen(it->str) != it->len || it->len > BLOCK_ID_MAX) {
      cs_err(s, it, "ids: a device id is 1 to %d bytes without NUL", BLOCK_ID_MAX);
      continue;
    }
    ids[b->n_ids++] = cs_sdup(s, it->str);
  }
  b->ids = ids;
}

static void parse_block_entry(struct cfg_schema *s, node_t *m, enum sl_block_list list, size_t idx,
                              struct sl_block_entry *b) {
  static const char *const *const keys[] = {FIRMWARE_KEYS, CLIENT_IP_KEYS, DEVICE_ID_KEYS};
  cs_check_keys(s, m, ENTRY_WHAT[list], keys[list]);
  b->mark = m->mark;
  b->list = list;
  b->status = 403;
  cs_get_name(s, m, "name", false, &b->name);
  cs_get_str(s, m, "class", &b->device_class);
  if (list == SL_BLOCK_FIRMWARE) parse_versions(s, m, b);
  else if (list == SL_BLOCK_CLIENT_IP) parse_cidrs(s, m, b);
  else parse_ids(s, m, b);
  cs_get_status(s, m, "status", &b->status);
  cs_get_str(s, m, "reason", &b->reason);
  node_t *v;
  if (cs_get_text(s, m, "expires", &v) > 0) {
    char e[200];
    if (cfg_parse_timestamp(v->str, &b->expires_unix, e, sizeof(e)))
      cs_err(s, v, "expires: %s", e);
    else if (b->expires_unix <= 0)
      cs_err(s, v, "expires: '%s' is not after 1970", v->str);
  }
  cs_get_mode(s, m, &b->mode);
  cs_parse_reject_extra(s, m, &b->extra);
  char label[128];
  if (b->name)
    snprintf(label, sizeof(label), "blocklist/%s/%s", LIST_NAMES[list], b->name);
  else
    snprintf(label, sizeof(label), "blocklist/%s/%zu", LIST_NAMES[list], idx);
  b->label = cs_sdup(s, label);
}

static void parse_block_list(struct cfg_schema *s, node_t *m, enum sl_block_list list,
                             struct sl_block_entry **out, size_t *n) {
  node_t *l = cs_get_node(s, m, LIST_NAMES[list], CFG_SEQ);
  if (!l || !l->n) return;
  char what[32];
  snprintf(what, sizeof(what), "%s item", LIST_NAMES[list]);
  *out = sl_arena_xcalloc(s->a, l->n, sizeof(**out));
  for (size_t i = 0; i < l->n; i++) {
    if (!cs_want(s, l->kids[i], CFG_MAP, what)) continue;
    /* counted before parsing, so that sl_config_free() releases a
     * firmware range even when this entry has another error */
    parse_block_entry(s, l->kids[i], list, i, &(*out)[(*n)++]);
  }
  cs_check_unique(s, ENTRY_WHAT[list], *out, *n, sizeof(**out),
                  offsetof(struct sl_block_entry, name), offsetof(struct sl_block_entry, mark));
}

void cs_parse_blocklist(struct cfg_schema *s, node_t *root) {
  struct sl_blocklist_cfg *bl = &s->cfg->blocklist;
  node_t *m = cs_get_node(s, root, "blocklist", CFG_MAP);
  if (!m) return;
  static const char *const keys[] = {"client_ip", "device_id", "firmware", "unknown", NULL};
  cs_check_keys(s, m, "blocklist", keys);
  parse_block_list(s, m, SL_BLOCK_CLIENT_IP, &bl->client_ip, &bl->n_client_ip);
  parse_block_list(s, m, SL_BLOCK_DEVICE_ID, &bl->device_id, &bl->n_device_id);
  parse_block_list(s, m, SL_BLOCK_FIRMWARE, &bl->firmware, &bl->n_firmware);
  static const char *const unknown[] = {"allow", "deny", NULL};
  int u;
  if (cs_get_enum(s, m, "unknown", unknown, &u) > 0) bl->unknown = (enum sl_unknown_firmware)u;
}

/* ---- reject, shaping ---------------------------------------------- */

void cs_parse_reject(struct cfg_schema *s, node_t *root) {
  struct sl_reject_cfg *rj = &s->cfg->reject;
  rj->retry_after_min_ms = 1000;
  rj->retry_after_max_ms = 120000;
  rj->jitter = 0.5;
  rj->spread = SL_SPREAD_BACKLOG;
  rj->body_json = true;
  node_t *m = cs_get_node(s, root, "reject", CFG_MAP);
  if (!m) return;
  static const char *const keys[] = {"retry_after", "body", NULL};
  cs_check_keys(s, m, "reject", keys);
  node_t *ra = cs_get_node(s, m, "retry_after", CFG_MAP);
  if (ra) {
    static const char *const rkeys[] = {"min", "max", "jitter", "spread", NULL};
    cs_check_keys(s, ra, "retry_after", rkeys);
    int a = cs_get_ms(s, ra, "min", 0, &rj->retry_after_min_ms);
    int b = cs_get_ms(s, ra, "max", 1, &rj->retry_after_max_ms);
    cs_get_double(s, ra, "jitter", 0, 1, &rj->jitter);
    static const char *const spreads[] = {"backlog", "window", NULL};
    int sp;
    if (cs_get_enum(s, ra, "spread", spreads, &sp) > 0) rj->spread = (enum sl_retry_spread)sp;
    if (a >= 0 && b >= 0 && rj->retry_after_min_ms > rj->retry_after_max_ms) {
      char mn[24], mx[24];
      cfg_format_duration(rj->retry_after_min_ms, mn, sizeof(mn));
      cfg_format_duration(rj->retry_after_max_ms, mx, sizeof(mx));
      cs_err(s, a > 0 ? cs_val(ra, "min") : cs_val(ra, "max"),
          "retry_after: min (%s) is greater than max (%s)", mn, mx);
    }
  }
  static const char *const bodies[] = {"json", "text", NULL};
  int bi;
  if (cs_get_enum(s, m, "body", bodies, &bi) > 0) rj->body_json = bi == 0;
}

