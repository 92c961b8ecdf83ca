/*
 * sluice — metric families of the data plane. See stats.h.
 */
#include <stdio.h>
#include <string.h>

#include <stdatomic.h>

#include "sluice/hash.h"
#include "sluice/json.h"
#include "sluice/log.h"
#include "core/stats.h"
#include "core/worker-t.h"

struct sl_stats sl_stats;

void sl_stats_init(void) {
  sl_stats.requests = sl_metrics_family("sluice_requests_total",
                                        "Requests answered, by route, protocol and status code.",
                                        SL_METRIC_COUNTER, "route,protocol,code");
  sl_stats.request_duration = sl_metrics_family(
      "sluice_request_duration_seconds",
      "Time from a request's first byte to the end of its response, as the client sees it.",
      SL_METRIC_HISTOGRAM, "route,protocol");
  sl_stats.upstream_requests =
      sl_metrics_family("sluice_upstream_requests_total",
                        "Responses received from upstreams, by status code.", SL_METRIC_COUNTER,
                        "upstream,code");
  sl_stats.upstream_duration = sl_metrics_family(
      "sluice_upstream_request_duration_seconds",
      "Time from sending a request upstream to its complete response head.",
      SL_METRIC_HISTOGRAM, "upstream");
  sl_stats.upstream_connections = sl_metrics_family(
      "sluice_upstream_connections",
      "Open upstream connections, by state (idle; active: serving or opening).",
      SL_METRIC_GAUGE, "upstream,state");
  sl_stats.upstream_pending = sl_metrics_family(
      "sluice_upstream_pending", "Requests waiting in an upstream's queue for a connection.",
      SL_METRIC_GAUGE, "upstream");
  sl_stats.connections_active =
      sl_metrics_family("sluice_connections_active", "Open client connections.",
                        SL_METRIC_GAUGE, "listener,protocol");
  sl_stats.h2_asleep = sl_metrics_family(
      "sluice_h2_sessions_asleep",
      "Idle HTTP/2 connections, with or without idle WebSocket tunnels, whose protocol state is "
      "asleep (freed until either side speaks).",
      SL_METRIC_GAUGE, "listener");
  sl_stats.idle_evictions = sl_metrics_family(
      "sluice_idle_evictions_total",
      "Idle connections and WebSocket tunnels closed because the listener held limits.max_idle "
      "of them.",
      SL_METRIC_COUNTER, "listener");
  sl_stats.idle_held = sl_metrics_family(
      "sluice_idle_held",
      "Idle connections and open WebSocket tunnels the listener holds (what limits.max_idle "
      "counts).",
      SL_METRIC_GAUGE, "listener");
  sl_stats.connections_total = sl_metrics_family(
      "sluice_connections_total", "Client connections accepted.", SL_METRIC_COUNTER, "listener");
  sl_stats.config_generation = sl_metrics_family(
      "sluice_config_generation", "Generation of the running configuration.", SL_METRIC_GAUGE, "");
  sl_stats.config_last_ok =
      sl_metrics_family("sluice_config_last_reload_successful",
                        "1 if the last reload attempt succeeded.", SL_METRIC_GAUGE, "");
  sl_stats.config_last_ok_ts = sl_metrics_family(
      "sluice_config_last_reload_success_timestamp_seconds",
      "Unix time of the last successful configuration load.", SL_METRIC_GAUGE, "");
  sl_stats.config_reloads = sl_metrics_family(
      "sluice_config_reloads_total", "Reload attempts by result.", SL_METRIC_COUNTER, "result");
  sl_stats.rejections = sl_metrics_family(
      "sluice_rejections_total", "Requests refused by a policy.", SL_METRIC_COUNTER,
      "route,policy,reason");
  sl_stats.shadow_rejections = sl_metrics_family(
      "sluice_shadow_rejections_total",
      "Requests a shadow-mode policy would have refused (they were admitted).",
      SL_METRIC_COUNTER, "route,policy,reason");
  sl_stats.limiter_keys = sl_metrics_family("sluice_limiter_keys",
                                            "Keys resident in a rate limiter's table.",
                                            SL_METRIC_GAUGE, "route,policy");
  sl_stats.breaker_state = sl_metrics_family(
      "sluice_circuit_breaker_state", "Circuit breaker state: 0 closed, 1 open, 2 half-open.",
      SL_METRIC_GAUGE, "upstream");
  sl_stats.ws_tunnels = sl_metrics_family("sluice_websocket_tunnels_active",
                                          "Open WebSocket tunnels.", SL_METRIC_GAUGE, "route");
  sl_stats.ws_upgrades = sl_metrics_family(
      "sluice_websocket_upgrades_total",
      "WebSocket upgrade attempts by result (success, rejected, failed).", SL_METRIC_COUNTER,
      "route,result");
  sl_stats.ws_duration = sl_metrics_family("sluice_websocket_tunnel_duration_seconds",
                                           "How long WebSocket tunnels stayed open.",
                                           SL_METRIC_HISTOGRAM, "route");
  sl_stats.ws_bytes = sl_metrics_family("sluice_websocket_bytes_total",
                                        "Bytes carried by WebSocket tunnels.", SL_METRIC_COUNTER,
                                        "route,direction");
  sl_stats.firmware_unknown = sl_metrics_family(
      "sluice_firmware_unknown_total",
      "Requests whose firmware header was absent or unparseable (decided by blocklist.unknown).",
      SL_METRIC_COUNTER, "route,reason");
  sl_stats.paced_bytes = sl_metrics_family(
      "sluice_shaping_paced_bytes_total",
      "Bytes carried by exchanges a shaping bandwidth paced, by direction (down, up).",
      SL_METRIC_COUNTER, "route,policy,direction");
  sl_stats.paced_waits = sl_metrics_family(
      "sluice_shaping_paced_waits_total",
      "Times a shaping bandwidth stopped an exchange's direction until it had tokens again.",
      SL_METRIC_COUNTER, "route,policy,direction");
  sl_stats.exemptions = sl_metrics_family(
      "sluice_exemptions_total",
      "Requests an allow rule exempted from some policies, by rule and route.",
      SL_METRIC_COUNTER, "allow,route");
  sl_stats.draining = sl_metrics_family("sluice_draining", "1 while shutting down.",
                                        SL_METRIC_GAUGE, "");
  sl_stats.proxy_protocol_errors = sl_metrics_family(
      "sluice_proxy_protocol_errors_total",
      "Connections closed for their PROXY protocol header (untrusted, malformed, too_long, "
      "timeout, closed).",
      SL_METRIC_COUNTER, "listener,reason");
}

static const char *const proto_names[] = {"h1", "h2"};

/* Per-thread direct-mapped caches: a hit costs a hash, a few compares and
 * a short strcmp.
 *
 * The slot is picked by the name's address, but a hit also needs the same
 * text: names live in configuration snapshots, and once a reload frees
 * one, its memory may hold another route's name (or another string) at
 * the same address, which must not be counted under the old label. The
 * label is the text, so a matching text is the right series whatever
 * snapshot it came from. Names longer than the copy are not cached (the
 * loader allows 64 characters, so that does not happen). */
#define NAME_KEY_MAX 80
struct name_key {
  const char *ptr;
  char text[NAME_KEY_MAX];
};

static inline bool name_key_match(const struct name_key *k, const char *name) {
  return k->ptr == name && strcmp(k->text, name) == 0;
}

static inline void name_key_set(struct name_key *k, const char *name) {
  size_t n = strlen(name);
  if (n >= sizeof(k->text)) {
    k->ptr = NULL; /* never matches: looked up every time */
    return;
  }
  memcpy(k->text, name, n + 1);
  k->ptr = name;
}

#define REQ_CACHE_SIZE 256
struct req_cache_entry {
  struct name_key route;
  int proto, status;
  struct sl_metric_series *series;
  struct sl_metric_series *duration; /* route,proto's histogram */
};
static __thread struct req_cache_entry req_cache[REQ_CACHE_SIZE];

void sl_stats_request_done(struct sl_worker *w, const char *route, int proto, int status,
                           double seconds) {
  (void)w;
  size_t h = (((uintptr_t)route >> 4) * 31u + (size_t)status * 7u + (size_t)proto) %
             REQ_CACHE_SIZE;
  struct req_cache_entry *e = &req_cache[h];
  if (e->status != status || e->proto != proto || !e->series || !name_key_match(&e->route, route)) {
    char code[8];
    snprintf(code, sizeof(code), "%d", status);
    const char *values[3] = {route, proto_names[proto & 1], code};
    e->series = sl_metrics_series(sl_stats.requests, values);
    e->duration = sl_metrics_series(sl_stats.request_duration, values);
    name_key_set(&e->route, route);
    e->status = status;
    e->proto = proto;
    if (!e->series || !e->duration) {
      e->series = NULL; /* out of memory: looked up again next time */
      return;
    }
  }
  sl_metric_inc(e->series);
  if (seconds >= 0) sl_metric_observe(e->duration, seconds);
}

void sl_stats_request_duration(const char *route, int proto, double seconds) {
  const char *values[2] = {route, proto_names[proto & 1]};
  struct sl_metric_series *d = sl_metrics_series(sl_stats.request_duration, values);
  if (d) sl_metric_observe(d, seconds);
}

#define UP_CACHE_SIZE 64
struct up_cache_entry {
  struct name_key upstream;
  int status;
  const char *kind; /* a failure's kind (a constant of the data plane), or NULL */
  struct sl_metric_series *count;
};
static __thread struct up_cache_entry up_cache[UP_CACHE_SIZE];
static __thread struct {
  struct name_key upstream;
  struct sl_metric_series *hist;
} dur_cache[8];

/* Counts one exchange of |upstream| in sluice_upstream_requests_total:
 * code |status|, or |kind| for a failure without a response. Per-thread
 * series cache: an outage fails every request, and the registry's mutex
 * must not be taken for each. */
static inline void upstream_count(const char *upstream, int status, const char *kind) {
  size_t h = (((uintptr_t)upstream >> 4) * 31u + (size_t)status + ((uintptr_t)kind >> 3)) %
             UP_CACHE_SIZE;
  struct up_cache_entry *e = &up_cache[h];
  if (e->status != status || e->kind != kind || !e->count ||
      !name_key_match(&e->upstream, upstream)) {
    char code[8];
    snprintf(code, sizeof(code), "%d", status);
    const char *values[2] = {upstream, kind ? kind : code};
    e->count = sl_metrics_series(sl_stats.upstream_requests, values);
    name_key_set(&e->upstream, upstream);
    e->status = status;
    e->kind = kind;
  }
  if (e->count) sl_metric_inc(e->count);
}

void sl_stats_upstream_done(struct sl_worker *w, const char *upstream, int status,
                            double seconds) {
  (void)w;
  upstream_count(upstream, status, NULL);
  if (seconds < 0) return;
  size_t d = ((uintptr_t)upstream >> 4) % 8;
  if (!dur_cache[d].hist || !name_key_match(&dur_cache[d].upstream, upstream)) {
    const char *values[1] = {upstream};
    dur_cache[d].hist = sl_metrics_series(sl_stats.upstream_duration, values);
    name_key_set(&dur_cache[d].upstream, upstream);
  }
  if (dur_cache[d].hist) sl_metric_observe(dur_cache[d].hist, seconds);
}

void sl_stats_upstream_failed(struct sl_worker *w, const char *upstream, const char *error,
                              int status) {
  /* The failure's kind is the code: "connect_failed", "timeout", "reset"
   * ... (the error without its "upstream_" prefix; a fixed set). */
  upstream_count(upstream, 0, strncmp(error, "upstream_", 9) == 0 ? error + 9 : error);
  struct sl_hasher h;
  sl_hasher_init(&h, sl_hash_process_key());
  sl_hasher_str(&h, "upstream failed");
  sl_hasher_str(&h, upstream);
  sl_hasher_str(&h, error);
  unsigned suppressed;
  if (!sl_stats_log_admit(sl_hasher_final(&h), (int64_t)ev_now(w->loop), &suppressed)) return;
  char esc[128];
  size_t n = 0;
  sl_json_escape(esc, sizeof(esc), &n, upstream);
  esc[n] = '\0';
  sl_log_json(SL_LOG_WARN, "upstream failed",
              "\"upstream\":\"%s\",\"error\":\"%s\",\"status\":%d,\"suppressed\":%u", esc, error,
              status, suppressed);
}

struct sl_metric_series *sl_stats_conn_series(const char *listener, int proto) {
  const char *values[2] = {listener, proto_names[proto & 1]};
  return sl_metrics_series(sl_stats.connections_active, values);
}

struct sl_metric_series *sl_stats_h2_asleep_series(const char *listener) {
  const char *values[1] = {listener};
  return sl_metrics_series(sl_stats.h2_asleep, values);
}

struct sl_metric_series *sl_stats_idle_evictions_series(const char *listener) {
  const char *values[1] = {listener};
  return sl_metrics_series(sl_stats.idle_evictions, values);
}

struct sl_metric_series *sl_stats_idle_held_series(const char *listener) {
  const char *values[1] = {listener};
  return sl_metrics_series(sl_stats.idle_held, values);
}

/* ---- rejections ---------------------------------------------------- */

#define REJ_CACHE_SIZE 128
struct rej_cache_entry {
  uint64_t hash;
  struct sl_metric_series *series;
};
static __thread struct rej_cache_entry rej_cache[2][REJ_CACHE_SIZE];

uint64_t sl_stats_rejection_key(const char *route, const char *policy,
                                enum sl_reject_reason reason) {
  struct sl_hasher h;
  sl_hasher_init(&h, sl_hash_process_key());
  sl_hasher_str(&h, route);
  sl_hasher_str(&h, policy);
  sl_hasher_str(&h, sl_reject_reason_name(reason));
  return sl_hasher_final(&h);
}

/* Log throttle: per policy (route, policy, reason; shadow apart), at most
 * `rejection_log_per_sec` lines per second; the first line of the next
 * second reports how many were suppressed. A storm of a million
 * rejections costs a few atomic operations each, not a write(2).
 *
 * Each policy has a slot of its own, claimed once by CAS in a fixed table
 * shared by all workers (open addressing by the key's hash; the keys are
 * bounded by the configuration), so a storm on one policy never silences
 * another nor lends it its suppressed count. Only if REJ_LOG_PROBES slots
 * in a row are taken do policies share one. */
#define REJ_LOG_SLOTS 1024
#define REJ_LOG_PROBES 16
struct rej_log_slot {
  _Atomic uint64_t key; /* 0: free */
  _Atomic int64_t second;
  atomic_uint lines;
  atomic_uint suppressed;
};
static struct rej_log_slot rej_log[REJ_LOG_SLOTS];
static atomic_uint rej_log_per_sec = 10;

void sl_stats_set_rejection_log_rate(uint32_t per_sec) { atomic_store(&rej_log_per_sec, per_sec); }

static struct rej_log_slot *rej_log_slot(uint64_t key) {
  if (key == 0) key = 1;
  size_t home = (size_t)(key ^ (key >> 32)) % REJ_LOG_SLOTS;
  for (size_t i = 0; i < REJ_LOG_PROBES; i++) {
    struct rej_log_slot *sl = &rej_log[(home + i) % REJ_LOG_SLOTS];
    uint64_t k = atomic_load_explicit(&sl->key, memory_order_relaxed);
    if (k == 0) {
      atomic_compare_exchange_strong(&sl->key, &k, key); /* k: the winner's key */
      if (k == 0) k = key;
    }
    if (k == key) return sl;
  }
  return &rej_log[home];
}

bool sl_stats_log_admit(uint64_t key, int64_t now_s, unsigned *suppressed) {
  struct rej_log_slot *sl = rej_log_slot(key);
  int64_t seen = atomic_load_explicit(&sl->second, memory_order_relaxed);
  *suppressed = 0;
  /* Only forward: workers cache their loop clocks independently, and one
   * still in the previous second must not reopen that second's window. */
  if (now_s > seen && atomic_compare_exchange_strong(&sl->second, &seen, now_s)) {
    atomic_store(&sl->lines, 0);
    *suppressed = atomic_exchange(&sl->suppressed, 0);
  }
  if (atomic_fetch_add(&sl->lines, 1) >= atomic_load(&rej_log_per_sec)) {
    atomic_fetch_add(&sl->suppressed, 1);
    return false;
  }
  return true;
}

void sl_stats_rejection(struct sl_worker *w, const char *route, const char *policy,
                        enum sl_reject_reason reason, bool shadow, const struct sl_stats_who *who) {
  uint64_t h = sl_stats_rejection_key(route, policy, reason);
  struct rej_cache_entry *e = &rej_cache[shadow][h % REJ_CACHE_SIZE];
  if (e->hash != h || !e->series) {
    const char *values[3] = {route, policy, sl_reject_reason_name(reason)};
    e->series = sl_metrics_series(shadow ? sl_stats.shadow_rejections : sl_stats.rejections,
                                  values);
    e->hash = h;
  }
  if (e->series) sl_metric_inc(e->series);

  unsigned suppressed;
  if (!sl_stats_log_admit(shadow ? ~h : h, (int64_t)ev_now(w->loop), &suppressed)) return;
  static const struct sl_stats_who nobody;
  if (!who) who = &nobody;
  char esc_route[128], esc_policy[256], esc_ip[64], esc_fw[6 * SL_STATS_WHO_MAX + 1],
      esc_cls[6 * SL_STATS_WHO_MAX + 1];
  size_t a = 0, b = 0, c = 0, d = 0, e2 = 0;
  sl_json_escape(esc_route, sizeof(esc_route), &a, route);
  esc_route[a] = '\0';
  sl_json_escape(esc_policy, sizeof(esc_policy), &b, policy);
  esc_policy[b] = '\0';
  sl_json_escape(esc_ip, sizeof(esc_ip), &c, who->client_ip ? who->client_ip : "");
  esc_ip[c] = '\0';
  sl_json_escape_n(esc_fw, sizeof(esc_fw), &d, who->firmware ? who->firmware : "",
                   who->firmware_len < SL_STATS_WHO_MAX ? who->firmware_len : SL_STATS_WHO_MAX);
  esc_fw[d] = '\0';
  sl_json_escape_n(esc_cls, sizeof(esc_cls), &e2, who->device_class ? who->device_class : "",
                   who->device_class_len < SL_STATS_WHO_MAX ? who->device_class_len
                                                            : SL_STATS_WHO_MAX);
  esc_cls[e2] = '\0';
  sl_log_json(SL_LOG_WARN, shadow ? "shadow rejection" : "rejected",
              "\"route\":\"%s\",\"policy\":\"%s\",\"reason\":\"%s\",\"client_ip\":\"%s\","
              "\"firmware\":\"%s\",\"device_class\":\"%s\",\"suppressed\":%u",
              esc_route, esc_policy, sl_reject_reason_name(reason), esc_ip, esc_fw, esc_cls,
              suppressed);
}

/* ---- WebSocket tunnels ---------------------------------------------- */

struct sl_metric_series *sl_stats_tunnel_series(const char *route) {
  const char *values[1] = {route};
  return sl_metrics_series(sl_stats.ws_tunnels, values);
}

void sl_stats_ws_upgrade(const char *route, const char *result) {
  const char *values[2] = {route, result};
  struct sl_metric_series *m = sl_metrics_series(sl_stats.ws_upgrades, values);
  if (m) sl_metric_inc(m);
}

void sl_stats_tunnel_closed(const char *route, double seconds, uint64_t bytes_up,
                            uint64_t bytes_down) {
  const char *r[1] = {route};
  struct sl_metric_series *d = sl_metrics_series(sl_stats.ws_duration, r);
  if (d) sl_metric_observe(d, seconds);
  const char *up[2] = {route, "upstream"}, *down[2] = {route, "downstream"};
  struct sl_metric_series *bu = sl_metrics_series(sl_stats.ws_bytes, up);
  struct sl_metric_series *bd = sl_metrics_series(sl_stats.ws_bytes, down);
  if (bu) sl_metric_add(bu, bytes_up);
  if (bd) sl_metric_add(bd, bytes_down);
}

/* Per-thread caches keyed by the name's address and text (see name_key:
 * route and listener names go with their snapshot or listener). */
#define NAME_CACHE_SIZE 32
struct name_cache_entry {
  struct name_key name;
  bool flag;
  struct sl_metric_series *series;
};
static __thread struct name_cache_entry fw_cache[NAME_CACHE_SIZE];
static __thread struct name_cache_entry accept_cache[NAME_CACHE_SIZE];

void sl_stats_firmware_unknown(const char *route, bool absent) {
  struct name_cache_entry *e =
      &fw_cache[(((uintptr_t)route >> 4) * 2 + (absent ? 1u : 0u)) % NAME_CACHE_SIZE];
  if (e->flag != absent || !e->series || !name_key_match(&e->name, route)) {
    const char *values[2] = {route, absent ? "absent" : "unparseable"};
    e->series = sl_metrics_series(sl_stats.firmware_unknown, values);
    name_key_set(&e->name, route);
    e->flag = absent;
  }
  if (e->series) sl_metric_inc(e->series);
}

void sl_stats_connection_accepted(const char *listener) {
  struct name_cache_entry *e = &accept_cache[((uintptr_t)listener >> 4) % NAME_CACHE_SIZE];
  if (!e->series || !name_key_match(&e->name, listener)) {
    const char *values[1] = {listener};
    e->series = sl_metrics_series(sl_stats.connections_total, values);
    name_key_set(&e->name, listener);
  }
  if (e->series) sl_metric_inc(e->series);
}

/* Once per paced exchange (staging traffic): registry lookups are fine. */
void sl_stats_paced(const char *route, const char *policy, const char *direction, uint64_t bytes,
                    uint64_t waits) {
  const char *values[3] = {route, policy, direction};
  struct sl_metric_series *b = sl_metrics_series(sl_stats.paced_bytes, values);
  struct sl_metric_series *w = sl_metrics_series(sl_stats.paced_waits, values);
  if (b) sl_metric_add(b, bytes);
  if (w) sl_metric_add(w, waits);
}

/* Keyed by both names' addresses and texts (both live in the snapshot). */
#define EXEMPT_CACHE_SIZE 32
static __thread struct {
  struct name_key allow, route;
  struct sl_metric_series *series;
} exempt_cache[EXEMPT_CACHE_SIZE];

void sl_stats_exemption(const char *allow, const char *route) {
  size_t h = (((uintptr_t)allow >> 4) * 31u + ((uintptr_t)route >> 4)) % EXEMPT_CACHE_SIZE;
  if (!exempt_cache[h].series || !name_key_match(&exempt_cache[h].allow, allow) ||
      !name_key_match(&exempt_cache[h].route, route)) {
    const char *values[2] = {allow, route};
    exempt_cache[h].series = sl_metrics_series(sl_stats.exemptions, values);
    name_key_set(&exempt_cache[h].allow, allow);
    name_key_set(&exempt_cache[h].route, route);
  }
  if (exempt_cache[h].series) sl_metric_inc(exempt_cache[h].series);
}
