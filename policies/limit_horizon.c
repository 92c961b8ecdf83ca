/*
 * sluice — the Retry-After of a rate-limit refusal: the backlog of a
 * shared key, or the limiter's own wait. See limit_horizon.h.
 */
#include <stdio.h>
#include <string.h>

#include "sluice/horizon.h"
#include "sluice/policy_state.h"
#include "sluice/retry.h"
#include "limit_horizon.h"

/* A key many clients share: the crowd refused by it is one queue. */
static bool key_shared(const struct sl_admission_input *in, const struct sl_rate_limit_cfg *rl) {
  if (rl->key == SL_KEY_ROUTE || rl->key == SL_KEY_DEVICE_CLASS) return true;
  const uint8_t *key;
  size_t n = sl_admission_limit_key(rl, in->route, in->id, &key);
  return n == 1 && key[0] == 0; /* the keyless bucket: no header value has a NUL */
}

uint32_t sl_shared_retry_after(const struct sl_admission_input *in, struct sl_policy_state *st,
                               uint64_t fp, uint64_t period_ns, uint64_t wait_ns, char *why,
                               size_t why_len) {
  const struct sl_reject_cfg *rj = &in->cfg->reject;
  struct sl_horizons *hs = sl_policy_state_horizons(st);
  _Atomic uint64_t *h = hs ? sl_horizon_for(hs, fp) : NULL;
  if (in->trace && h && rj->spread == SL_SPREAD_BACKLOG) {
    uint64_t slot = sl_horizon_peek(h, in->now_ns, wait_ns);
    size_t n = why ? strnlen(why, why_len) : why_len;
    if (n + 1 < why_len)
      snprintf(why + n, why_len - n, "; next free slot in %.1f s (spread: backlog)",
               (double)slot / 1e9);
  }
  return sl_horizon_answer(rj, h, in->now_ns, wait_ns, period_ns, in->rnd, !in->trace);
}

uint32_t sl_limit_retry_after(const struct sl_admission_input *in,
                              const struct sl_rate_limit_cfg *rl, struct sl_policy_state *st,
                              const struct sl_rl_ref *ref, uint64_t period_ns, uint64_t wait_ns,
                              char *why, size_t why_len) {
  if (!key_shared(in, rl)) return sl_retry_after_s(&in->cfg->reject, wait_ns, in->rnd);
  return sl_shared_retry_after(in, st, ref->fp, period_ns, wait_ns, why, why_len);
}
