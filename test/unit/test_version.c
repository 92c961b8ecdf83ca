/* Unit tests for policies/version.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "sluice/version.h"

static struct sl_version V(const char *s) {
  struct sl_version v;
  if (sl_version_parse(s, strlen(s), &v) != 0) fail_msg("cannot parse %s", s);
  return v;
}

/* ---- parsing ------------------------------------------------------ */

struct parse_case {
  const char *in;
  int ok;
  const char *canon; /* sl_version_format() of the result */
};

static const struct parse_case parse_cases[] = {
    {"3.8.0", 1, "3.8.0"},
    {"v3.8", 1, "3.8.0"},
    {"V3.8.0", 1, "3.8.0"},
    {"3", 1, "3.0.0"},
    {"3.8.0.1", 1, "3.8.0.1"},
    {"3.8.0.0", 1, "3.8.0"},
    {"3.8.0-b3", 1, "3.8.0-b3"},
    {"3.8.0b3", 1, "3.8.0-b3"},
    {"3.8.0-B3", 1, "3.8.0-b3"},
    {"3.8.0-rc1", 1, "3.8.0-rc1"},
    {"3.8.0-b10", 1, "3.8.0-b10"},
    {"3.8.0-rc.1", 1, "3.8.0-rc.1"},
    {"3.8.0-1", 1, "3.8.0-1"},
    {"3.8.0+build", 1, "3.8.0"},
    {"3.8.0-rc1+build.7", 1, "3.8.0-rc1"},
    {"3.8b3", 1, "3.8.0-b3"},
    {" 3.8.0\t", 1, "3.8.0"},
    {"4294967295.0.0", 1, "4294967295.0.0"},
    {"007.08.09", 1, "7.8.9"},
    {"3.8.0-beta-2", 1, "3.8.0-beta-2"},
    /* garbage */
    {"", 0, NULL},
    {"   ", 0, NULL},
    {"abc", 0, NULL},
    {"v", 0, NULL},
    {"3..8", 0, NULL},
    {"3.8.-1", 0, NULL},
    {"3.8.", 0, NULL},
    {".3.8", 0, NULL},
    {"3.8.0-", 0, NULL},
    {"3.8.0-b.", 0, NULL},
    {"3.8.0--b", 0, NULL},
    {"3.8.0+", 0, NULL},
    {"3.8.0 x", 0, NULL},
    {"3.8.0.1.2", 0, NULL},
    {"4294967296.0.0", 0, NULL},
    {"3.99999999999999999999", 0, NULL},
    {"3.8.x", 0, NULL},
    {"3.8.0_b3", 0, NULL},
    {"-3.8.0", 0, NULL},
    {"3.8.0-aaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 0, NULL}, /* tag longer than we store */
    {"3,8,0", 0, NULL},
    {"vv3", 0, NULL},
};

static void test_parse_table(void **st) {
  (void)st;
  for (size_t i = 0; i < sizeof(parse_cases) / sizeof(parse_cases[0]); i++) {
    const struct parse_case *c = &parse_cases[i];
    struct sl_version v;
    int rc = sl_version_parse(c->in, strlen(c->in), &v);
    if ((rc == 0) != c->ok) fail_msg("parse \"%s\": rc %d, want ok=%d", c->in, rc, c->ok);
    if (c->ok) {
      char buf[64];
      assert_true(sl_version_format(&v, buf, sizeof(buf)) > 0);
      if (strcmp(buf, c->canon) != 0) fail_msg("parse \"%s\": got %s want %s", c->in, buf, c->canon);
    }
  }
}

static void test_parse_not_nul_terminated(void **st) {
  (void)st;
  const char buf[] = {'3', '.', '8', '.', '0', '-', 'b', '3', 'X', 'Y'};
  struct sl_version v;
  assert_int_equal(sl_version_parse(buf, 8, &v), 0);
  assert_string_equal(v.pre, "b3");
  assert_int_equal(sl_version_parse(buf, 10, &v), 0); /* "3.8.0-b3XY": tag b3xy */
  assert_string_equal(v.pre, "b3xy");
}

/* Every prefix of every case, in a buffer of exactly that size (ASan
 * catches a read past |len|), and every prefix of every range. */
static void test_parse_every_prefix(void **st) {
  (void)st;
  for (size_t i = 0; i < sizeof(parse_cases) / sizeof(parse_cases[0]); i++) {
    const char *in = parse_cases[i].in;
    size_t n = strlen(in);
    for (size_t l = 0; l <= n; l++) {
      char *b = malloc(l ? l : 1);
      memcpy(b, in, l);
      struct sl_version v;
      if (sl_version_parse(b, l, &v) == 0) assert_true(v.pre[SL_VERSION_PRE_MAX - 1] == '\0');
      free(b);
    }
  }
  const char *ranges[] = {">=3.8.0-b3 <3.8.1", "=1.2.3 || >2", "3.8.x || v4.*", "<= 1.0.0-rc.1+b"};
  for (size_t i = 0; i < 4; i++)
    for (size_t l = 0; l <= strlen(ranges[i]); l++) {
      char *b = strndup(ranges[i], l);
      struct sl_vrange r;
      size_t off = 0;
      if (sl_vrange_parse(b, &r, NULL, 0, &off) == 0) sl_vrange_free(&r);
      else assert_true(off <= l);
      free(b);
    }
}

/* ---- ordering ----------------------------------------------------- */

struct order_case {
  const char *a, *b;
  int want; /* sign */
};

static const struct order_case order_cases[] = {
    {"3.8.0-b3", "3.8.0-b10", -1},
    {"3.8.0-b10", "3.8.0-rc1", -1},
    {"3.8.0-rc1", "3.8.0", -1},
    {"3.8.0-b2", "3.8.0-b3", -1},
    {"3.8.0", "3.8.0.1", -1},
    {"3.8.0.1", "3.8.1-b1", -1},
    {"3.8.0", "v3.8", 0},
    {"3.8.0b3", "3.8.0-b3", 0},
    {"3.8.0-rc.1", "3.8.0-rc1", 0},
    {"3.8.0-RC1", "3.8.0-rc1", 0},
    {"3.8.0-b03", "3.8.0-b3", 0},
    {"3.8.0+a", "3.8.0+b", 0},
    {"3.8.0-alpha", "3.8.0-beta", -1},
    {"3.8.0-rc", "3.8.0-rc1", -1},
    {"3.8.0-1", "3.8.0-a", -1}, /* digits before letters */
    {"3.8.0-0", "3.8.0-1", -1},
    {"3.8.0-b1.2", "3.8.0-b12", -1},
    {"3.10.0", "3.9.9", 1},
    {"10.0.0", "9.99.99", 1},
    {"3.8.0-b99999999999999999999", "3.8.0-b100000000000000000000", -1}, /* no overflow */
};

static void test_order_table(void **st) {
  (void)st;
  for (size_t i = 0; i < sizeof(order_cases) / sizeof(order_cases[0]); i++) {
    const struct order_case *c = &order_cases[i];
    struct sl_version a, b;
    if (sl_version_parse(c->a, strlen(c->a), &a) || sl_version_parse(c->b, strlen(c->b), &b))
      fail_msg("cannot parse %s or %s", c->a, c->b);
    int r = sl_version_cmp(&a, &b), s = sl_version_cmp(&b, &a);
    int sign = (r > 0) - (r < 0), rsign = (s > 0) - (s < 0);
    if (sign != c->want || rsign != -c->want)
      fail_msg("cmp(%s, %s) = %d, want %d (reverse %d)", c->a, c->b, r, c->want, s);
  }
}

/* Transitivity over a sorted list. */
static void test_order_chain(void **st) {
  (void)st;
  const char *chain[] = {"1", "3.7.9", "3.8.0-0", "3.8.0-1", "3.8.0-alpha", "3.8.0-b",
                         "3.8.0-b2", "3.8.0-b3", "3.8.0-b10", "3.8.0-rc1", "3.8.0-rc2",
                         "3.8.0", "3.8.0.1", "3.8.1-b1", "3.8.1", "3.9.0-0", "3.9.0"};
  size_t n = sizeof(chain) / sizeof(chain[0]);
  for (size_t i = 0; i < n; i++)
    for (size_t j = 0; j < n; j++) {
      struct sl_version a = V(chain[i]), b = V(chain[j]);
      int r = sl_version_cmp(&a, &b);
      int want = (i > j) - (i < j);
      if (((r > 0) - (r < 0)) != want) fail_msg("cmp(%s,%s)=%d want %d", chain[i], chain[j], r, want);
    }
}

/* ---- ranges ------------------------------------------------------- */

struct range_case {
  const char *range, *version;
  int match;
};

static const struct range_case range_cases[] = {
    /* the SPEC / INC-2041 example */
    {">=3.8.0-b3 <3.8.1", "3.8.0-b2", 0},
    {">=3.8.0-b3 <3.8.1", "3.8.0-b3", 1},
    {">=3.8.0-b3 <3.8.1", "3.8.0-b10", 1},
    {">=3.8.0-b3 <3.8.1", "3.8.0", 1},
    {">=3.8.0-b3 <3.8.1", "3.8.0.7", 1},
    {">=3.8.0-b3 <3.8.1", "3.8.1-rc1", 1}, /* total order: older than 3.8.1 */
    {">=3.8.0-b3 <3.8.1", "3.8.1", 0},
    {">=3.8.0-b3 <3.8.1", "3.7.9", 0},
    {"3.8.0", "3.8.0", 1},
    {"3.8.0", "v3.8", 1},
    {"3.8.0", "3.8.0+build", 1},
    {"3.8.0", "3.8.0-rc1", 0},
    {"3.8.0", "3.8.0.1", 0},
    {"=3.8", "3.8.0", 1},
    {"=3.8", "3.8.1", 0},
    {"> 3.8.0", "3.8.0", 0},
    {">3.8.0", "3.8.0.1", 1},
    {"<=3.8.0", "3.8.0", 1},
    {"<=3.8.0", "3.8.0.1", 0},
    {"<3.8.0", "3.8.0-rc9", 1},
    /* wildcards */
    {"3.8.x", "3.8.0-b1", 1},
    {"3.8.x", "3.8.0-0", 1},
    {"3.8.x", "3.8.0", 1},
    {"3.8.x", "3.8.77.1", 1},
    {"3.8.x", "3.7.99", 0},
    {"3.8.x", "3.9.0-b1", 0},
    {"3.8.x", "3.9.0-0", 0},
    {"3.8.*", "3.8.5", 1},
    {"3.x", "3.99.0", 1},
    {"3.x", "4.0.0-rc1", 0},
    {"3.x.x", "3.0.0-a", 1},
    {"v3.8.X", "3.8.1", 1},
    {"x", "0.0.0-0", 1},
    {"*", "99.0.0", 1},
    {"4294967295.x", "4294967295.4294967295.1", 1},
    /* OR */
    {"=1.2.3 || >2", "1.2.3", 1},
    {"=1.2.3 || >2", "2.0.0", 0},
    {"=1.2.3 || >2", "2.0.1", 1},
    {"1.0.0||3.8.x", "3.8.2", 1},
    {"<1 || >=3.8.0-b3 <3.8.1 || 9.x", "0.9.0", 1},
    {"<1 || >=3.8.0-b3 <3.8.1 || 9.x", "3.8.0-b2", 0},
    {"<1 || >=3.8.0-b3 <3.8.1 || 9.x", "9.1.0", 1},
    {">=2 <1", "1.5.0", 0}, /* empty interval */
};

static void test_range_table(void **st) {
  (void)st;
  for (size_t i = 0; i < sizeof(range_cases) / sizeof(range_cases[0]); i++) {
    const struct range_case *c = &range_cases[i];
    struct sl_vrange r;
    char err[128];
    size_t off = 0;
    if (sl_vrange_parse(c->range, &r, err, sizeof(err), &off) != 0)
      fail_msg("range \"%s\": %s at %zu", c->range, err, off);
    struct sl_version v = V(c->version);
    if (sl_vrange_match(&r, &v) != (c->match != 0))
      fail_msg("range \"%s\" vs %s: want %d", c->range, c->version, c->match);
    sl_vrange_free(&r);
  }
}

struct bad_range {
  const char *range;
  size_t off;
};

static const struct bad_range bad_ranges[] = {
    {"", 0},
    {"   ", 3},
    {">=3.8.0-b3 <3..1", 12},
    {">=", 0},
    {">= ", 0},
    {"3.8.0 | 4", 6},
    {"|| 3.8.0", 0},
    {"3.8.0 ||", 8},
    {"3.8.0 || || 4", 9},
    {">3.8.x", 0},
    {"3.x.5", 0},
    {"3.8.0 abc", 6},
    {"~3.8", 0},
    {"3.8.0 - 3.9.0", 6},
    {"=>3.8", 1},
    {"3.8.0-x.", 0},
    {"99999999999", 0},
};

static void test_range_errors(void **st) {
  (void)st;
  for (size_t i = 0; i < sizeof(bad_ranges) / sizeof(bad_ranges[0]); i++) {
    struct sl_vrange r;
    char err[128] = "";
    size_t off = 999;
    if (sl_vrange_parse(bad_ranges[i].range, &r, err, sizeof(err), &off) == 0) {
      sl_vrange_free(&r);
      fail_msg("range \"%s\" accepted", bad_ranges[i].range);
    }
    assert_true(err[0] != '\0');
    if (off != bad_ranges[i].off)
      fail_msg("range \"%s\": offset %zu want %zu (%s)", bad_ranges[i].range, off, bad_ranges[i].off, err);
  }
}

/* Structure of a parsed wildcard: the documented bounds. */
static void test_wildcard_bounds(void **st) {
  (void)st;
  struct sl_vrange r;
  assert_int_equal(sl_vrange_parse("3.8.x", &r, NULL, 0, NULL), 0);
  assert_int_equal(r.n, 1);
  assert_int_equal(r.clauses[0].n, 2);
  char a[32], b[32];
  sl_version_format(&r.clauses[0].cmps[0].v, a, sizeof(a));
  sl_version_format(&r.clauses[0].cmps[1].v, b, sizeof(b));
  assert_int_equal(r.clauses[0].cmps[0].op, SL_VOP_GE);
  assert_string_equal(a, "3.8.0-0");
  assert_int_equal(r.clauses[0].cmps[1].op, SL_VOP_LT);
  assert_string_equal(b, "3.9.0-0");
  sl_vrange_free(&r);
  sl_vrange_free(&r); /* idempotent */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parse_table),    cmocka_unit_test(test_parse_not_nul_terminated),
      cmocka_unit_test(test_parse_every_prefix),
      cmocka_unit_test(test_order_table),    cmocka_unit_test(test_order_chain),
      cmocka_unit_test(test_range_table),    cmocka_unit_test(test_range_errors),
      cmocka_unit_test(test_wildcard_bounds),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
