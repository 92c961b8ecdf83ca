/*
 * sluice — the policy clock (see clock.h), and the injectable offset of
 * SLUICE_TESTING builds. In a file of its own, with no dependencies, so
 * that whatever links the admin endpoint or sl_now_ns() (unit tests too)
 * needs nothing more.
 */
#include <time.h>

#include "core/clock.h"

#ifdef SLUICE_TESTING
_Atomic uint64_t sl_test_clock_offset_ns;

uint64_t sl_test_clock_advance(uint64_t ns) {
  return atomic_fetch_add_explicit(&sl_test_clock_offset_ns, ns, memory_order_relaxed) + ns;
}
#endif

uint64_t sl_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  uint64_t t = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
#ifdef SLUICE_TESTING
  t += atomic_load_explicit(&sl_test_clock_offset_ns, memory_order_relaxed);
#endif
  return t;
}
