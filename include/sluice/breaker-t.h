/*
 * sluice — circuit breaker (types only). Functions in breaker.h.
 */
#ifndef SLUICE_BREAKER_T_H
#define SLUICE_BREAKER_T_H

#include <stdbool.h>
#include <stdint.h>

enum sl_breaker_state { SL_BREAKER_CLOSED = 0, SL_BREAKER_OPEN, SL_BREAKER_HALF_OPEN };

/* How an admitted request ended, as the data plane saw it. */
enum sl_outcome {
  SL_OUTCOME_SUCCESS = 0, /* a response (slow ones count as failures) */
  SL_OUTCOME_FAILURE,     /* 5xx, reset, timeout, refused */
  SL_OUTCOME_CANCELLED,   /* the client went away first: not evidence */
};

/* One upstream's breaker; opaque. */
struct sl_breaker;

struct sl_breaker_verdict {
  bool admitted;
  bool probe;               /* a half-open trial request */
  enum sl_breaker_state state;
  uint32_t epoch;           /* give back to sl_breaker_report() */
  uint64_t retry_after_ns;  /* when refused: until half-open (0: unknown) */
  /* One success every this many ns: what the upstream served over the
   * window before the breaker last opened (0: unknown). A refused crowd
   * is spread at this rate (sl_breaker_horizon). */
  uint64_t serve_period_ns;
};

struct sl_breaker_snapshot {
  enum sl_breaker_state state;
  uint32_t consecutive_failures;
  uint32_t window_requests, window_failures;
  uint32_t probes_in_flight, probe_successes;
  uint32_t admit_permille;  /* 1000 unless ramping up after recovery */
  uint64_t open_remaining_ns;
  uint64_t opened_total;    /* times the breaker has opened */
  uint64_t serve_period_ns; /* as in struct sl_breaker_verdict */
};

#endif
