/*
 * sluice — the Retry-After of a rate-limit refusal (policies-private).
 */
#ifndef SLUICE_LIMIT_HORIZON_H
#define SLUICE_LIMIT_HORIZON_H

#include <stddef.h>
#include <stdint.h>
#include "sluice/admission.h"
#include "sluice/ratelimit-t.h"

struct sl_policy_state;

/* The Retry-After (s) of |in|'s request refused by |rl| (state |st|, key
 * located as |ref|, its period |period_ns|), which the limiter says admits
 * again in |wait_ns|. With `spread: backlog`, a shared key (key: route or
 * device_class, or the keyless bucket of `missing_key: shared`) takes the
 * next free slot of its horizon (sluice/horizon.h); a per-client key, or
 * `spread: window`, gets sl_retry_after_s() of the wait. Explaining
 * (in->trace), nothing is reserved and |why| (|why_len| bytes, NUL-
 * terminated) gets the next free slot appended. */
uint32_t sl_limit_retry_after(const struct sl_admission_input *in,
                              const struct sl_rate_limit_cfg *rl, struct sl_policy_state *st,
                              const struct sl_rl_ref *ref, uint64_t period_ns, uint64_t wait_ns,
                              char *why, size_t why_len);

/* The same for a key known to be shared (fingerprint |fp|), e.g. the
 * single bucket of a shaping rate cap. */
uint32_t sl_shared_retry_after(const struct sl_admission_input *in, struct sl_policy_state *st,
                               uint64_t fp, uint64_t period_ns, uint64_t wait_ns, char *why,
                               size_t why_len);

#endif
