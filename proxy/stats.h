/*
 * sluice — the data plane's metric families and per-worker series caches.
 *
 * Looking a series up in the registry takes a mutex; the request path
 * instead goes through a small direct-mapped cache per worker keyed by the
 * label values' addresses (route names live in the configuration snapshot,
 * so a reload simply misses once per route and refills).
 */
#ifndef SLUICE_PROXY_STATS_H
#define SLUICE_PROXY_STATS_H

#include <stddef.h>
#include <stdint.h>

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
};

extern struct sl_stats sl_stats;

/* Registers every family (main thread, start-up). */
void sl_stats_init(void);

void sl_stats_request_done(struct sl_worker *w, const char *route, int proto, int status);
void sl_stats_upstream_done(struct sl_worker *w, const char *upstream, int status,
                            double seconds);
struct sl_metric_series *sl_stats_conn_series(const char *listener, int proto);

/* Renders {"error":E,"policy":P,"retry_after":N} into |buf|; returns its
 * length (truncated JSON is never produced: |cap| >= 64 + strings). */
size_t sl_json_error_body(char *buf, size_t cap, const char *error, const char *policy,
                          uint32_t retry_after);

#endif
