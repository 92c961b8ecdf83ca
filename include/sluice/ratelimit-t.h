/*
 * sluice — GCRA rate limiting (types only). Functions in ratelimit.h.
 */
#ifndef SLUICE_RATELIMIT_T_H
#define SLUICE_RATELIMIT_T_H

#include <stdbool.h>
#include <stdint.h>

/* Default `max_keys` of a limiter table: about 23 MiB (see ratelimit.c). */
#define SL_RATELIMIT_DEFAULT_MAX_KEYS 1000000u

/* A shared, bounded table of per-key GCRA states; opaque. */
struct sl_ratelimit_table;

/* The answer of a limiter. Times are nanoseconds relative to `now_ns`. */
struct sl_rl_verdict {
  bool admitted;
  bool overflow;           /* decided by the table's shared overflow bucket */
  /* The key's bucket was full before this decision: a key never seen (or
   * evicted), or one that has rested a whole bucket. What `new_keys`
   * charges. A decision of the overflow bucket is fresh too. */
  bool fresh;
  uint32_t remaining;      /* further requests that would be admitted at now_ns */
  uint64_t retry_after_ns; /* 0 if admitted; else time until one would be */
  uint64_t reset_ns;       /* time until the key's bucket is full again */
};

/* A key located in a table: its fingerprint and candidate buckets.
 * Computed once (hash, bucket prefetch) and reused for a look and then a
 * commit of the same key in the same decision. Valid for one table. */
struct sl_rl_ref {
  uint64_t fp;
  void *b1, *b2;
  /* Parameter class of the charge (0 after sl_ratelimit_locate: the
   * limit's own rate; the caller sets 1 + i for its override i, at most
   * SL_RL_CLASS_MAX), stored with the key for sl_ratelimit_reparam. */
  uint8_t cls;
};

#define SL_RL_CLASS_MAX 255

/* How a reload changes the parameters of one class of keys: a key last
 * charged at |from_period_ns| keeps the tokens it has consumed, counted at
 * |to_period_ns|, at most |to_burst| (a whole bucket), and moves to class
 * |to_cls|. */
struct sl_rl_reparam {
  uint64_t from_period_ns;
  uint64_t to_period_ns;
  uint32_t to_burst;
  uint8_t to_cls;
};

struct sl_rl_stats {
  uint64_t keys;           /* resident keys (sluice_limiter_keys) */
  uint64_t max_keys;
  uint64_t evictions;      /* idle (full-again) keys replaced by new keys */
  uint64_t overflow;       /* decisions taken by the overflow bucket */
  uint64_t memory_bytes;   /* the table's allocation */
};

#endif
