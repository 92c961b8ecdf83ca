/*
 * sluice — a cheap per-thread random 64-bit value (xorshift64*), seeded
 * from the clock and the thread's stack address. Only spreads Retry-After
 * and shaping draws, never anything that must be unpredictable.
 */
#ifndef SLUICE_CORE_RAND_H
#define SLUICE_CORE_RAND_H

#include <stdint.h>
#include "core/clock.h"

static inline uint64_t sl_rand64(void) {
  static __thread uint64_t x;
  if (!x) x = sl_now_ns() ^ (uint64_t)(uintptr_t)&x ^ 0x9e3779b97f4a7c15ull;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  return x * 0x2545f4914f6cdd1dull;
}

#endif
