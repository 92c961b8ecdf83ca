/*
 * CIDR sets: lookups agree with a linear scan of the blocks (the obvious
 * definition) on many addresses near the blocks' edges, IPv4 meets IPv4-
 * mapped IPv6, and the output is ascending, deduplicated and capped.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <cmocka.h>

#include "sluice/cidrset.h"
#include "sluice/config.h"
#include "sluice/identify.h"

static struct sl_cidr cidr(const char *s) {
  struct sl_cidr c;
  char err[128];
  assert_int_equal(sl_parse_cidr(s, &c, err, sizeof(err)), 0);
  return c;
}

static void addr_of(const char *s, uint8_t *family, uint8_t *a) {
  memset(a, 0, 16);
  if (strchr(s, ':')) {
    assert_int_equal(inet_pton(AF_INET6, s, a), 1);
    *family = AF_INET6;
  } else {
    assert_int_equal(inet_pton(AF_INET, s, a), 1);
    *family = AF_INET;
  }
}

static void test_basic(void **state) {
  (void)state;
  const char *blocks[] = {"10.0.0.0/8", "10.1.0.0/16", "192.0.2.7", "2001:db8::/32",
                          "2001:db8:1::/48", "0.0.0.0/0", "10.1.2.3/32", "10.0.0.0/8"};
  struct sl_cidr c[8];
  uint32_t v[8] = {4, 2, 7, 3, 1, 9, 2, 0};
  for (int i = 0; i < 8; i++) c[i] = cidr(blocks[i]);
  struct sl_cidrset *set = sl_cidrset_new(c, v, 8);
  assert_non_null(set);
  assert_int_equal(sl_cidrset_size(set), 8);
  uint8_t fam, a[16];
  uint32_t out[8];
  bool more;

  addr_of("10.1.2.3", &fam, a); /* /8 (4 and 0), /16 (2), /32 (2 again), /0 (9) */
  assert_int_equal(sl_cidrset_lookup(set, fam, a, out, 8, &more), 4);
  assert_false(more);
  assert_int_equal(out[0], 0);
  assert_int_equal(out[1], 2);
  assert_int_equal(out[2], 4);
  assert_int_equal(out[3], 9);
  /* capped: the smallest two, and the rest reported */
  assert_int_equal(sl_cidrset_lookup(set, fam, a, out, 2, &more), 2);
  assert_true(more);
  assert_int_equal(out[0], 0);
  assert_int_equal(out[1], 2);
  assert_int_equal(sl_cidrset_first(set, fam, a), 0);

  addr_of("11.0.0.1", &fam, a); /* only 0.0.0.0/0 */
  assert_int_equal(sl_cidrset_first(set, fam, a), 9);
  addr_of("::ffff:192.0.2.7", &fam, a); /* mapped form meets the IPv4 block */
  assert_int_equal(sl_cidrset_lookup(set, fam, a, out, 8, NULL), 2);
  assert_int_equal(out[0], 7);
  assert_int_equal(out[1], 9);
  addr_of("2001:db8:1:ffff::1", &fam, a);
  assert_int_equal(sl_cidrset_lookup(set, fam, a, out, 8, NULL), 2);
  assert_int_equal(out[0], 1);
  assert_int_equal(out[1], 3);
  addr_of("2001:db9::1", &fam, a); /* no IPv6 block; /0 is IPv4 only */
  assert_int_equal(sl_cidrset_first(set, fam, a), UINT32_MAX);
  assert_int_equal(sl_cidrset_lookup(set, 0, a, out, 8, NULL), 0); /* unix peer */
  sl_cidrset_del(set);

  struct sl_cidrset *empty = sl_cidrset_new(NULL, NULL, 0);
  assert_non_null(empty);
  addr_of("10.0.0.1", &fam, a);
  assert_int_equal(sl_cidrset_first(empty, fam, a), UINT32_MAX);
  assert_int_equal(sl_cidrset_first(NULL, fam, a), UINT32_MAX);
  sl_cidrset_del(empty);
}

/* The definition: |c| contains the address, IPv4 and IPv4-mapped IPv6
 * being the same addresses. */
static bool contains(const struct sl_cidr *c, uint8_t fam, const uint8_t *a) {
  static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  uint8_t m[16];
  if (fam == AF_INET && c->family == AF_INET6) {
    memcpy(m, mapped, 12);
    memcpy(m + 12, a, 4);
    return sl_cidr_match(c, 1, AF_INET6, m);
  }
  if (fam == AF_INET6 && c->family == AF_INET && !memcmp(a, mapped, 12))
    return sl_cidr_match(c, 1, AF_INET, a + 12);
  return sl_cidr_match(c, 1, fam, a);
}

/* A deterministic generator, so a failure can be replayed. */
static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t next(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (uint32_t)(rng >> 16);
}

/* 3,000 random blocks of varied lengths, both families; 20,000 addresses
 * drawn near blocks (a block's address with bits flipped) and at
 * random: every lookup equals the scan's answer. */
static void test_agrees_with_scan(void **state) {
  (void)state;
  enum { N = 3000, Q = 20000, CAP = 64 };
  static struct sl_cidr c[N];
  static uint32_t v[N];
  for (int i = 0; i < N; i++) {
    memset(&c[i], 0, sizeof(c[i]));
    bool v6 = next() % 3 == 0;
    c[i].family = v6 ? AF_INET6 : AF_INET;
    unsigned max = v6 ? 128 : 32;
    /* few distinct lengths, as in real lists, plus some odd ones */
    static const uint8_t common4[] = {8, 16, 24, 32}, common6[] = {32, 48, 64, 128};
    c[i].prefix = next() % 4 ? (v6 ? common6 : common4)[next() % 4] : (uint8_t)(1 + next() % max);
    for (unsigned b = 0; b < max / 8; b++) c[i].addr[b] = (uint8_t)(next() % 4); /* dense */
    for (unsigned bit = c[i].prefix; bit < max; bit++)
      c[i].addr[bit / 8] &= (uint8_t)~(0x80 >> (bit % 8));
    v[i] = next() % 1000; /* repeats on purpose */
  }
  struct sl_cidrset *set = sl_cidrset_new(c, v, N);
  assert_non_null(set);
  int none = 0, capped = 0; /* the draw reaches both ends */
  for (int q = 0; q < Q; q++) {
    const struct sl_cidr *near = &c[next() % N];
    uint8_t fam = near->family, a[16];
    memcpy(a, near->addr, 16);
    unsigned max = fam == AF_INET6 ? 128 : 32;
    if (q % 2) /* anywhere: mostly outside every block (none has its top bit set) */
      for (unsigned b = 0; b < max / 8; b++) a[b] = (uint8_t)next();
    int flips = (int)(next() % 3);
    for (int f = 0; f < flips; f++) {
      unsigned bit = next() % max;
      a[bit / 8] ^= (uint8_t)(0x80 >> (bit % 8));
    }
    uint32_t want[N];
    size_t n_want = 0;
    for (int i = 0; i < N; i++) {
      if (!contains(&c[i], fam, a)) continue;
      bool dup = false;
      for (size_t k = 0; k < n_want; k++) dup |= want[k] == v[i];
      if (!dup) want[n_want++] = v[i];
    }
    for (size_t x = 1; x < n_want; x++) /* insertion sort */
      for (size_t y = x; y > 0 && want[y - 1] > want[y]; y--) {
        uint32_t t = want[y];
        want[y] = want[y - 1];
        want[y - 1] = t;
      }
    uint32_t got[CAP];
    bool more;
    size_t n = sl_cidrset_lookup(set, fam, a, got, CAP, &more);
    assert_int_equal(n, n_want < CAP ? n_want : CAP);
    assert_int_equal(more, n_want > CAP);
    for (size_t k = 0; k < n; k++) assert_int_equal(got[k], want[k]);
    none += n_want == 0;
    capped += n_want > CAP;
  }
  assert_true(none > 0);
  assert_true(capped > 0);
  sl_cidrset_del(set);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_basic),
      cmocka_unit_test(test_agrees_with_scan),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
