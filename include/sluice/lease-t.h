/*
 * sluice — local shares of fleet-wide (global) rate limits (types only).
 * Functions in lease.h.
 */
#ifndef SLUICE_LEASE_T_H
#define SLUICE_LEASE_T_H

#include <stdbool.h>
#include <stdint.h>

/* What a replica does with a global limit's requests while the backend
 * (Redis) is unreachable and its leased tokens are spent. */
enum sl_global_fallback {
  SL_FALLBACK_LOCAL = 0, /* its share: rate / expected_replicas, own GCRA (default) */
  SL_FALLBACK_OPEN,      /* admit everything */
  SL_FALLBACK_CLOSED,    /* refuse everything (429) */
};

/* The parameters of one global limit, fixed for a configuration snapshot.
 * Units: nanoseconds; tokens are requests. */
struct sl_lease_params {
  uint64_t period_ns;          /* the fleet-wide rate: one request every period_ns */
  uint32_t burst;              /* the fleet-wide bucket (0 is 1) */
  uint32_t expected_replicas;  /* fallback local share is rate / this (0 is 1) */
  uint64_t lease_ns;           /* a lease covers this much of the replica's demand */
  uint64_t lead_ns;            /* ask again when the tokens left last less than this */
  enum sl_global_fallback fallback;
};

/* The local share of one (limit, key): owned by one worker, not
 * synchronised. Zeroed is a valid new state (sl_lease_init not needed).
 * |tokens| below zero is debt: requests admitted before a lease arrived
 * (bounded by the provisional bucket), paid from the next grants, so that
 * Redis accounts for every request admitted while it is reachable. */
struct sl_lease {
  int64_t tokens;
  uint64_t prov_tat;      /* provisional / fallback GCRA state (local share) */
  uint64_t demand_mrps;   /* EWMA of requests seen, milli-requests per second */
  uint64_t window_ns;     /* start of the current demand window (0: none yet) */
  uint32_t seen;          /* requests seen in the current window */
  uint32_t asked;         /* tokens asked by the lease in flight */
  bool inflight;          /* one lease request per key at a time */
  uint64_t asked_ns;      /* when the last ask was made */
  uint64_t not_before_ns; /* the backend had too little: do not ask before */
  uint64_t last_ns;       /* last request (idle sweep) */
};

/* How one request was decided. */
enum sl_lease_source {
  SL_LEASE_FROM_TOKENS = 0, /* a leased token (global accounting) */
  SL_LEASE_FROM_DEBT,       /* provisional, charged to the next lease */
  SL_LEASE_FROM_FALLBACK,   /* backend down: the fallback mode decided */
  SL_LEASE_EXHAUSTED,       /* refused: share spent, global bucket empty */
};

struct sl_lease_verdict {
  bool admitted;
  enum sl_lease_source source;
  bool want_refill;         /* the caller should send a lease request now */
  uint64_t retry_after_ns;  /* refused: when to come back */
};

#endif
