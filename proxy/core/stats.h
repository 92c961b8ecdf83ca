/*
 * sluice — the data plane's metric families and per-worker series caches.
 *
 * Looking a series up in the registry takes a mutex; the request path
 * instead goes through a small direct-mapped cache per worker keyed by the
 * label values' addresses and checked against their text (route names live
 * in the configuration snapshot, whose memory a reload frees and reuses:
 * an address alone would count requests under another route's label).
 */
#ifndef SLUICE_PROXY_STATS_H
#define SLUICE_PROXY_STATS_H

#include <stddef.h>
#include <stdint.h>

#include <stdbool.h>

#include "sluice/admission.h"
#include "sluice/metrics.h"

struct sl_worker;

struct sl_stats {
  struct sl_metric_family *requests;            /* route,protocol,code */
  struct sl_metric_family *request_duration;    /* route,protocol */
  struct sl_metric_family *upstream_requests;   /* upstream,code */
  struct sl_metric_family *upstream_duration;   /* upstream */
  struct sl_metric_family *upstream_connections; /* upstream,state */
  struct sl_metric_family *upstream_pending;    /* upstream */
  struct sl_metric_family *connections_active;  /* listener,protocol */
  struct sl_metric_family *connections_total;   /* listener */
  struct sl_metric_family *h2_asleep;           /* listener */
  struct sl_metric_family *idle_evictions;      /* listener */
  struct sl_metric_family *idle_held;           /* listener */
  struct sl_metric_family *config_generation;
  struct sl_metric_family *config_last_ok;
  struct sl_metric_family *config_last_ok_ts;
  struct sl_metric_family *config_reloads;      /* result */
  struct sl_metric_family *draining;
  struct sl_metric_family *rejections;          /* route,policy,reason */
  struct sl_metric_family *shadow_rejections;   /* route,policy,reason */
  struct sl_metric_family *limiter_keys;        /* route,policy */
  struct sl_metric_family *breaker_state;       /* upstream */
  struct sl_metric_family *ws_tunnels;          /* route */
  struct sl_metric_family *ws_upgrades;         /* route,result */
  struct sl_metric_family *ws_duration;         /* route */
  struct sl_metric_family *ws_bytes;            /* route,direction */
  struct sl_metric_family *firmware_unknown;    /* route,reason */
  struct sl_metric_family *paced_bytes;         /* route,policy,direction */
  struct sl_metric_family *paced_waits;         /* route,policy,direction */
  struct sl_metric_family *exemptions;          /* allow,route */
  struct sl_metric_family *proxy_protocol_errors; /* listener,reason */
};

extern struct sl_stats sl_stats;

/* Registers every family (main thread, start-up). */
void sl_stats_init(void);

/* An exchange ended: counted in sluice_requests_total and, unless
 * |seconds| < 0, its duration (first byte of the request to the end of the
 * response, seconds) observed in sluice_request_duration_seconds. Both
 * series come from one per-thread cache entry. */
void sl_stats_request_done(struct sl_worker *w, const char *route, int proto, int status,
                           double seconds);
/* The duration of an exchange that sl_stats_request_done() will not
 * observe (a WebSocket upgrade, when the tunnel opens): a registry lookup,
 * for rare events only. */
void sl_stats_request_duration(const char *route, int proto, double seconds);
void sl_stats_upstream_done(struct sl_worker *w, const char *upstream, int status,
                            double seconds);
/* An exchange the upstream failed (no response head): counted in
 * sluice_upstream_requests_total with the failure's kind as the code
 * (|error| "upstream_timeout" -> code "timeout"), and logged, throttled
 * per upstream and error like rejections. |status| is what the client got. */
void sl_stats_upstream_failed(struct sl_worker *w, const char *upstream, const char *error,
                              int status);
struct sl_metric_series *sl_stats_conn_series(const char *listener, int proto);
/* sluice_h2_sessions_asleep{listener} (front/h2sleep.h). */
struct sl_metric_series *sl_stats_h2_asleep_series(const char *listener);
/* sluice_idle_evictions_total{listener} (limits.max_idle). */
struct sl_metric_series *sl_stats_idle_evictions_series(const char *listener);
/* sluice_idle_held{listener}: set at scrape time from n_idle. */
struct sl_metric_series *sl_stats_idle_held_series(const char *listener);

/* Counts a refusal (or, with |shadow|, a shadow-mode one) and logs it,
 * throttled per policy. */
/* The key a refusal is counted and throttled under (route, policy,
 * reason); exposed so tests can find two policies on one log slot. */
uint64_t sl_stats_rejection_key(const char *route, const char *policy,
                                enum sl_reject_reason reason);
/* Who was refused, for the log line only (client data: JSON-escaped and
 * cut to SL_STATS_WHO_MAX bytes, never a metric label). A NULL field, or
 * a NULL |who|, is logged as "". */
#define SL_STATS_WHO_MAX 64
struct sl_stats_who {
  const char *client_ip;                  /* NUL-terminated */
  const char *firmware;                   /* |firmware_len| bytes */
  size_t firmware_len;
  const char *device_class;               /* |device_class_len| bytes */
  size_t device_class_len;
};
void sl_stats_rejection(struct sl_worker *w, const char *route, const char *policy,
                        enum sl_reject_reason reason, bool shadow, const struct sl_stats_who *who);
void sl_stats_set_rejection_log_rate(uint32_t per_sec);
/* The log throttle behind rejection lines, for other noisy events: true if
 * a line keyed |key| (a hash of what it is about, bounded by the
 * configuration) may be written in second |now_s|, at most
 * `rejection_log_per_sec` a second per key; |*suppressed| is how many were
 * held back in the seconds before (report it in the line). */
bool sl_stats_log_admit(uint64_t key, int64_t now_s, unsigned *suppressed);

/* A request without a usable firmware version (absent or unparseable). */
void sl_stats_firmware_unknown(const char *route, bool absent);
/* A request the `allow` rule |allow| exempted on |route| (cached per
 * thread). */
void sl_stats_exemption(const char *allow, const char *route);
/* One more accepted connection on |listener| (cached per thread). */
void sl_stats_connection_accepted(const char *listener);

/* WebSocket tunnels (rare events: registry lookups are fine). */
struct sl_metric_series *sl_stats_tunnel_series(const char *route);
void sl_stats_ws_upgrade(const char *route, const char *result);
/* A paced exchange ended (core/pace.c): |bytes| went |direction| ("down",
 * "up") through shaping rule |policy|'s bandwidth, which stopped it |waits|
 * times for tokens. */
void sl_stats_paced(const char *route, const char *policy, const char *direction, uint64_t bytes,
                    uint64_t waits);
void sl_stats_tunnel_closed(const char *route, double seconds, uint64_t bytes_up,
                            uint64_t bytes_down);

#endif
