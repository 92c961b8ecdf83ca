/*
 * sluice — explain: the verdict for a hypothetical request, with every
 * policy evaluated and why (pure; used by `sluice explain` and GET
 * /explain). Nothing is consumed: limiters are peeked, no concurrency slot
 * or breaker ticket is taken.
 */
#ifndef SLUICE_EXPLAIN_H
#define SLUICE_EXPLAIN_H

#include <stdint.h>
#include <stdio.h>

#include "sluice/config-t.h"

struct sl_blocklist;
struct sl_policy_set;

struct sl_explain_request {
  const char *method;   /* default "GET" */
  const char *path;
  const char *ip;       /* peer address; NULL: 127.0.0.1 */
  const char *listener; /* NULL: any */
  const char *const *header_names; /* lowercase or not; compared case-insensitively */
  const char *const *header_values;
  int n_headers;
};

/* Writes one JSON object to |out|:
 *   {"request":{...},"route":"connect","upstream":"identity",
 *    "identity":{"client_ip":..,"device_class":..,"firmware":..,"firmware_parsed":..},
 *    "policies":[{"policy":..,"kind":..,"verdict":..,"why":..},...],
 *    "verdict":{"admit":false,"status":429,"error":"rate_limited","policy":"connect/client_ip",
 *               "retry_after":3}}
 * against the live state |policies| of |cfg|'s policies, changing nothing.
 * Returns 0, or -1 when |r->ip| is not an IP address (message in |err|). */
int sl_explain(const struct sl_config *cfg, const struct sl_policy_set *policies,
               const struct sl_blocklist *bl, const struct sl_explain_request *r, uint64_t now_ns, int64_t now_unix, FILE *out,
               char *err, size_t errlen);

#endif
