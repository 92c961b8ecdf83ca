/*
 * sluice — CIDR sets. See include/sluice/cidrset.h.
 *
 * An address is a 128-bit number (hi, lo). For each prefix length that
 * occurs, the blocks of that length are an array of (masked address,
 * value) sorted by address then value; a lookup masks the address to each
 * length and finds the equal run by binary search. The values found are
 * merged into ascending order for the caller (who wants "the first entry
 * in configuration order that is live and enforcing").
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "sluice/cidrset.h"

struct block {
  uint64_t hi, lo;
  uint32_t value;
};

struct length_run {
  uint8_t prefix;       /* 0..128, in the IPv6 (mapped) space */
  uint64_t mask_hi, mask_lo;
  struct block *blocks; /* into sl_cidrset.blocks */
  size_t n;
};

struct sl_cidrset {
  struct block *blocks;     /* all, grouped by length then sorted */
  size_t n;
  struct length_run runs[129];
  size_t n_runs;
};

static uint64_t load_be64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v = v << 8 | p[i];
  return v;
}

/* |family|/|addr| as a 128-bit number in the IPv6 space; false for a
 * family that is neither. */
static bool to_u128(uint8_t family, const uint8_t *addr, uint64_t *hi, uint64_t *lo) {
  if (family == AF_INET6) {
    *hi = load_be64(addr);
    *lo = load_be64(addr + 8);
    return true;
  }
  if (family == AF_INET) {
    *hi = 0;
    *lo = 0x0000ffff00000000ull | (uint64_t)addr[0] << 24 | (uint64_t)addr[1] << 16 |
          (uint64_t)addr[2] << 8 | addr[3];
    return true;
  }
  return false;
}

static void prefix_mask(unsigned prefix, uint64_t *hi, uint64_t *lo) {
  *hi = prefix >= 64 ? ~0ull : prefix == 0 ? 0 : ~0ull << (64 - prefix);
  *lo = prefix <= 64 ? 0 : prefix >= 128 ? ~0ull : ~0ull << (128 - prefix);
}

static int block_cmp(const void *pa, const void *pb) {
  const struct block *a = pa, *b = pb;
  if (a->hi != b->hi) return a->hi < b->hi ? -1 : 1;
  if (a->lo != b->lo) return a->lo < b->lo ? -1 : 1;
  return (a->value > b->value) - (a->value < b->value);
}

struct sl_cidrset *sl_cidrset_new(const struct sl_cidr *cidrs, const uint32_t *values, size_t n) {
  struct sl_cidrset *set = calloc(1, sizeof(*set));
  if (!set) return NULL;
  if (n == 0) return set;
  set->blocks = malloc(n * sizeof(*set->blocks));
  uint8_t *len_of = malloc(n);
  if (!set->blocks || !len_of) {
    free(len_of);
    sl_cidrset_del(set);
    return NULL;
  }
  size_t count[129] = {0};
  for (size_t i = 0; i < n; i++) {
    const struct sl_cidr *c = &cidrs[i];
    unsigned prefix = c->family == AF_INET ? 96u + (c->prefix > 32 ? 32u : c->prefix)
                                           : (c->prefix > 128 ? 128u : c->prefix);
    len_of[i] = (uint8_t)prefix;
    count[prefix]++;
  }
  /* Group by length (counting sort), then sort each group. */
  size_t start[129], at = 0;
  for (unsigned l = 0; l <= 128; l++) {
    start[l] = at;
    if (count[l]) {
      struct length_run *r = &set->runs[set->n_runs++];
      r->prefix = (uint8_t)l;
      prefix_mask(l, &r->mask_hi, &r->mask_lo);
      r->blocks = set->blocks + at;
      r->n = count[l];
    }
    at += count[l];
  }
  size_t fill[129];
  memcpy(fill, start, sizeof(fill));
  for (size_t i = 0; i < n; i++) {
    uint64_t hi, lo, mh, ml;
    if (!to_u128(cidrs[i].family, cidrs[i].addr, &hi, &lo)) hi = lo = 0; /* loader: never */
    prefix_mask(len_of[i], &mh, &ml);
    set->blocks[fill[len_of[i]]++] = (struct block){hi & mh, lo & ml, values[i]};
  }
  free(len_of);
  for (size_t r = 0; r < set->n_runs; r++)
    qsort(set->runs[r].blocks, set->runs[r].n, sizeof(struct block), block_cmp);
  set->n = n;
  return set;
}

void sl_cidrset_del(struct sl_cidrset *set) {
  if (!set) return;
  free(set->blocks);
  free(set);
}

size_t sl_cidrset_size(const struct sl_cidrset *set) { return set ? set->n : 0; }

/* First block of |r| at or above (hi, lo). */
static size_t run_lower_bound(const struct length_run *r, uint64_t hi, uint64_t lo) {
  size_t a = 0, b = r->n;
  while (a < b) {
    size_t mid = a + (b - a) / 2;
    const struct block *m = &r->blocks[mid];
    if (m->hi < hi || (m->hi == hi && m->lo < lo))
      a = mid + 1;
    else
      b = mid;
  }
  return a;
}

/* Inserts |v| into the ascending |out| (|*n| of |cap| used), unless it is
 * there already; when |out| is full, the largest value is dropped
 * (*more is set). */
static void add_sorted(uint32_t *out, size_t cap, size_t *n, bool *more, uint32_t v) {
  size_t pos = *n;
  while (pos > 0 && out[pos - 1] > v) pos--;
  if (pos > 0 && out[pos - 1] == v) return;
  if (pos == cap) {
    *more = true;
    return;
  }
  size_t keep = *n < cap ? *n : cap - 1;
  if (*n == cap) *more = true;
  memmove(out + pos + 1, out + pos, (keep - pos) * sizeof(*out));
  out[pos] = v;
  if (*n < cap) (*n)++;
}

size_t sl_cidrset_lookup(const struct sl_cidrset *set, uint8_t family, const uint8_t *addr,
                         uint32_t *out, size_t cap, bool *more) {
  uint64_t hi, lo;
  bool dropped = false;
  size_t n = 0;
  if (set && set->n && cap && to_u128(family, addr, &hi, &lo)) {
    for (size_t r = 0; r < set->n_runs; r++) {
      const struct length_run *run = &set->runs[r];
      uint64_t mh = hi & run->mask_hi, ml = lo & run->mask_lo;
      for (size_t i = run_lower_bound(run, mh, ml);
           i < run->n && run->blocks[i].hi == mh && run->blocks[i].lo == ml; i++)
        add_sorted(out, cap, &n, &dropped, run->blocks[i].value);
    }
  }
  if (more) *more = dropped;
  return n;
}

uint32_t sl_cidrset_first(const struct sl_cidrset *set, uint8_t family, const uint8_t *addr) {
  uint32_t v;
  return sl_cidrset_lookup(set, family, addr, &v, 1, NULL) ? v : UINT32_MAX;
}
