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
  struct sl_metric_family *upstream_requests;   /* upstream,code */
  struct sl_metric_family *upstream_duration;   /* upstream */
  struct sl_metric_family *connections_active;  /* listener,protocol */
  struct sl_metric_family *connections_total;   /* listener */
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
  struct sl_metric_family *proxy_protocol_errors; /* listener,reason */
};

extern struct sl_stats sl_stats;

/* Registers every family (main thread, start-up). */
void sl_stats_init(void);

void sl_stats_request_done(struct sl_worker *w, const char *route, int proto, int status);
void sl_stats_upstream_done(struct sl_worker *w, const char *upstream, int status,
                            double seconds);
struct sl_metric_series *sl_stats_conn_series(const char *listener, int proto);

/* Counts a refusal (or, with |shadow|, a shadow-mode one) and logs it,
 * throttled per policy. */
/* The key a refusal is counted and throttled under (route, policy,
 * reason); exposed so tests can find two policies on one log slot. */
uint64_t sl_stats_rejection_key(const char *route, const char *policy,
                                enum sl_reject_reason reason);
void sl_stats_rejection(struct sl_worker *w, const char *route, const char *policy,
                        enum sl_reject_reason reason, bool shadow, const char *client_ip);
void sl_stats_set_rejection_log_rate(uint32_t per_sec);

/* A request without a usable firmware version (absent or unparseable). */
void sl_stats_firmware_unknown(const char *route, bool absent);
/* One more accepted connection on |listener| (cached per thread). */
void sl_stats_connection_accepted(const char *listener);

/* WebSocket tunnels (rare events: registry lookups are fine). */
struct sl_metric_series *sl_stats_tunnel_series(const char *route);
void sl_stats_ws_upgrade(const char *route, const char *result);
void sl_stats_tunnel_closed(const char *route, double seconds, uint64_t bytes_up,
                            uint64_t bytes_down);

#endif
