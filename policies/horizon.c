/*
 * sluice — reservation horizons of shared keys. See horizon.h for the
 * maths.
 */
#include "sluice/horizon.h"
#include "sluice/retry.h"

static inline uint64_t sat_add(uint64_t a, uint64_t b) { return a + b < a ? UINT64_MAX : a + b; }

uint64_t sl_horizon_peek(const _Atomic uint64_t *h, uint64_t now_ns, uint64_t wait_ns) {
  uint64_t end = atomic_load_explicit(h, memory_order_relaxed);
  uint64_t earliest = sat_add(now_ns, wait_ns);
  return (end > earliest ? end : earliest) - now_ns;
}

uint64_t sl_horizon_reserve(_Atomic uint64_t *h, uint64_t now_ns, uint64_t wait_ns,
                            uint64_t period_ns, uint64_t max_ns) {
  uint64_t earliest = sat_add(now_ns, wait_ns);
  uint64_t end = atomic_load_explicit(h, memory_order_relaxed);
  for (;;) {
    uint64_t slot = end > earliest ? end : earliest;
    if (slot - now_ns >= max_ns) return max_ns; /* the cap: no slot taken */
    if (atomic_compare_exchange_weak_explicit(h, &end, sat_add(slot, period_ns),
                                              memory_order_relaxed, memory_order_relaxed))
      return slot - now_ns;
  }
}

uint32_t sl_horizon_retry_after_s(const struct sl_reject_cfg *cfg, uint64_t slot_ns,
                                  uint64_t period_ns, uint64_t rnd) {
  if (slot_ns >= sl_horizon_max_ns(cfg)) return sl_retry_after_s(cfg, slot_ns, rnd);
  uint64_t t = sat_add(slot_ns, (uint64_t)(((unsigned __int128)rnd * period_ns) >> 64));
  uint64_t s = t / 1000000000u + (t % 1000000000u != 0);
  uint64_t min_s = (cfg->retry_after_min_ms + 999) / 1000;
  uint64_t max_s = cfg->retry_after_max_ms / 1000;
  if (max_s < min_s) max_s = min_s;
  if (s < min_s) s = min_s;
  if (s > max_s) s = max_s;
  return s > UINT32_MAX ? UINT32_MAX : (uint32_t)s;
}

uint32_t sl_horizon_answer(const struct sl_reject_cfg *cfg, _Atomic uint64_t *h, uint64_t now_ns,
                           uint64_t wait_ns, uint64_t period_ns, uint64_t rnd, bool reserve) {
  if (!h || !period_ns || cfg->spread != SL_SPREAD_BACKLOG) return sl_retry_after_s(cfg, wait_ns, rnd);
  uint64_t slot = reserve ? sl_horizon_reserve(h, now_ns, wait_ns, period_ns, sl_horizon_max_ns(cfg))
                          : sl_horizon_peek(h, now_ns, wait_ns);
  return sl_horizon_retry_after_s(cfg, slot, period_ns, rnd);
}
