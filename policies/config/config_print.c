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
#include "config_int.h"

static void indent(FILE *out, int n) { fprintf(out, "%*s", n, ""); }

static void put_str(FILE *out, const char *s) {
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

static void kv_str(FILE *out, int ind, const char *key, const char *v) {
  indent(out, ind);
  fprintf(out, "%s: ", key);
  put_str(out, v);
  fputc('\n', out);
}

static void kv_u64(FILE *out, int ind, const char *key, uint64_t v) {
  indent(out, ind);
  fprintf(out, "%s: %llu\n", key, (unsigned long long)v);
}

static void kv_ms(FILE *out, int ind, const char *key, uint64_t ms) {
  char buf[32];
  cfg_format_duration(ms, buf, sizeof(buf));
  indent(out, ind);
  fprintf(out, "%s: %s\n", key, buf);
}

/* The shortest decimal that reads back as the same double. */
static void kv_double(FILE *out, int ind, const char *key, double d) {
  char buf[40];
  for (int prec = 1; prec <= 17; prec++) {
    snprintf(buf, sizeof(buf), "%.*g", prec, d);
    if (strtod(buf, NULL) == d) break;
  }
  indent(out, ind);
  fprintf(out, "%s: %s\n", key, buf);
}

static void kv_raw(FILE *out, int ind, const char *key, const char *v) {
  indent(out, ind);
  fprintf(out, "%s: %s\n", key, v);
}

static void kv_mode(FILE *out, int ind, enum sl_mode m) {
  if (m == SL_MODE_ENFORCE) kv_raw(out, ind, "mode", "enforce");
  if (m == SL_MODE_SHADOW) kv_raw(out, ind, "mode", "shadow");
}

static bool match_empty(const struct sl_route_match *m) {
  return !m->path_prefix && !m->method && !m->host && !m->listener && !m->n_headers &&
         m->websocket < 0;
}

static void print_match(FILE *out, int ind, const struct sl_route_match *m) {
  if (match_empty(m)) return;
  indent(out, ind);
  fputs("match:\n", out);
  ind += 2;
  if (m->path_prefix) kv_str(out, ind, "path_prefix", m->path_prefix);
  if (m->method) kv_str(out, ind, "method", m->method);
  if (m->host) kv_str(out, ind, "host", m->host);
  if (m->n_headers) {
    indent(out, ind);
    fputs("header:\n", out);
    for (size_t i = 0; i < m->n_headers; i++) {
      indent(out, ind + 2);
      put_str(out, m->headers[i].name);
      fputs(": ", out);
      if (m->headers[i].value)
        put_str(out, m->headers[i].value);
      else
        fputs("null", out);
      fputc('\n', out);
    }
  }
  if (m->listener) kv_str(out, ind, "listener", m->listener);
  if (m->websocket >= 0) kv_raw(out, ind, "websocket", m->websocket ? "true" : "false");
}

static void print_listeners(FILE *out, const struct sl_config *cfg) {
  fputs("listeners:\n", out);
  for (size_t i = 0; i < cfg->n_listeners; i++) {
    const struct sl_listener_cfg *l = &cfg->listeners[i];
    indent(out, 2);
    fputs("- ", out);
    kv_str(out, 0, "name", l->name);
    kv_str(out, 4, "address", l->address.text);
    if (l->tls_certificate) {
      indent(out, 4);
      fputs("tls:\n", out);
      kv_str(out, 6, "certificate", l->tls_certificate);
      kv_str(out, 6, "private_key", l->tls_private_key);
    }
    kv_u64(out, 4, "max_connections", l->max_connections);
    if (l->connect_rate.per_ip.period_ns) {
      indent(out, 4);
      fputs("connect_rate:\n", out);
      kv_str(out, 6, "per_ip", l->connect_rate.per_ip.text);
      kv_u64(out, 6, "burst", l->connect_rate.burst);
      kv_mode(out, 6, l->connect_rate.mode);
    }
    indent(out, 4);
    fputs("timeouts:\n", out);
    kv_ms(out, 6, "request_header", l->request_header_timeout_ms);
    kv_ms(out, 6, "idle", l->idle_timeout_ms);
    indent(out, 4);
    fputs("limits:\n", out);
    kv_u64(out, 6, "header_bytes", l->header_bytes);
    kv_u64(out, 6, "headers", l->headers);
    kv_u64(out, 6, "h2_streams", l->h2_streams);
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
    indent(out, 2);
    put_str(out, u->name);
    fputs(":\n", out);
    kv_str(out, 4, "address", u->address.text);
    kv_u64(out, 4, "max_connections", u->max_connections);
    kv_u64(out, 4, "max_pending", u->max_pending);
    kv_u64(out, 4, "pipeline", u->pipeline);
    indent(out, 4);
    fputs("timeouts:\n", out);
    kv_ms(out, 6, "connect", u->connect_timeout_ms);
    kv_ms(out, 6, "response", u->response_timeout_ms);
    kv_ms(out, 6, "idle", u->idle_timeout_ms);
    const struct sl_breaker_cfg *b = &u->breaker;
    if (b->enabled) {
      indent(out, 4);
      fputs("circuit_breaker:\n", out);
      kv_u64(out, 6, "consecutive_failures", b->consecutive_failures);
      kv_double(out, 6, "failure_ratio", b->failure_ratio);
      kv_ms(out, 6, "window", b->window_ms);
      kv_u64(out, 6, "min_requests", b->min_requests);
      kv_ms(out, 6, "slow_call", b->slow_call_ms);
      kv_ms(out, 6, "open_for", b->open_for_ms);
      kv_u64(out, 6, "half_open_probes", b->half_open_probes);
      kv_ms(out, 6, "recovery_ramp", b->recovery_ramp_ms);
      kv_mode(out, 6, b->mode);
    }
  }
}

static void print_identify(FILE *out, const struct sl_identify_cfg *id) {
  fputs("identify:\n", out);
  indent(out, 2);
  fputs("client_ip:\n", out);
  if (id->n_trusted_proxies) {
    indent(out, 4);
    fputs("trusted_proxies:\n", out);
    for (size_t i = 0; i < id->n_trusted_proxies; i++) {
      const struct sl_cidr *c = &id->trusted_proxies[i];
      char addr[64], buf[80];
      inet_ntop(c->family, c->addr, addr, sizeof(addr));
      snprintf(buf, sizeof(buf), "%s/%u", addr, c->prefix);
      indent(out, 6);
      fputs("- ", out);
      put_str(out, buf);
      fputc('\n', out);
    }
  } else {
    indent(out, 4);
    fputs("trusted_proxies: []\n", out);
  }
  kv_u64(out, 4, "ipv6_prefix", id->ipv6_prefix);
  indent(out, 2);
  fputs("device_class:\n", out);
  if (id->device_class_ua_regex)
    kv_str(out, 4, "user_agent", id->device_class_ua_regex);
  else
    kv_str(out, 4, "header", id->device_class_header);
  indent(out, 2);
  fputs("firmware:\n", out);
  kv_str(out, 4, "header", id->firmware_header);
  indent(out, 2);
  fputs("device_id:\n", out);
  kv_str(out, 4, "header", id->device_id_header);
}

static const char *const KEY_NAMES[] = {"client_ip", "device_class", "device_id", "route"};
static const char *const PRIO_NAMES[] = {"normal", "low", "high"};

static void print_rate_limit(FILE *out, const struct sl_rate_limit_cfg *rl) {
  indent(out, 6);
  fputs("- ", out);
  kv_str(out, 0, "name", rl->name);
  kv_raw(out, 8, "key", KEY_NAMES[rl->key]);
  kv_str(out, 8, "rate", rl->rate.text);
  kv_u64(out, 8, "burst", rl->burst);
  if (rl->max_keys) kv_u64(out, 8, "max_keys", rl->max_keys);
  if (rl->n_overrides) {
    indent(out, 8);
    fputs("override:\n", out);
    for (size_t i = 0; i < rl->n_overrides; i++) {
      const struct sl_rate_override *o = &rl->overrides[i];
      indent(out, 10);
      put_str(out, o->match);
      fputs(":\n", out);
      kv_str(out, 12, "rate", o->rate.text);
      if (o->burst) kv_u64(out, 12, "burst", o->burst);
    }
  }
  kv_mode(out, 8, rl->mode);
}

static void print_routes(FILE *out, const struct sl_config *cfg) {
  fputs("routes:\n", out);
  for (size_t i = 0; i < cfg->n_routes; i++) {
    const struct sl_route_cfg *r = &cfg->routes[i];
    indent(out, 2);
    fputs("- ", out);
    kv_str(out, 0, "name", r->name);
    print_match(out, 4, &r->match);
    kv_str(out, 4, "upstream", r->upstream->name);
    if (r->n_rate_limits) {
      indent(out, 4);
      fputs("rate_limits:\n", out);
      for (size_t j = 0; j < r->n_rate_limits; j++) print_rate_limit(out, &r->rate_limits[j]);
    }
    if (r->concurrency.max) {
      indent(out, 4);
      fputs("concurrency:\n", out);
      kv_u64(out, 6, "max", r->concurrency.max);
      kv_mode(out, 6, r->concurrency.mode);
    }
    kv_raw(out, 4, "priority", PRIO_NAMES[r->priority]);
    kv_ms(out, 4, "idle_timeout", r->idle_timeout_ms);
  }
}

static void print_blocklist(FILE *out, const struct sl_blocklist_cfg *bl) {
  fputs("blocklist:\n", out);
  if (!bl->n_firmware) {
    indent(out, 2);
    fputs("firmware: []\n", out);
  } else {
    indent(out, 2);
    fputs("firmware:\n", out);
  }
  for (size_t i = 0; i < bl->n_firmware; i++) {
    const struct sl_block_entry *b = &bl->firmware[i];
    indent(out, 4);
    fputs("- ", out);
    kv_str(out, 0, "versions", b->versions_text);
    if (b->name) kv_str(out, 6, "name", b->name);
    if (b->device_class) kv_str(out, 6, "class", b->device_class);
    kv_u64(out, 6, "status", b->status);
    if (b->reason) kv_str(out, 6, "reason", b->reason);
    if (b->expires_unix) {
      char ts[32];
      cfg_format_timestamp(b->expires_unix, ts, sizeof(ts));
      kv_str(out, 6, "expires", ts);
    }
    kv_mode(out, 6, b->mode);
  }
  kv_raw(out, 2, "unknown", bl->unknown == SL_UNKNOWN_DENY ? "deny" : "allow");
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
                 !(r->abort_percent > 0) && !r->rate_cap.period_ns && !r->mode;
    if (r->name) {
      fputs("  - ", out);
      kv_str(out, 0, "name", r->name);
    } else {
      fputs(empty ? "  - {}\n" : "  -\n", out); /* the mapping starts on the next line */
    }
    print_match(out, 4, &r->match);
    if (r->delay_fixed_ms || r->delay_jitter_ms) {
      indent(out, 4);
      fputs("delay:\n", out);
      kv_ms(out, 6, "fixed", r->delay_fixed_ms);
      kv_ms(out, 6, "jitter", r->delay_jitter_ms);
    }
    if (r->abort_percent > 0) {
      indent(out, 4);
      fputs("abort:\n", out);
      kv_double(out, 6, "percent", r->abort_percent);
      kv_u64(out, 6, "status", r->abort_status);
    }
    if (r->rate_cap.period_ns) kv_str(out, 4, "rate", r->rate_cap.text);
    kv_mode(out, 4, r->mode);
  }
}

int sl_config_print(const struct sl_config *cfg, FILE *out) {
  print_listeners(out, cfg);
  if (cfg->admin_address.len) {
    fputs("admin:\n", out);
    kv_str(out, 2, "address", cfg->admin_address.text);
  }
  print_upstreams(out, cfg);
  print_identify(out, &cfg->identify);
  print_routes(out, cfg);
  print_blocklist(out, &cfg->blocklist);
  const struct sl_reject_cfg *rj = &cfg->reject;
  fputs("reject:\n  retry_after:\n", out);
  kv_ms(out, 4, "min", rj->retry_after_min_ms);
  kv_ms(out, 4, "max", rj->retry_after_max_ms);
  kv_double(out, 4, "jitter", rj->jitter);
  kv_raw(out, 2, "body", rj->body_json ? "json" : "text");
  print_shaping(out, cfg);
  kv_raw(out, 0, "mode", cfg->mode == SL_MODE_SHADOW ? "shadow" : "enforce");
  kv_ms(out, 0, "drain_timeout", cfg->drain_timeout_ms);
  static const char *const logs[] = {"off", "on", "sampled"};
  kv_raw(out, 0, "access_log", logs[cfg->access_log]);
  kv_u64(out, 0, "rejection_log_per_sec", cfg->rejection_log_per_sec);
  return ferror(out) ? -1 : 0;
}
