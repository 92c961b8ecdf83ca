/*
 * sluice — Prometheus metrics registry (proxy/metrics.c).
 *
 * Families are registered once at start-up (sl_metrics_*_family). A series
 * (one label-value tuple) is looked up with sl_metrics_series(), which takes
 * a mutex and may allocate: call it off the hot path, or once per distinct
 * label tuple and cache the pointer. Series are never freed, so a cached
 * pointer stays valid for the life of the process. Updating a series is a
 * relaxed atomic operation, safe from any worker thread.
 *
 * Label sets must stay bounded: label values come from configuration names,
 * protocol names and status codes, never from request data.
 */
#ifndef SLUICE_METRICS_H
#define SLUICE_METRICS_H

#include <stddef.h>
#include <stdint.h>

/* SL_METRIC_SAMPLED_COUNTER: a counter kept elsewhere and copied in at
 * scrape time (process CPU seconds, from the kernel): set like a gauge
 * (sl_metric_gauge_set_double), exposed as a counter. */
enum sl_metric_type {
  SL_METRIC_COUNTER,
  SL_METRIC_GAUGE,
  SL_METRIC_HISTOGRAM,
  SL_METRIC_SAMPLED_COUNTER,
};

struct sl_metric_family;
struct sl_metric_series;

/* |labels| is a comma-separated list of label names ("route,protocol,code"),
 * or "" for none. Returns the family, registering it on first call (a second
 * call with the same name returns the same family). Aborts on out-of-memory
 * (start-up only). Histograms use the fixed latency buckets
 * 0.001 .. 10 seconds plus +Inf. */
struct sl_metric_family *sl_metrics_family(const char *name, const char *help,
                                           enum sl_metric_type type, const char *labels);

/* |values| has one entry per label name, in order. Returns NULL only when
 * memory runs out. */
struct sl_metric_series *sl_metrics_series(struct sl_metric_family *f, const char *const *values);

void sl_metric_inc(struct sl_metric_series *s);
void sl_metric_add(struct sl_metric_series *s, uint64_t n);
/* Gauges (and sampled counters): signed. */
void sl_metric_gauge_add(struct sl_metric_series *s, int64_t delta);
void sl_metric_gauge_set(struct sl_metric_series *s, int64_t value);
/* Gauges holding non-integer values (timestamps). */
void sl_metric_gauge_set_double(struct sl_metric_series *s, double value);
/* Histograms: |seconds| observed. */
void sl_metric_observe(struct sl_metric_series *s, double seconds);

/* Reading back, for tests and /explain. */
uint64_t sl_metric_counter_value(const struct sl_metric_series *s);
double sl_metric_gauge_value(const struct sl_metric_series *s);

/* Renders every family in Prometheus text exposition format 0.0.4 into a
 * malloc'd buffer (*out, *len); caller frees. Returns 0, or -1 on OOM. */
int sl_metrics_render(char **out, size_t *len);

/* |fn| (NULL: none) runs at the start of every sl_metrics_render(), on the
 * rendering thread, to set gauges that must be true at scrape time (the
 * breaker state, which changes with time alone). Set it once at start-up. */
void sl_metrics_set_collector(void (*fn)(void *ud), void *ud);

/* Frees everything (process exit, tests). */
void sl_metrics_reset(void);

#endif
