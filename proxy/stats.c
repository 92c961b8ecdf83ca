/*
 * sluice — metric families of the data plane. See stats.h.
 */
#include <stdio.h>
#include <string.h>

#include "sluice/log.h"
#include "proxy.h"
#include "stats.h"

struct sl_stats sl_stats;

void sl_stats_init(void) {
  sl_stats.requests = sl_metrics_family("sluice_requests_total",
                                        "Requests answered, by route, protocol and status code.",
                                        SL_METRIC_COUNTER, "route,protocol,code");
  sl_stats.upstream_requests =
      sl_metrics_family("sluice_upstream_requests_total",
                        "Responses received from upstreams, by status code.", SL_METRIC_COUNTER,
                        "upstream,code");
  sl_stats.upstream_duration = sl_metrics_family(
      "sluice_upstream_request_duration_seconds",
      "Time from sending a request upstream to its complete response head.",
      SL_METRIC_HISTOGRAM, "upstream");
  sl_stats.connections_active =
      sl_metrics_family("sluice_connections_active", "Open client connections.",
                        SL_METRIC_GAUGE, "listener,protocol");
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
  sl_stats.draining = sl_metrics_family("sluice_draining", "1 while shutting down.",
                                        SL_METRIC_GAUGE, "");
}

static const char *const proto_names[] = {"h1", "h2"};

/* Per-thread direct-mapped caches: a hit costs a hash and three compares. */
#define REQ_CACHE_SIZE 256
struct req_cache_entry {
  const char *route;
  int proto, status;
  struct sl_metric_series *series;
};
static __thread struct req_cache_entry req_cache[REQ_CACHE_SIZE];

void sl_stats_request_done(struct sl_worker *w, const char *route, int proto, int status) {
  (void)w;
  size_t h = (((uintptr_t)route >> 4) * 31u + (size_t)status * 7u + (size_t)proto) %
             REQ_CACHE_SIZE;
  struct req_cache_entry *e = &req_cache[h];
  if (e->route != route || e->status != status || e->proto != proto || !e->series) {
    char code[8];
    snprintf(code, sizeof(code), "%d", status);
    const char *values[3] = {route, proto_names[proto & 1], code};
    e->series = sl_metrics_series(sl_stats.requests, values);
    e->route = route;
    e->status = status;
    e->proto = proto;
    if (!e->series) return;
  }
  sl_metric_inc(e->series);
}

#define UP_CACHE_SIZE 64
struct up_cache_entry {
  const char *upstream;
  int status;
  struct sl_metric_series *count;
};
static __thread struct up_cache_entry up_cache[UP_CACHE_SIZE];
static __thread struct {
  const char *upstream;
  struct sl_metric_series *hist;
} dur_cache[8];

void sl_stats_upstream_done(struct sl_worker *w, const char *upstream, int status,
                            double seconds) {
  (void)w;
  size_t h = (((uintptr_t)upstream >> 4) * 31u + (size_t)status) % UP_CACHE_SIZE;
  struct up_cache_entry *e = &up_cache[h];
  if (e->upstream != upstream || e->status != status || !e->count) {
    char code[8];
    snprintf(code, sizeof(code), "%d", status);
    const char *values[2] = {upstream, code};
    e->count = sl_metrics_series(sl_stats.upstream_requests, values);
    e->upstream = upstream;
    e->status = status;
  }
  if (e->count) sl_metric_inc(e->count);
  if (seconds < 0) return;
  size_t d = ((uintptr_t)upstream >> 4) % 8;
  if (dur_cache[d].upstream != upstream || !dur_cache[d].hist) {
    const char *values[1] = {upstream};
    dur_cache[d].hist = sl_metrics_series(sl_stats.upstream_duration, values);
    dur_cache[d].upstream = upstream;
  }
  if (dur_cache[d].hist) sl_metric_observe(dur_cache[d].hist, seconds);
}

struct sl_metric_series *sl_stats_conn_series(const char *listener, int proto) {
  const char *values[2] = {listener, proto_names[proto & 1]};
  return sl_metrics_series(sl_stats.connections_active, values);
}

size_t sl_json_error_body(char *buf, size_t cap, const char *error, const char *policy,
                          uint32_t retry_after) {
  size_t len = 0;
  char tail[32];
  int tn = snprintf(tail, sizeof(tail), "\",\"retry_after\":%u}", retry_after);
  static const char head[] = "{\"error\":\"";
  static const char mid[] = "\",\"policy\":\"";
  if (cap < sizeof(head) + sizeof(mid) + (size_t)tn + 4) return 0;
  size_t reserve = sizeof(mid) + (size_t)tn + 1;
  memcpy(buf, head, sizeof(head) - 1);
  len = sizeof(head) - 1;
  sl_json_escape(buf, cap - reserve, &len, error);
  memcpy(buf + len, mid, sizeof(mid) - 1);
  len += sizeof(mid) - 1;
  sl_json_escape(buf, cap - (size_t)tn - 1, &len, policy);
  memcpy(buf + len, tail, (size_t)tn);
  len += (size_t)tn;
  buf[len] = '\0';
  return len;
}
