/*
 * sluice — the policy clock (proxy/core/clock.c).
 *
 * Monotonic nanoseconds (vDSO clock, no syscall): limiter and breaker
 * time, identical across workers. In SLUICE_TESTING builds it runs ahead
 * by an offset that only grows (sl_test_clock_advance(), admin POST
 * /testing/clock?advance_ms=N), so integration tests move policy time past
 * an open_for or a bucket's refill instead of sleeping; release builds
 * have neither the offset nor the endpoint.
 */
#ifndef SLUICE_CORE_CLOCK_H
#define SLUICE_CORE_CLOCK_H

#include <stdatomic.h>
#include <stdint.h>

uint64_t sl_now_ns(void);
#ifdef SLUICE_TESTING
/* The offset, and a call that moves sl_now_ns() forward by |ns| for every
 * thread and returns the total offset. */
extern _Atomic uint64_t sl_test_clock_offset_ns;
uint64_t sl_test_clock_advance(uint64_t ns);
#endif

#endif
