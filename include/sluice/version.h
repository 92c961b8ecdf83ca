/*
 * sluice — firmware version parsing and range matching (pure functions).
 */
#ifndef SLUICE_VERSION_H
#define SLUICE_VERSION_H

#include <stdbool.h>
#include "sluice/version-t.h"

/* Parses what devices really send: "3.8.0", "v3.8", "3.8.0.1", "3.8.0-b3",
 * "3.8.0b3", "3.8.0-rc1". Returns 0 on success, -1 if |s| (|len| bytes, not
 * necessarily NUL-terminated) is not a version. */
int sl_version_parse(const char *s, size_t len, struct sl_version *out);

/* <0, 0, >0 like strcmp. Pre-release tags compare naturally: runs of
 * letters lexically, runs of digits numerically (b3 < b10 < rc1), and a
 * release after all of its pre-releases. */
int sl_version_cmp(const struct sl_version *a, const struct sl_version *b);

/* Writes the canonical form ("3.8.0", "3.8.0.1", "3.8.0-b3") NUL-terminated
 * into |buf|; returns its length, or -1 if |cap| is too small. */
int sl_version_format(const struct sl_version *v, char *buf, size_t cap);

/* Parses a range expression (">=3.8.0-b3 <3.8.1", "3.8.x", "=1.2.3 || >2").
 * A range is a union of intervals of the total order of sl_version_cmp();
 * "3.8.x" is ">=3.8.0-0 <3.9.0-0" (all pre-releases of 3.8.0 included, none
 * of 3.9.0), and a bare "3.8" is "=3.8.0". Full grammar in policies/version.c.
 * On error returns -1 and writes a message and the 0-based byte offset of
 * the offending token to |err|/|err_off| (for FILE:LINE:COL). On success
 * returns 0 and |out| owns heap memory: release it with sl_vrange_free(). */
int sl_vrange_parse(const char *expr, struct sl_vrange *out, char *err,
                    size_t errlen, size_t *err_off);
void sl_vrange_free(struct sl_vrange *r);
bool sl_vrange_match(const struct sl_vrange *r, const struct sl_version *v);

#endif
