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

#include "sluice/lease-t.h"
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

/* `HOST:PORT` of a backend sluice connects to as a client (Redis,
 * Sentinel), where HOST may be a DNS name: resolved at each connection
 * attempt, off the worker loops (proxy/global/resolve.c), never at load. */
struct sl_hostport {
  const char *text; /* as written; NULL: unset */
  char host[254];   /* the name, or the numeric address without brackets */
  uint16_t port;
  bool numeric;     /* host is an IPv4 or IPv6 address */
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
  const char *tls_ticket_keys; /* tls.ticket_keys_file; NULL: the process's own key */
  const char *tls_ciphersuites; /* TLS 1.3 suites (OpenSSL syntax); NULL: sluice's order */
  const char *tls_groups;       /* key exchange groups; NULL: OpenSSL's list */
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
  /* Idle keep-alive connections (no exchange in progress) held at most;
   * beyond, the oldest idle is closed (h2: GOAWAY). 0: no cap (default). */
  uint32_t max_idle;
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
  /* A request without the key (no device-class header, say): skips the
   * limit [default], is refused (400 missing_key), or shares one bucket
   * with every other keyless request. device_class and device_id only. */
  enum sl_missing_key { SL_MISSING_SKIP = 0, SL_MISSING_DENY, SL_MISSING_SHARED } missing_key;
  /* `new_keys: {per: client_ip, rate, burst, max_keys}`: a key the
   * client chooses (device_class, device_id) costs nothing to rotate, a
   * fresh value being a full bucket; so each *new* key (one whose bucket
   * is full: never seen, or rested) also takes a token from its client
   * address's bucket of this rate. rate.period_ns 0: no cap. */
  struct sl_new_keys_cfg {
    struct sl_rate rate;
    uint32_t burst;
    uint32_t max_keys; /* of the per-address table; 0: default */
    const char *name;  /* "<limit name>/new_keys": the refusal's policy */
    uint64_t identity; /* route, limit name, max_keys: as a limit's */
  } new_keys;
  enum sl_mode mode;
  /* `scope: global`: the limit holds for the whole fleet of replicas,
   * accounted in the `global` backend (Redis) through local leases
   * (sluice/lease.h); local [default]: per process. */
  enum sl_rl_scope { SL_SCOPE_LOCAL = 0, SL_SCOPE_GLOBAL } scope;
  /* Hash of what the table's keys mean (the route's name, `name`, `key`,
   * `max_keys`, `scope`): a reload whose policy has the same identity keeps its table,
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
    /* What is counted: the route (one counter) [default], or each value
     * of a key (a bounded table of |max_keys|, policies/conc_table.c);
     * missing_key as for a rate limit (device_class, device_id only). */
    enum sl_limit_key key;
    enum sl_missing_key missing_key;
    uint32_t max_keys;      /* keyed: 0 is the default */
    uint64_t identity;      /* route name, key, max_keys (not max: in-flight counts carry over) */
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

/* ---- refusal extras ----------------------------------------------- */

/* What a refusal adds to the built-in answer (a policy's configuration,
 * in the snapshot arena: maintenance's and blocklist entries' `body` and
 * `headers`; parsed by policies/config/reject_extra.c): |body| is JSON
 * members, each ",\"key\":value", appended after "retry_after" (NULL:
 * none; keys never clash with the built-in ones), |headers| extra
 * response headers (validated by the loader: no hop-by-hop or framing
 * headers). Rendered by sluice/retry.h. */
struct sl_reject_header {
  const char *name; /* lowercase */
  const char *value;
};
struct sl_reject_extra {
  const char *body;
  const struct sl_reject_header *headers;
  size_t n_headers;
  /* The body's fields as configured, for the printer: key i, value i,
   * and whether the value is a string (printed quoted). */
  const char *const *body_keys;
  const char *const *body_vals;
  const bool *body_str;
  size_t n_body;
};

/* ---- blocklist ---------------------------------------------------- */

/* The blocklist's lists (a request meets them in the order client_ip,
 * device_id, firmware; firmware is 0, the list that came first). */
enum sl_block_list { SL_BLOCK_FIRMWARE = 0, SL_BLOCK_CLIENT_IP, SL_BLOCK_DEVICE_ID };

/* One entry of any list; the fields of the other lists are empty. */
struct sl_block_entry {
  struct sl_mark mark;
  enum sl_block_list list;
  const char *name;           /* optional; lets a drop-in replace the entry */
  /* "blocklist/<list>/<name>", or the entry's index in its list when it
   * has no name: the metric label, log field and body "policy" of its
   * refusals (bounded by the configuration). */
  const char *label;
  const char *device_class;   /* NULL: any class */
  /* firmware */
  const char *versions_text;
  struct sl_vrange versions;  /* parsed range expression */
  /* client_ip: blocks, and each as written (printer, messages) */
  struct sl_cidr *cidrs;
  const char *const *cidr_texts;
  size_t n_cidrs;
  /* device_id: exact ids */
  const char *const *ids;
  size_t n_ids;
  uint16_t status;            /* default 403 */
  const char *reason;
  int64_t expires_unix;       /* 0: never */
  enum sl_mode mode;
  struct sl_reject_extra extra; /* `body`, `headers` */
};

enum sl_unknown_firmware { SL_UNKNOWN_ALLOW = 0, SL_UNKNOWN_DENY };

struct sl_blocklist_cfg {
  struct sl_block_entry *client_ip;
  size_t n_client_ip;
  struct sl_block_entry *device_id;
  size_t n_device_id;
  struct sl_block_entry *firmware;
  size_t n_firmware;
  enum sl_unknown_firmware unknown;
};

/* ---- reject, shaping ---------------------------------------------- */

/* `reject.retry_after.spread`: how refusals of a shared key (a route-wide
 * or device-class limit) are told to come back (sluice/horizon.h). */
enum sl_retry_spread {
  SL_SPREAD_BACKLOG = 0, /* each refusal takes the next free slot (default) */
  SL_SPREAD_WINDOW,      /* the admit time, jittered over a window */
};

struct sl_reject_cfg {
  uint64_t retry_after_min_ms; /* default 1000 */
  uint64_t retry_after_max_ms; /* default 120000 */
  double jitter;               /* 0..1, default 0.5 */
  enum sl_retry_spread spread; /* default backlog */
  bool body_json;              /* default true */
};

/* A byte rate (shaping `bandwidth`): |bytes_per_s| 0: none. */
struct sl_bandwidth {
  uint64_t bytes_per_s;
  const char *text; /* as written, e.g. "64KiB/s" */
};

/* "shaping/" and a name of at most 64 characters, or an index. */
#define SL_SHAPING_LABEL_MAX 80

struct sl_shaping_rule {
  struct sl_mark mark;
  const char *name;            /* optional; lets a drop-in replace the rule */
  /* "shaping/<name>", or "shaping/<index>" for a rule without a name: the
   * policy label of its refusals, shadow events and pacing metrics. */
  const char *label;
  struct sl_route_match match;
  uint64_t delay_fixed_ms, delay_jitter_ms;
  double abort_percent;
  uint16_t abort_status;
  struct sl_rate rate_cap;     /* period_ns 0: none; burst 1, across workers */
  /* `bandwidth`: paces what sluice writes to the client (down) and reads
   * from it (up) for the exchange (proxy/core/pace.h). */
  struct sl_bandwidth bw_down, bw_up;
  enum sl_mode mode;
  uint64_t identity;           /* rate cap's identity, for state carry-over */
};

/* ---- allow (exemptions) ------------------------------------------ */

struct sl_cidrset;

/* What an allow rule skips (struct sl_allow_rule.skip): bit i for i below
 * SL_ENGINE_MAX_KINDS (sluice/policy.h) is the policy kind of place i in
 * policies/kinds/kinds.def (sl_policy_cfg.kind_index); the built-in steps
 * of admission have the bits above. */
#define SL_SKIP_KIND(i) (UINT64_C(1) << (i))
#define SL_SKIP_BLOCKLIST (UINT64_C(1) << 32)
#define SL_SKIP_RATE_LIMITS (UINT64_C(1) << 33)
#define SL_SKIP_SHAPING (UINT64_C(1) << 34)

/* Rules in `allow`: one bit each in the masks of struct sl_allow_cfg. */
#define SL_ALLOW_MAX_RULES 64

/* One exemption: a request matches when every criterion given matches
 * (AND across criteria, OR within a list); the first matching rule is the
 * request's, and admission skips what its |skip| names. */
struct sl_allow_rule {
  const char *name;
  struct sl_mark mark;
  struct sl_cidr *cidrs;       /* client_ip (the identified address) */
  size_t n_cidrs;
  /* header: one exact (or, value NULL, presence) match, as routes match
   * headers (n_headers 0: none; nothing else set). */
  struct sl_route_match header;
  const char **classes;        /* device classes, sorted (strcmp); exact */
  size_t n_classes;
  const char **device_ids;     /* sorted (strcmp); exact */
  size_t n_device_ids;
  const char **routes;         /* as written (names checked at load); NULL: every route */
  size_t n_routes;
  uint64_t skip;               /* SL_SKIP_* */
};

struct sl_allow_cfg {
  struct sl_allow_rule *rules;
  size_t n_rules;               /* at most SL_ALLOW_MAX_RULES */
  uint64_t any_ip;              /* bit i: rule i has no client_ip criterion */
  uint64_t *route_rules;        /* [cfg->n_routes]: bit i: rule i applies on that route */
  /* Every rule's client_ip blocks, each carrying its rule's index; built
   * at load (heap, released by sl_config_free()); NULL: no rule has one. */
  struct sl_cidrset *cidrs;
};

enum sl_access_log { SL_ACCESS_LOG_OFF = 0, SL_ACCESS_LOG_ON, SL_ACCESS_LOG_SAMPLED };
/* What the access log shows of a query string: names only (values are
 * where tokens travel), or all of it. */
enum sl_access_log_query { SL_ACCESS_QUERY_REDACT = 0, SL_ACCESS_QUERY_FULL };

/* ---- global (fleet-wide) limits ----------------------------------- */

/* The top-level `global` section: the shared backend of every rate limit
 * with `scope: global` (proxy/global/). */
struct sl_global_cfg {
  bool enabled;                 /* the section is present */
  struct sl_mark mark;
  struct sl_hostport redis;     /* `redis: "HOST:PORT"` (a name is resolved at each
                                 * connection attempt); unset (text NULL) with `sentinel:` */
  /* `sentinel: {addresses: [HOST:PORT...], master_name}`: the primary is
   * discovered (and rediscovered after a failover) through these. */
  struct sl_hostport *sentinels;
  size_t n_sentinels;           /* 0: `redis:` names the primary itself */
  const char *master_name;
  const char *password_file;    /* NULL: no AUTH */
  const char *password;         /* read from it at load; never printed */
  uint32_t database;            /* SELECT; default 0 */
  uint64_t connect_timeout_ms;  /* default 500 */
  uint64_t command_timeout_ms;  /* default 100: longer counts as down */
  const char *key_prefix;       /* default "sluice:" */
  uint32_t expected_replicas;   /* default 1: the fallback share is rate / this */
  enum sl_global_fallback fallback; /* default local */
  uint64_t lease_ms;            /* demand a lease covers; default 100 */
  /* Hash of the address, password, database: a reload with the same one
   * keeps the workers' connections (and their leases). */
  uint64_t identity;
};

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
  /* admin.metrics_address: a second admin listener serving only
   * /metrics, /healthz and /readyz (len 0: none). */
  struct sl_sockaddr admin_metrics_address;
  /* admin.token_file as written, and the token read from it at load
   * (NULL: none). With a token, /config, /explain and /reload want
   * "Authorization: Bearer <token>"; without one they are served only
   * when the admin address is loopback. */
  const char *admin_token_file;
  const char *admin_token;
  /* admin.readiness: what /readyz waits for besides bound listeners. */
  enum sl_readiness { SL_READINESS_LISTENERS = 0, SL_READINESS_UPSTREAMS } admin_readiness;
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
  enum sl_access_log_query access_log_query; /* default redact */
  uint32_t rejection_log_per_sec; /* default 10 */
  /* Top-level `maintenance` (policies/kinds/maintenance.c), implied in
   * every route without its own; NULL: none. */
  const struct sl_policy_cfg *maintenance;
  struct sl_allow_cfg allow;    /* exemptions (policies/allow.c) */
  struct sl_global_cfg global;  /* fleet-wide limits' backend */

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
