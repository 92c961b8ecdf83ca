/*
 * sluice — configuration model (types only).
 *
 * A `struct sl_config` is an immutable snapshot built by the loader
 * (policies/config*.c) from the main YAML file and its drop-ins. Once
 * published it is never modified; a reload builds a new snapshot and swaps
 * one pointer. Everything a snapshot points to is owned by the snapshot
 * (one arena, freed with it). It is pure data: the runtime state of its
 * policies (limiter tables, counters, breakers) lives in a separate
 * struct sl_policy_set built from it (sluice/policy_state.h), which
 * carries state over a reload when a policy's definition did not change
 * (see `identity`).
 *
 * Units: durations are milliseconds (uint64_t), rates are events per
 * second expressed as a period in nanoseconds between events (so 5/s is
 * 200000000 ns; 1/h is 3.6e12 ns), sizes are bytes.
 */
#ifndef SLUICE_CONFIG_T_H
#define SLUICE_CONFIG_T_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <netinet/in.h>

#include "sluice/version-t.h"

struct sl_kind;

/* Where a value came from, for FILE:LINE:COL messages (1-based). */
struct sl_mark {
  const char *file; /* owned by the snapshot */
  uint32_t line, col;
};

enum sl_mode { SL_MODE_INHERIT = 0, SL_MODE_ENFORCE, SL_MODE_SHADOW };
enum sl_priority { SL_PRIORITY_NORMAL = 0, SL_PRIORITY_LOW, SL_PRIORITY_HIGH };

/* A rate: one event every `period_ns`, i.e. 1e9/period_ns per second. */
struct sl_rate {
  uint64_t period_ns;
  const char *text; /* as written, e.g. "5/s", for messages and printing */
};

struct sl_sockaddr {
  struct sockaddr_storage ss;
  socklen_t len;
  const char *text; /* "127.0.0.1:8080" / "[::1]:8080" as written */
};

struct sl_cidr {
  uint8_t family; /* AF_INET or AF_INET6 */
  uint8_t prefix; /* bits */
  uint8_t addr[16];
};

/* ---- listeners ---------------------------------------------------- */

struct sl_listener_cfg {
  const char *name;
  struct sl_mark mark;
  struct sl_sockaddr address;
  const char *tls_certificate; /* NULL: cleartext (h1 and h2c prior knowledge) */
  const char *tls_private_key;
  uint32_t max_connections;    /* default 50000 */
  struct {
    struct sl_rate per_ip;     /* period_ns 0: no connect-rate limit */
    uint32_t burst;
    enum sl_mode mode;
    uint64_t identity;         /* listener name (rate, burst: converted) */
  } connect_rate;
  uint64_t request_header_timeout_ms; /* default 10000 */
  uint64_t idle_timeout_ms;           /* default 60000 */
  uint32_t header_bytes;              /* default 16384 */
  uint32_t headers;                   /* default 100 */
  uint32_t h2_streams;                /* default 100 */
  /* PROXY protocol v1/v2 (haproxy's proxy-protocol.txt), read before TLS
   * and HTTP: from a `trusted` peer every connection starts with the
   * header and its source address becomes the connection's peer (what
   * connect_rate, identification, logs and X-Forwarded-For see); any
   * other peer is closed. n_trusted 0: off. */
  struct {
    struct sl_cidr *trusted;
    size_t n_trusted;
    uint64_t timeout_ms;              /* default 3000: the header must be in by then */
  } proxy_protocol;
};

/* ---- upstreams ---------------------------------------------------- */

#define SL_PIPELINE_MAX 16

struct sl_breaker_cfg {
  bool enabled;
  uint32_t consecutive_failures; /* 0: off */
  double failure_ratio;          /* 0: off */
  uint64_t window_ms;
  uint32_t min_requests;
  uint64_t slow_call_ms;         /* 0: off */
  uint64_t open_for_ms;
  uint32_t half_open_probes;
  uint64_t recovery_ramp_ms;
  enum sl_mode mode;
  /* Hash of the upstream's name and address: a reload with the same
   * identity keeps its breaker and retunes it with the settings above
   * (sl_breaker_retune). */
  uint64_t identity;
};

struct sl_upstream_cfg {
  const char *name;
  struct sl_mark mark;
  struct sl_sockaddr address;
  uint32_t max_connections;    /* default 256, across all workers */
  uint32_t max_pending;        /* default 1024, across all workers */
  /* HTTP/1.1 pipelining depth for bodyless GET/HEAD requests (1: off,
   * the default). Deeper pipelines batch writes to the origin; an origin
   * must then answer in order (RFC 9112 §9.3.2), as HTTP/1.1 requires. */
  uint32_t pipeline;
  uint64_t connect_timeout_ms; /* default 1000 */
  uint64_t response_timeout_ms;/* default 10000 */
  uint64_t idle_timeout_ms;    /* default 60000 */
  struct sl_breaker_cfg breaker;
};

/* ---- identify ----------------------------------------------------- */

struct sl_identify_cfg {
  struct sl_cidr *trusted_proxies;
  size_t n_trusted_proxies;
  uint8_t ipv6_prefix;            /* aggregate IPv6 keys to this prefix; default 128 */
  const char *device_class_header;/* lowercase; NULL if user_agent regex is used */
  const char *device_class_ua_regex;  /* as written (PCRE syntax) */
  /* Until PCRE2 is linked: the pattern translated to POSIX ERE and its
   * compiled regex_t* (REG_EXTENDED; heap, released by sl_config_free()),
   * and the number of the capture group named "class" (1-based). */
  const char *device_class_ua_posix;
  void *device_class_ua_compiled;
  unsigned device_class_ua_group;
  const char *firmware_header;    /* lowercase */
  const char *device_id_header;   /* lowercase */
};

/* ---- routes and policies ------------------------------------------ */

enum sl_limit_key {
  SL_KEY_CLIENT_IP = 0,
  SL_KEY_DEVICE_CLASS,
  SL_KEY_DEVICE_ID,
  SL_KEY_ROUTE,
};

struct sl_rate_override {
  const char *match; /* e.g. a device class value */
  struct sl_rate rate;
  uint32_t burst;    /* 0: same as the policy's */
};

struct sl_rate_limit_cfg {
  const char *name;  /* "<route>/<key>" unless named */
  struct sl_mark mark;
  enum sl_limit_key key;
  struct sl_rate rate;
  uint32_t burst;
  uint32_t max_keys; /* 0: default */
  struct sl_rate_override *overrides;
  size_t n_overrides;
  enum sl_mode mode;
  /* Hash of what the table's keys mean (the route's name, `name`, `key`,
   * `max_keys`): a reload whose policy has the same identity keeps its table,
   * converting each key when the rate, burst or overrides changed. `mode`
   * is left out too, so that switching a policy from shadow to enforce
   * keeps the buckets it has learnt. */
  uint64_t identity;
};

struct sl_header_match {
  const char *name;  /* lowercase */
  const char *value; /* exact; NULL: present */
};

struct sl_route_match {
  const char *path_prefix;  /* NULL: any */
  const char *method;       /* NULL: any */
  const char *host;         /* NULL: any; compared case-insensitively, port ignored */
  const char *listener;     /* NULL: any */
  struct sl_header_match *headers;
  size_t n_headers;
  int websocket;            /* -1: any, 0: must not be an upgrade, 1: must be */
};

/* Rate limits a route may have (the loader refuses more): admission keeps
 * one bit per limit to give back what a refused request was charged. */
#define SL_ROUTE_MAX_RATE_LIMITS 64

struct sl_route_cfg {
  const char *name;
  struct sl_mark mark;
  size_t index;             /* position in sl_config.routes */
  struct sl_route_match match;
  struct sl_upstream_cfg *upstream;
  struct sl_rate_limit_cfg *rate_limits;
  size_t n_rate_limits;
  /* Parsed by the concurrency kind (policies/kinds/route_concurrency.c),
   * whose policy's data points here; the set keeps the counter of every
   * route, keyed by this identity (sl_policy_set_concurrency). */
  struct sl_concurrency_cfg {
    uint32_t max;           /* 0: unlimited (no concurrency key) */
    enum sl_mode mode;
    uint64_t identity;      /* route name (not max: in-flight counts carry over) */
  } concurrency;
  enum sl_priority priority;
  uint64_t idle_timeout_ms; /* tunnels; 0: the listener's */
  /* Policies of the registered kinds (sluice/policy.h) the route has:
   * those of kinds run before the route's rate limits first, then those
   * run after them, each group in the order of policies/kinds/kinds.def. */
  struct sl_policy_cfg *policies;
  size_t n_policies;
};

/* One route policy of a registered kind (sluice/policy.h): pure data. */
struct sl_policy_cfg {
  const struct sl_kind *kind;
  uint16_t kind_index;   /* in sl_policy_kinds[] (the refusal reason) */
  const char *name;      /* "<route>/<kind key>": explain, logs, metric labels */
  struct sl_mark mark;
  enum sl_mode mode;
  uint64_t identity;     /* what its state means; 0: the kind is stateless */
  const void *data;      /* the kind's own configuration (snapshot arena) */
};

/* ---- blocklist ---------------------------------------------------- */

struct sl_block_entry {
  struct sl_mark mark;
  const char *name;           /* optional; lets a drop-in replace the entry */
  const char *device_class;   /* NULL: any class */
  const char *versions_text;
  struct sl_vrange versions;  /* parsed range expression */
  uint16_t status;            /* default 403 */
  const char *reason;
  int64_t expires_unix;       /* 0: never */
  enum sl_mode mode;
};

enum sl_unknown_firmware { SL_UNKNOWN_ALLOW = 0, SL_UNKNOWN_DENY };

struct sl_blocklist_cfg {
  struct sl_block_entry *firmware;
  size_t n_firmware;
  enum sl_unknown_firmware unknown;
};

/* ---- reject, shaping ---------------------------------------------- */

struct sl_reject_cfg {
  uint64_t retry_after_min_ms; /* default 1000 */
  uint64_t retry_after_max_ms; /* default 120000 */
  double jitter;               /* 0..1, default 0.5 */
  bool body_json;              /* default true */
};

struct sl_shaping_rule {
  struct sl_mark mark;
  const char *name;            /* optional; lets a drop-in replace the rule */
  struct sl_route_match match;
  uint64_t delay_fixed_ms, delay_jitter_ms;
  double abort_percent;
  uint16_t abort_status;
  struct sl_rate rate_cap;     /* period_ns 0: none; burst 1, across workers */
  enum sl_mode mode;
  uint64_t identity;           /* rate cap's identity, for state carry-over */
};

enum sl_access_log { SL_ACCESS_LOG_OFF = 0, SL_ACCESS_LOG_ON, SL_ACCESS_LOG_SAMPLED };

/* ---- the snapshot ------------------------------------------------- */

struct sl_config_source {
  const char *path;
  uint8_t sha256[32];
};

struct sl_config {
  uint64_t generation;  /* set when published */
  int64_t loaded_unix_ms;
  struct sl_config_source *sources;
  size_t n_sources;
  const char *include_dir; /* NULL: none */

  struct sl_listener_cfg *listeners;
  size_t n_listeners;
  struct sl_sockaddr admin_address; /* len 0: no admin listener */
  struct sl_upstream_cfg *upstreams;
  size_t n_upstreams;
  struct sl_identify_cfg identify;
  struct sl_route_cfg *routes;
  size_t n_routes;
  struct sl_blocklist_cfg blocklist;
  struct sl_reject_cfg reject;
  struct sl_shaping_rule *shaping;
  size_t n_shaping;
  enum sl_mode mode;            /* global; default enforce */
  uint64_t drain_timeout_ms;    /* default 20000 */
  /* Open tunnels and HTTP/2 connections are closed one by one at evenly
   * spaced instants over this long after SIGTERM, so their clients do not
   * all reconnect at once; <= drain_timeout_ms, default 3/4 of it. */
  uint64_t drain_spread_ms;
  enum sl_access_log access_log;  /* default off */
  uint32_t rejection_log_per_sec; /* default 10 */
  /* Top-level `maintenance` (policies/kinds/maintenance.c), implied in
   * every route without its own; NULL: none. */
  const struct sl_policy_cfg *maintenance;

  struct sl_arena *arena;       /* owns everything above */
};

/* One configuration error, collected (all of them, not just the first). */
struct sl_config_error {
  char *file;
  uint32_t line, col;
  char *message;
};

struct sl_config_errors {
  struct sl_config_error *items;
  size_t n, cap;
};

#endif
