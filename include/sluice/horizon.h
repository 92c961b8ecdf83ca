/*
 * sluice — the reservation horizon of a shared key: Retry-After values that
 * know the backlog (`reject.retry_after.spread: backlog`).
 *
 * A key many clients share (a route-wide limit, a device-class limit)
 * admits one request every `period` P. When a crowd of N is refused at
 * once, telling each of them "the limit admits again in w" brings all N
 * back at now + w, where one is admitted and N - 1 are refused again
 * (postmortem: 4,756 of 5,000 told 1-2 s behind a 10/s limit). Instead
 * each refusal reserves the next free slot:
 *
 *   slot  = max(H, now + w)        w: the limiter's own wait (GCRA)
 *   H'    = slot + P               the horizon: end of the last slot given
 *   told  = ceil(slot - now + u P) u uniform in [0, 1): jitter in the slot
 *
 * so a crowd of N is spread over N P = N / rate seconds, and a whole-second
 * value n is told to at most ceil(1 s / P) + 1 clients (the slots that
 * overlap (n - 1, n]): the number the limit can admit in that second.
 *
 * Bounds and decay. H never runs more than `retry_after.max` ahead: a
 * refusal whose slot would start at or after now + max takes no slot and
 * is told the cap (spread over the cap window like sl_retry_after_s). The
 * horizon needs no timer: a slot nobody came back for simply passes, since
 * slot = max(H, now + w) starts from now once H is behind. What refused
 * clients that never return cost is the slots they were given, at most
 * `max` worth, draining at the limit's rate. Admissions do not pull H
 * back: a returning client uses the capacity its slot reserved, and a
 * newcomer admitted in between consumed capacity the limiter sees, which
 * shows up in w on the next refusal.
 *
 * Storage: SL_HORIZON_WAYS 64-bit atomics per limit, the key's fingerprint
 * picks one (a route-wide limit has one key; a device-class limit a
 * handful: two classes that share a way share a horizon, which spreads
 * their crowds a little more than needed, never less). Touched only on a
 * refusal, lock-free (CAS).
 */
#ifndef SLUICE_HORIZON_H
#define SLUICE_HORIZON_H

#include "sluice/config-t.h"
#include "sluice/horizon-t.h"

static inline _Atomic uint64_t *sl_horizon_for(struct sl_horizons *hs, uint64_t fp) {
  return &hs->end_ns[fp % SL_HORIZON_WAYS];
}

/* `retry_after.max` in ns (saturating). */
static inline uint64_t sl_horizon_max_ns(const struct sl_reject_cfg *cfg) {
  uint64_t ms = cfg->retry_after_max_ms;
  return ms > UINT64_MAX / 1000000u ? UINT64_MAX : ms * 1000000u;
}

/* Reserves the next free slot of one period |period_ns| at |now_ns| for a
 * refusal the limiter says admits again in |wait_ns|: returns the slot's
 * start relative to now. A slot that would start at or after |max_ns|
 * from now is not taken: returns |max_ns| (the cap). Thread-safe. */
uint64_t sl_horizon_reserve(_Atomic uint64_t *h, uint64_t now_ns, uint64_t wait_ns,
                            uint64_t period_ns, uint64_t max_ns);

/* The start of the next free slot, reserving nothing (/explain). */
uint64_t sl_horizon_peek(const _Atomic uint64_t *h, uint64_t now_ns, uint64_t wait_ns);

/* The Retry-After value (whole seconds) for a slot starting |slot_ns| from
 * now, of length |period_ns|, with a uniform |rnd|: ceil(slot + u P),
 * clamped to [ceil(min), floor(max)]; a capped slot (>= max) is spread
 * over the cap window as sl_retry_after_s() does. */
uint32_t sl_horizon_retry_after_s(const struct sl_reject_cfg *cfg, uint64_t slot_ns,
                                  uint64_t period_ns, uint64_t rnd);

/* The Retry-After (whole seconds) of one refusal of a crowd: with
 * `spread: backlog` and a known |period_ns|, the next free slot of |h|
 * (reserved when |reserve|, else only looked at, for explain); otherwise,
 * or with |h| NULL, sl_retry_after_s() of |wait_ns|. */
uint32_t sl_horizon_answer(const struct sl_reject_cfg *cfg, _Atomic uint64_t *h, uint64_t now_ns,
                           uint64_t wait_ns, uint64_t period_ns, uint64_t rnd, bool reserve);

#endif
