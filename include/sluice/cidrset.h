/*
 * sluice — a set of CIDR blocks, each carrying a value (an entry index):
 * "which entries cover this address?" in a lookup, not a scan.
 *
 * Blocks are kept per prefix length, as sorted arrays of masked
 * addresses; a lookup masks the address once per prefix length present
 * and binary-searches that length's array. Thousands of blocks of a
 * handful of lengths (/32, /24, /64, /128 in practice) cost a few
 * searches of a dozen steps each. IPv4 is stored as IPv4-mapped IPv6
 * (::ffff:a.b.c.d, prefix + 96), so an IPv4 client seen on a dual-stack
 * socket matches the IPv4 blocks. Immutable once built: lookups are pure,
 * allocation-free and thread-safe.
 */
#ifndef SLUICE_CIDRSET_H
#define SLUICE_CIDRSET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice/config-t.h"

struct sl_cidrset;

/* Builds the set of |n| blocks, block i carrying |values[i]| (a value may
 * appear with many blocks; the same block may carry many values). Returns
 * NULL when memory runs out; n == 0 gives an empty set. */
struct sl_cidrset *sl_cidrset_new(const struct sl_cidr *cidrs, const uint32_t *values, size_t n);
void sl_cidrset_del(struct sl_cidrset *set);

/* The values of the blocks that contain the address (|family| AF_INET
 * with |addr| 4 bytes, or AF_INET6 with 16): the smallest |cap| of them,
 * ascending and without repeats, in |out|. Returns how many were stored;
 * |*more| (unless NULL) says whether larger ones were left out. 0 for an
 * empty or NULL set, another family, or cap 0. */
size_t sl_cidrset_lookup(const struct sl_cidrset *set, uint8_t family, const uint8_t *addr,
                         uint32_t *out, size_t cap, bool *more);

/* The smallest value whose block contains the address, or UINT32_MAX. */
uint32_t sl_cidrset_first(const struct sl_cidrset *set, uint8_t family, const uint8_t *addr);

/* Number of blocks, for explain and logs. */
size_t sl_cidrset_size(const struct sl_cidrset *set);

#endif
