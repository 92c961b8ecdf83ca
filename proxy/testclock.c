/*
 * sluice — the injectable policy clock of SLUICE_TESTING builds (see
 * sl_now_ns() in proxy.h). In a file of its own, with no dependencies, so
 * that whatever links the admin endpoint or sl_now_ns() (unit tests too)
 * needs nothing more. Release builds compile it to nothing.
 */
#ifdef SLUICE_TESTING
#include "proxy.h"

_Atomic uint64_t sl_test_clock_offset_ns;

uint64_t sl_test_clock_advance(uint64_t ns) {
  return atomic_fetch_add_explicit(&sl_test_clock_offset_ns, ns, memory_order_relaxed) + ns;
}
#else
typedef int sl_testclock_empty; /* ISO C: a translation unit is not empty */
#endif
