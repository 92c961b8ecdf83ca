/*
 * sluice — reservation horizons of shared keys (types only). Functions
 * and the maths in horizon.h.
 */
#ifndef SLUICE_HORIZON_T_H
#define SLUICE_HORIZON_T_H

#include <stdatomic.h>
#include <stdint.h>

#define SL_HORIZON_WAYS 16

/* The horizons of one limit: H per way (monotonic ns, the end of the
 * last slot handed out; 0: none yet). */
struct sl_horizons {
  _Atomic uint64_t end_ns[SL_HORIZON_WAYS];
};

#endif
