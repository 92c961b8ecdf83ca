/*
 * sluice — normalised configuration printer (sluice check --print, admin
 * GET /config).
 *
 * The output is the merged configuration with every default written out,
 * durations in canonical form ("2m", "250ms"), rates as written, strings
 * double-quoted, in block style and in a fixed key order, so that printing
 * what sl_config_load() made of a printed configuration gives the same
 * text again. `include:` is not printed: the drop-ins are already merged.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/config.h"
#include "sluice/policy.h"
#include "config_allow.h"
#include "config_global.h"
#include "config_int.h"
#include "config_print.h"
#include "reject_extra.h"
#include "../kinds/maintenance.h"

void cfg_print_indent(FILE *out, int n) { fprintf(out, "%*s", n, ""); }

void cfg_print_str(FILE *out, const char *s) {
  fputc('"', out);
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    switch (c) {
    case '"': fputs("\\\"", out); break;
    case '\\': fputs("\\\\", out); break;
    case '\n': fputs("\\n", out); break;
    case '\t': fputs("\\t", out); break;
    case '\r': fputs("\\r", out); break;
    default:
      if (c < 0x20 || c == 0x7f)
        fprintf(out, "\\x%02x", c);
      else
        fputc(c, out);
    }
  }
  fputc('"', out);
}

void cfg_print_kv_str(FILE *out, int ind, const char *key, const char *v) {
  cfg_print_indent(out, ind);
  fprintf(out, "%s: ", key);
  cfg_print_str(out, v);
  fputc('\n', out);
}

void cfg_print_kv_u64(FILE *out, int ind, const char *key, uint64_t v) {
  cfg_print_indent(out, ind);
  fprintf(out, "%s: %llu\n", key, (unsigned long long)v);
}

void cfg_print_kv_ms(FILE *out, int ind, const char *key, uint64_t ms) {
  char buf[32];
  cfg_format_duration(ms, buf, sizeof(buf));
  cfg_print_indent(out, ind);
  fprintf(out, "%s: %s\n", key, buf);
}

/* The shortest decimal that reads back as the same double. */
static void kv_double(FILE *out, int ind, const char *key, double d) {
  char buf[40];
  for (int prec = 1; prec <= 17; prec++) {
    snprintf(buf, sizeof(buf), "%.*g", prec, d);
    if (strtod(buf, NULL) == d) break;
  }
  cfg_print_indent(out, ind);
  fprintf(out, "%s: %s\n", key, buf);
}

void cfg_print_kv_raw(FILE *out, int ind, const char *key, const char *v) {
  cfg_print_indent(out, ind);
  fprintf(out, "%s: %s\n", key, v);
}

void cfg_print_kv_mode(FILE *out, int ind, enum sl_mode m) {
  if (m == SL_MODE_ENFORCE) cfg_print_kv_raw(out, ind, "mode", "enforce");
  if (m == SL_MODE_SHADOW) cfg_print_kv_raw(out, ind, "mode", "shadow");
}

static bool match_empty(const struct sl_route_match *m) {
  return !m->path_prefix && !m->method && !m->host && !m->listener && !m->n_headers &&
         m->websocket < 0;
}

static void print_match(FILE *out, int ind, const struct sl_route_match *m) {
  if (match_empty(m)) return;
  cfg_print_indent(out, ind);
  fputs("match:\n", out);
  ind += 2;
  if (m->path_prefix) cfg_print_kv_str(out, ind, "path_prefix", m->path_prefix);
  if (m->method) cfg_print_kv_str(out, ind, "method", m->method);
  if (m->host) cfg_print_kv_str(out, ind, "host", m->host);
  if (m->n_headers) {
    cfg_print_indent(out, ind);
    fputs("header:\n", out);
    for (size_t i = 0; i < m->n_headers; i++) {
      cfg_print_indent(out, ind + 2);
      cfg_print_str(out, m->headers[i].name);
      fputs(": ", out);
      if (m->headers[i].value)
        cfg_print_str(out, m->headers[i].value);
      else
        fputs("null", out);
      fputc('\n', out);
    }
  }
  if (m->listener) cfg_print_kv_str(out, ind, "listener", m->listener);
  if (m->websocket >= 0) cfg_print_kv_raw(out, ind, "websocket", m->websocket ? "true" : "false");
}

/* "key:" and one "- a.b.c.d/n" line per block, at indent |ind|. */
static void print_cidrs(FILE *out, int ind, const char *key, const struct sl_cidr *cs, size_t n) {
  cfg_print_indent(out, ind);
  fprintf(out, "%s:\n", key);
  for (size_t i = 0; i < n; i++) {
    char addr[64], buf[80];
    inet_ntop(cs[i].family, cs[i].addr, addr, sizeof(addr));
    snprintf(buf, sizeof(buf), "%s/%u", addr, cs[i].prefix);
    cfg_print_indent(out, ind + 2);
    fputs("- ", out);
    cfg_print_str(out, buf);
    fputc('\n', out);
  }
}

static void print_listeners(FILE *out, const struct sl_config *cfg) {
  fputs("listeners:\n", out);
  for (size_t i = 0; i < cfg->n_listeners; i++) {
    const struct sl_listener_cfg *l = &cfg->listeners[i];
    cfg_print_indent(out, 2);
    fputs("- ", out);
    cfg_print_kv_str(out, 0, "name", l->name);
    cfg_print_kv_str(out, 4, "address", l->address.text);
    if (l->tls_certificate) {
      cfg_print_indent(out, 4);
      fputs("tls:\n", out);
      cfg_print_kv_str(out, 6, "certificate", l->tls_certificate);
      cfg_print_kv_str(out, 6, "private_key", l->tls_private_key);
      if (l->tls_ticket_keys) cfg_print_kv_str(out, 6, "ticket_keys_file", l->tls_ticket_keys);
      if (l->tls_ciphersuites) cfg_print_kv_str(out, 6, "ciphersuites", l->tls_ciphersuites);
      if (l->tls_groups) cfg_print_kv_str(out, 6, "groups", l->tls_groups);
    }
    cfg_print_kv_u64(out, 4, "max_connections", l->max_connections);
    if (l->connect_rate.per_ip.period_ns) {
      cfg_print_indent(out, 4);
      fputs("connect_rate:\n", out);
      cfg_print_kv_str(out, 6, "per_ip", l->connect_rate.per_ip.text);
      cfg_print_kv_u64(out, 6, "burst", l->connect_rate.burst);
      cfg_print_kv_mode(out, 6, l->connect_rate.mode);
    }
    cfg_print_indent(out, 4);
    fputs("timeouts:\n", out);
    cfg_print_kv_ms(out, 6, "request_header", l->request_header_timeout_ms);
    cfg_print_kv_ms(out, 6, "idle", l->idle_timeout_ms);
    cfg_print_indent(out, 4);
    fputs("limits:\n", out);
    cfg_print_kv_u64(out, 6, "header_bytes", l->header_bytes);
    cfg_print_kv_u64(out, 6, "headers", l->headers);
    cfg_print_kv_u64(out, 6, "h2_streams", l->h2_streams);
    cfg_print_kv_u64(out, 6, "max_idle", l->max_idle);
    if (l->proxy_protocol.n_trusted) {
      cfg_print_indent(out, 4);
      fputs("proxy_protocol:\n", out);
      print_cidrs(out, 6, "trusted", l->proxy_protocol.trusted, l->proxy_protocol.n_trusted);
      cfg_print_kv_ms(out, 6, "timeout", l->proxy_protocol.timeout_ms);
    }
  }
}

static void print_upstreams(FILE *out, const struct sl_config *cfg) {
  if (!cfg->n_upstreams) {
    fputs("upstreams: {}\n", out);
    return;
  }
  fputs("upstreams:\n", out);
  for (size_t i = 0; i < cfg->n_upstreams; i++) {
    const struct sl_upstream_cfg *u = &cfg->upstreams[i];
    cfg_print_indent(out, 2);
    cfg_print_str(out, u->name);
    fputs(":\n", out);
    cfg_print_kv_str(out, 4, "address", u->address.text);
    cfg_print_kv_u64(out, 4, "max_connections", u->max_connections);
    cfg_print_kv_u64(out, 4, "max_pending", u->max_pending);
    cfg_print_kv_u64(out, 4, "pipeline", u->pipeline);
    cfg_print_indent(out, 4);
    fputs("timeouts:\n", out);
    cfg_print_kv_ms(out, 6, "connect", u->connect_timeout_ms);
    cfg_print_kv_ms(out, 6, "response", u->response_timeout_ms);
    cfg_print_kv_ms(out, 6, "idle", u->idle_timeout_ms);
    const struct sl_breaker_cfg *b = &u->breaker;
    if (b->enabled) {
      cfg_print_indent(out, 4);
      fputs("circuit_breaker:\n", out);
      cfg_print_kv_u64(out, 6, "consecutive_failures", b->consecutive_failures);
      kv_double(out, 6, "failure_ratio", b->failure_ratio);
      cfg_print_kv_ms(out, 6, "window", b->window_ms);
      cfg_print_kv_u64(out, 6, "min_requests", b->min_requests);
      cfg_print_kv_ms(out, 6, "slow_call", b->slow_call_ms);
      cfg_print_kv_ms(out, 6, "open_for", b->open_for_ms);
      cfg_print_kv_u64(out, 6, "half_open_probes", b->half_open_probes);
      cfg_print_kv_ms(out, 6, "recovery_ramp", b->recovery_ramp_ms);
      cfg_print_kv_mode(out, 6, b->mode);
    }
  }
}

static void print_identify(FILE *out, const struct sl_identify_cfg *id) {
  fputs("identify:\n", out);
  cfg_print_indent(out, 2);
  fputs("client_ip:\n", out);
  if (id->n_trusted_proxies) {
    print_cidrs(out, 4, "trusted_proxies", id->trusted_proxies, id->n_trusted_proxies);
  } else {
    cfg_print_indent(out, 4);
    fputs("trusted_proxies: []\n", out);
  }
  cfg_print_kv_u64(out, 4, "ipv6_prefix", id->ipv6_prefix);
  cfg_print_indent(out, 2);
  fputs("device_class:\n", out);
  if (id->device_class_ua_regex)
    cfg_print_kv_str(out, 4, "user_agent", id->device_class_ua_regex);
  else
    cfg_print_kv_str(out, 4, "header", id->device_class_header);
  cfg_print_indent(out, 2);
  fputs("firmware:\n", out);
  cfg_print_kv_str(out, 4, "header", id->firmware_header);
  cfg_print_indent(out, 2);
  fputs("device_id:\n", out);
  cfg_print_kv_str(out, 4, "header", id->device_id_header);
}

static const char *const KEY_NAMES[] = {"client_ip", "device_class", "device_id", "route"};
static const char *const PRIO_NAMES[] = {"normal", "low", "high"};

static void print_rate_limit(FILE *out, const struct sl_rate_limit_cfg *rl) {
  cfg_print_indent(out, 6);
  fputs("- ", out);
  cfg_print_kv_str(out, 0, "name", rl->name);
  cfg_print_kv_raw(out, 8, "key", KEY_NAMES[rl->key]);
  cfg_print_kv_str(out, 8, "rate", rl->rate.text);
  cfg_print_kv_u64(out, 8, "burst", rl->burst);
  if (rl->max_keys) cfg_print_kv_u64(out, 8, "max_keys", rl->max_keys);
  static const char *const MISSING[] = {"skip", "deny", "shared"};
  if (rl->missing_key) cfg_print_kv_raw(out, 8, "missing_key", MISSING[rl->missing_key]);
  if (rl->new_keys.rate.period_ns) {
    cfg_print_indent(out, 8);
    fputs("new_keys:\n", out);
    cfg_print_kv_raw(out, 10, "per", "client_ip");
    cfg_print_kv_str(out, 10, "rate", rl->new_keys.rate.text);
    cfg_print_kv_u64(out, 10, "burst", rl->new_keys.burst);
    if (rl->new_keys.max_keys) cfg_print_kv_u64(out, 10, "max_keys", rl->new_keys.max_keys);
  }
  if (rl->scope == SL_SCOPE_GLOBAL) cfg_print_kv_raw(out, 8, "scope", "global");
  if (rl->n_overrides) {
    cfg_print_indent(out, 8);
    fputs("override:\n", out);
    for (size_t i = 0; i < rl->n_overrides; i++) {
      const struct sl_rate_override *o = &rl->overrides[i];
      cfg_print_indent(out, 10);
      cfg_print_str(out, o->match);
      fputs(":\n", out);
      cfg_print_kv_str(out, 12, "rate", o->rate.text);
      if (o->burst) cfg_print_kv_u64(out, 12, "burst", o->burst);
    }
  }
  cfg_print_kv_mode(out, 8, rl->mode);
}

static void print_routes(FILE *out, const struct sl_config *cfg) {
  fputs("routes:\n", out);
  for (size_t i = 0; i < cfg->n_routes; i++) {
    const struct sl_route_cfg *r = &cfg->routes[i];
    cfg_print_indent(out, 2);
    fputs("- ", out);
    cfg_print_kv_str(out, 0, "name", r->name);
    print_match(out, 4, &r->match);
    cfg_print_kv_str(out, 4, "upstream", r->upstream->name);
    if (r->n_rate_limits) {
      cfg_print_indent(out, 4);
      fputs("rate_limits:\n", out);
      for (size_t j = 0; j < r->n_rate_limits; j++) print_rate_limit(out, &r->rate_limits[j]);
    }
    /* In kinds.def order (not the order they run in); a kind without a
     * printer is printed where it is configured (the breaker). */
    for (size_t k = 0; k < sl_n_policy_kinds; k++)
      for (size_t j = 0; j < r->n_policies; j++)
        if (r->policies[j].kind_index == k && r->policies[j].kind->print)
          r->policies[j].kind->print(out, 4, &r->policies[j]);
    cfg_print_kv_raw(out, 4, "priority", PRIO_NAMES[r->priority]);
    cfg_print_kv_ms(out, 4, "idle_timeout", r->idle_timeout_ms);
  }
}

/* A flow list of quoted strings: `key: ["a", "b"]`. */
static void print_str_list(FILE *out, int ind, const char *key, const char *const *v, size_t n) {
  cfg_print_indent(out, ind);
  fprintf(out, "%s: [", key);
  for (size_t i = 0; i < n; i++) {
    if (i) fputs(", ", out);
    cfg_print_str(out, v[i]);
  }
  fputs("]\n", out);
}

static void print_block_entries(FILE *out, const char *list, const struct sl_block_entry *e,
                                size_t n) {
  cfg_print_indent(out, 2);
  fprintf(out, "%s:%s\n", list, n ? "" : " []");
  for (size_t i = 0; i < n; i++) {
    const struct sl_block_entry *b = &e[i];
    cfg_print_indent(out, 4);
    fputs("- ", out);
    if (b->list == SL_BLOCK_FIRMWARE) cfg_print_kv_str(out, 0, "versions", b->versions_text);
    else if (b->list == SL_BLOCK_CLIENT_IP)
      print_str_list(out, 0, "cidrs", b->cidr_texts, b->n_cidrs);
    else
      print_str_list(out, 0, "ids", b->ids, b->n_ids);
    if (b->name) cfg_print_kv_str(out, 6, "name", b->name);
    if (b->device_class) cfg_print_kv_str(out, 6, "class", b->device_class);
    cfg_print_kv_u64(out, 6, "status", b->status);
    if (b->reason) cfg_print_kv_str(out, 6, "reason", b->reason);
    if (b->expires_unix) {
      char ts[32];
      cfg_format_timestamp(b->expires_unix, ts, sizeof(ts));
      cfg_print_kv_str(out, 6, "expires", ts);
    }
    cfg_print_kv_mode(out, 6, b->mode);
    cfg_print_reject_extra(out, 6, &b->extra);
  }
}

static void print_blocklist(FILE *out, const struct sl_blocklist_cfg *bl) {
  fputs("blocklist:\n", out);
  /* The address and device lists only when used: printed files of
   * configurations without them stay as they were. */
  if (bl->n_client_ip) print_block_entries(out, "client_ip", bl->client_ip, bl->n_client_ip);
  if (bl->n_device_id) print_block_entries(out, "device_id", bl->device_id, bl->n_device_id);
  print_block_entries(out, "firmware", bl->firmware, bl->n_firmware);
  cfg_print_kv_raw(out, 2, "unknown", bl->unknown == SL_UNKNOWN_DENY ? "deny" : "allow");
}

static void print_shaping(FILE *out, const struct sl_config *cfg) {
  if (!cfg->n_shaping) {
    fputs("shaping: []\n", out);
    return;
  }
  fputs("shaping:\n", out);
  for (size_t i = 0; i < cfg->n_shaping; i++) {
    const struct sl_shaping_rule *r = &cfg->shaping[i];
    bool empty = match_empty(&r->match) && !r->delay_fixed_ms && !r->delay_jitter_ms &&
                 !(r->abort_percent > 0) && !r->rate_cap.period_ns && !r->bw_down.bytes_per_s &&
                 !r->bw_up.bytes_per_s && !r->mode;
    if (r->name) {
      fputs("  - ", out);
      cfg_print_kv_str(out, 0, "name", r->name);
    } else {
      fputs(empty ? "  - {}\n" : "  -\n", out); /* the mapping starts on the next line */
    }
    print_match(out, 4, &r->match);
    if (r->delay_fixed_ms || r->delay_jitter_ms) {
      cfg_print_indent(out, 4);
      fputs("delay:\n", out);
      cfg_print_kv_ms(out, 6, "fixed", r->delay_fixed_ms);
      cfg_print_kv_ms(out, 6, "jitter", r->delay_jitter_ms);
    }
    if (r->abort_percent > 0) {
      cfg_print_indent(out, 4);
      fputs("abort:\n", out);
      kv_double(out, 6, "percent", r->abort_percent);
      cfg_print_kv_u64(out, 6, "status", r->abort_status);
    }
    if (r->rate_cap.period_ns) cfg_print_kv_str(out, 4, "rate", r->rate_cap.text);
    if (r->bw_down.bytes_per_s || r->bw_up.bytes_per_s) {
      cfg_print_indent(out, 4);
      fputs("bandwidth:\n", out);
      if (r->bw_down.bytes_per_s) cfg_print_kv_str(out, 6, "down", r->bw_down.text);
      if (r->bw_up.bytes_per_s) cfg_print_kv_str(out, 6, "up", r->bw_up.text);
    }
    cfg_print_kv_mode(out, 4, r->mode);
  }
}

int sl_config_print(const struct sl_config *cfg, FILE *out) {
  print_listeners(out, cfg);
  if (cfg->admin_address.len) {
    fputs("admin:\n", out);
    cfg_print_kv_str(out, 2, "address", cfg->admin_address.text);
    if (cfg->admin_metrics_address.len)
      cfg_print_kv_str(out, 2, "metrics_address", cfg->admin_metrics_address.text);
    /* the file, never the token */
    if (cfg->admin_token_file) cfg_print_kv_str(out, 2, "token_file", cfg->admin_token_file);
    if (cfg->admin_readiness == SL_READINESS_UPSTREAMS)
      cfg_print_kv_raw(out, 2, "readiness", "upstreams");
  }
  print_upstreams(out, cfg);
  print_identify(out, &cfg->identify);
  sl_maintenance_print_top(out, cfg);
  cfg_print_global(out, cfg);
  print_routes(out, cfg);
  print_blocklist(out, &cfg->blocklist);
  const struct sl_reject_cfg *rj = &cfg->reject;
  fputs("reject:\n  retry_after:\n", out);
  cfg_print_kv_ms(out, 4, "min", rj->retry_after_min_ms);
  cfg_print_kv_ms(out, 4, "max", rj->retry_after_max_ms);
  kv_double(out, 4, "jitter", rj->jitter);
  cfg_print_kv_raw(out, 4, "spread", rj->spread == SL_SPREAD_WINDOW ? "window" : "backlog");
  cfg_print_kv_raw(out, 2, "body", rj->body_json ? "json" : "text");
  print_shaping(out, cfg);
  cfg_print_allow(out, cfg);
  cfg_print_kv_raw(out, 0, "mode", cfg->mode == SL_MODE_SHADOW ? "shadow" : "enforce");
  cfg_print_kv_ms(out, 0, "drain_timeout", cfg->drain_timeout_ms);
  cfg_print_kv_ms(out, 0, "drain_spread", cfg->drain_spread_ms);
  static const char *const logs[] = {"off", "on", "sampled"};
  cfg_print_kv_raw(out, 0, "access_log", logs[cfg->access_log]);
  cfg_print_kv_raw(out, 0, "access_log_query",
                   cfg->access_log_query == SL_ACCESS_QUERY_FULL ? "full" : "redact");
  cfg_print_kv_u64(out, 0, "rejection_log_per_sec", cfg->rejection_log_per_sec);
  return ferror(out) ? -1 : 0;
}

/* ---- expiry ------------------------------------------------------- */

/* "2 days", "1 hour", "40 seconds": the largest unit that fits. */
static void format_span(int64_t s, char *buf, size_t len) {
  static const struct {
    int64_t secs;
    const char *unit;
  } units[] = {{86400, "day"}, {3600, "hour"}, {60, "minute"}, {1, "second"}};
  size_t u = 0;
  while (u + 1 < sizeof(units) / sizeof(units[0]) && s < units[u].secs) u++;
  long long n = (long long)(s / units[u].secs);
  snprintf(buf, len, "%lld %s%s", n, units[u].unit, n == 1 ? "" : "s");
}

void sl_config_describe_expiry(const struct sl_block_entry *e, int64_t now_unix, char *buf,
                               size_t len) {
  if (!len) return;
  buf[0] = '\0';
  if (!e->expires_unix) return;
  char who[192], ts[32], span[48];
  if (e->name)
    snprintf(who, sizeof(who), "'%s'", e->name);
  else if (e->list == SL_BLOCK_CLIENT_IP)
    snprintf(who, sizeof(who), "for addresses '%s'%s", e->n_cidrs ? e->cidr_texts[0] : "",
             e->n_cidrs > 1 ? " and more" : "");
  else if (e->list == SL_BLOCK_DEVICE_ID)
    snprintf(who, sizeof(who), "for device ids '%s'%s", e->n_ids ? e->ids[0] : "",
             e->n_ids > 1 ? " and more" : "");
  else if (e->device_class)
    snprintf(who, sizeof(who), "for versions '%s' of class '%s'", e->versions_text,
             e->device_class);
  else
    snprintf(who, sizeof(who), "for versions '%s'", e->versions_text);
  cfg_format_timestamp(e->expires_unix, ts, sizeof(ts));
  if (e->expires_unix <= now_unix) {
    format_span(now_unix - e->expires_unix, span, sizeof(span));
    snprintf(buf, len, "blocklist entry %s expired at %s (%s ago): it no longer blocks anything",
             who, ts, span);
  } else {
    format_span(e->expires_unix - now_unix, span, sizeof(span));
    snprintf(buf, len, "blocklist entry %s expires at %s (in %s)", who, ts, span);
  }
}
