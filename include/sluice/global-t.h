/*
 * sluice — the seam between admission (pure) and the data plane's client
 * of the fleet-wide limits' backend (proxy/global/): types only.
 *
 * A rate limit with `scope: global` is decided by a per-worker lease
 * store (sluice/lease.h) that only the data plane has: admission calls it
 * through this table, never by name, so policies/ links nothing of it.
 */
#ifndef SLUICE_GLOBAL_T_H
#define SLUICE_GLOBAL_T_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice/lease-t.h"

struct sl_rate_limit_cfg;

/* What the store says of one key, for /explain and the 429's headers. */
struct sl_global_answer {
  struct sl_lease_verdict v;
  int64_t tokens;       /* this worker's share after the decision (< 0: debt) */
  double demand;        /* requests per second seen here */
  bool backend_up;
};

struct sl_global_port {
  /* Decides one request of |rl| for |key| (|klen| bytes) with the key's
   * rate (|period_ns|, |burst|: overrides applied) at |now_ns|; with
   * |commit| false nothing changes (the look pass), with it the request
   * is charged and a refill may be sent. Never waits: the backend is
   * asked asynchronously. Returns a->v.admitted. Worker thread only. */
  bool (*decide)(void *ctx, const struct sl_rate_limit_cfg *rl, const uint8_t *key, size_t klen,
                 uint64_t period_ns, uint32_t burst, uint64_t now_ns, bool commit,
                 struct sl_global_answer *a);
  /* Gives back one charge of |rl|/|key| taken from |src| by decide
   * (commit), when a later policy refused the request. */
  void (*refund)(void *ctx, const struct sl_rate_limit_cfg *rl, const uint8_t *key, size_t klen,
                 enum sl_lease_source src);
  void *ctx;
};

#endif
