/*
 * sluice — firmware versions and version ranges (types only).
 * Semantics: SPEC section 4 "Firmware versions"; functions in version.h.
 */
#ifndef SLUICE_VERSION_T_H
#define SLUICE_VERSION_T_H

#include <stddef.h>
#include <stdint.h>

/* A parsed firmware version. Up to four numeric components (a fourth, as in
 * 3.8.0.1, orders after 3.8.0); `pre` is the pre-release tag without its
 * separator ("b3", "rc1"); an empty tag is a release, which orders after
 * every pre-release of the same numbers. */
#define SL_VERSION_PRE_MAX 24
struct sl_version {
  uint32_t num[4];
  char pre[SL_VERSION_PRE_MAX]; /* NUL-terminated, lowercase */
};

enum sl_vop { SL_VOP_EQ = 0, SL_VOP_LT, SL_VOP_LE, SL_VOP_GT, SL_VOP_GE };

struct sl_vcmp {
  enum sl_vop op;
  struct sl_version v;
};

/* A conjunction of comparisons ("space for AND"). */
struct sl_vclause {
  struct sl_vcmp *cmps;
  size_t n;
};

/* A disjunction of clauses ("|| for OR"). Owns its arrays; release with
 * sl_vrange_free(). */
struct sl_vrange {
  struct sl_vclause *clauses;
  size_t n;
};

#endif
