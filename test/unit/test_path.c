/*
 * Unit tests for policies/path.c: the normal form of request paths (RFC
 * 3986 §6.2.2, §5.2.4), what is refused, and segment-boundary prefix
 * matching. Besides the vectors, every path of up to 6 bytes over an
 * alphabet of the bytes that matter is checked against a second,
 * independent implementation (split into segments, decode, stack) and for
 * the properties of a normal form (idempotent, never longer, plain paths
 * unchanged), with the output buffer sized exactly as the contract says
 * so ASan catches any overrun.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/path.h"

/* Normalises |in|; returns a malloc'd result or NULL, status in |*st|. */
static char *norm(const char *in0, size_t len, enum sl_path_status *st) {
  /* Input and output on the heap at their exact sizes: ASan reports any
   * read past the input or write past len + 1. */
  char *in = malloc(len ? len : 1);
  char *out = malloc(len + 1); /* exactly what the contract asks for */
  assert_non_null(in);
  assert_non_null(out);
  memcpy(in, in0, len);
  size_t ol = 0;
  *st = sl_path_normalize(in, len, out, &ol);
  free(in);
  if (*st != SL_PATH_OK) {
    free(out);
    return NULL;
  }
  assert_int_equal(strlen(out), ol);
  return out;
}

static void expect(const char *in, const char *want) {
  enum sl_path_status st;
  char *got = norm(in, strlen(in), &st);
  if (!got) fail_msg("'%s' refused (%s), want '%s'", in, sl_path_status_name(st), want);
  if (strcmp(got, want) != 0) fail_msg("'%s' -> '%s', want '%s'", in, got, want);
  free(got);
}

static void refused(const char *in, size_t len, enum sl_path_status want) {
  enum sl_path_status st;
  char *got = norm(in, len, &st);
  if (got) fail_msg("'%s' accepted as '%s'", in, got);
  if (st != want)
    fail_msg("'%s': %s, want %s", in, sl_path_status_name(st), sl_path_status_name(want));
}

static void test_issue_examples(void **state) {
  (void)state;
  expect("/v1//connect", "/v1/connect");
  expect("/v1/%63onnect", "/v1/connect");
  expect("/v1/./connect", "/v1/connect");
  expect("/v1/connect", "/v1/connect");
  expect("/v1/x/../connect", "/v1/connect");
  expect("/v1/%2E/connect", "/v1/connect");
  expect("/v1/%2e%2E/v1/connect", "/v1/connect");
  expect("//v1///connect//", "/v1/connect/");
}

static void test_percent_encoding(void **state) {
  (void)state;
  /* Unreserved characters decoded (§6.2.2.2), the others upper-cased
   * (§6.2.2.1). */
  expect("/%41%5a%61%7A%30%39%2D%2E%5F%7E", "/AZaz09-._~");
  expect("/a%3ab", "/a%3Ab");
  expect("/a%3Ab", "/a%3Ab");
  expect("/%25", "/%25");
  expect("/%25%32%46", "/%252F"); /* decoded once only: %2532 -> %25 + '2' */
  expect("/%c3%a9", "/%C3%A9");
  expect("/%20x", "/%20x");
  expect("/%3F", "/%3F"); /* an encoded '?' is not a query */
  refused("/a%", 3, SL_PATH_BAD_ESCAPE);
  refused("/a%4", 4, SL_PATH_BAD_ESCAPE);
  refused("/a%g1", 5, SL_PATH_BAD_ESCAPE);
  refused("/a%4?b", 6, SL_PATH_BAD_ESCAPE);
  refused("/a%2F..", 7, SL_PATH_ENCODED_SLASH);
  refused("/a%2f", 5, SL_PATH_ENCODED_SLASH);
  refused("/a%5C", 5, SL_PATH_BACKSLASH);
  refused("/a%5c", 5, SL_PATH_BACKSLASH);
  refused("/a\\b", 4, SL_PATH_BACKSLASH);
  refused("/a%00", 5, SL_PATH_CONTROL);
  refused("/a\0b", 4, SL_PATH_CONTROL);
  refused("/a%0d%0a", 8, SL_PATH_CONTROL);
  refused("/a\tb", 4, SL_PATH_CONTROL);
  refused("/a%7f", 5, SL_PATH_CONTROL);
}

static void test_dot_segments(void **state) {
  (void)state;
  /* RFC 3986 §5.2.4 examples, for absolute paths. */
  expect("/a/b/c/./../../g", "/a/g");
  expect("/mid/content=5/../6", "/mid/6");
  expect("/.", "/");
  expect("/a/.", "/a/");
  expect("/a/..", "/");
  expect("/a/b/..", "/a/");
  expect("/a/b/../", "/a/");
  expect("/a/./b/./", "/a/b/");
  expect("/a/.b/..c/...", "/a/.b/..c/...");
  expect("/.well-known/x", "/.well-known/x");
  expect("/a//..", "/"); /* merged first: "/a/.." */
  refused("/..", 3, SL_PATH_ESCAPES_ROOT);
  refused("/../a", 5, SL_PATH_ESCAPES_ROOT);
  refused("/a/../..", 8, SL_PATH_ESCAPES_ROOT);
  refused("/a/./../../b", 12, SL_PATH_ESCAPES_ROOT);
  refused("/%2e%2e", 7, SL_PATH_ESCAPES_ROOT);
  refused("//..", 4, SL_PATH_ESCAPES_ROOT);
}

static void test_query_untouched(void **state) {
  (void)state;
  expect("/v1//a?x=//./%2f%5c&y=%zz", "/v1/a?x=//./%2f%5c&y=%zz");
  expect("/a/./b#/../c", "/a/b#/../c");
  expect("/?", "/?");
  expect("/a/..?q", "/?q");
  refused("?x", 2, SL_PATH_NOT_ABSOLUTE);
  refused("", 0, SL_PATH_NOT_ABSOLUTE);
  refused("a/b", 3, SL_PATH_NOT_ABSOLUTE);
  refused("*", 1, SL_PATH_NOT_ABSOLUTE); /* the caller treats "*" itself */
}

/* What an HTTP/1.1 request line cannot carry raw, an HTTP/2 :path can: a
 * space, a byte beyond ASCII, a control character in the query (found by
 * fuzz_h2: "/up/\x92" forwarded to the origin broke its request line). */
static void test_invalid_raw_bytes(void **state) {
  (void)state;
  refused("/up/\x92", 5, SL_PATH_INVALID_CHAR);
  refused("/a b", 4, SL_PATH_INVALID_CHAR);
  refused("/a?x=\xc3\xa9", 8, SL_PATH_INVALID_CHAR);
  refused("/a?x y", 6, SL_PATH_INVALID_CHAR);
  refused("/a?x\x01", 5, SL_PATH_CONTROL);
  refused("/a#\x7f", 4, SL_PATH_CONTROL);
  expect("/a?x=%C3%A9", "/a?x=%C3%A9"); /* encoded: fine */
  assert_false(sl_path_is_plain("/up/\x92", 5));
  assert_false(sl_path_is_plain("/a?x y", 6));
  assert_false(sl_path_is_plain("/a?x\x01", 5));
  assert_true(sl_path_is_plain("/a?x=%C3%A9", 11));
}

static void test_is_plain(void **state) {
  (void)state;
  assert_true(sl_path_is_plain("/v1/connect", 11));
  assert_true(sl_path_is_plain("/v1/connect?x=%2F//", 19));
  assert_true(sl_path_is_plain("/", 1));
  assert_false(sl_path_is_plain("/v1//connect", 12));
  assert_false(sl_path_is_plain("/v1/%63", 7));
  assert_false(sl_path_is_plain("/v1/./x", 7));
  assert_false(sl_path_is_plain("/a\\b", 4));
  assert_false(sl_path_is_plain("", 0));
  assert_false(sl_path_is_plain("x", 1));
}

static void test_prefix_match(void **state) {
  (void)state;
  const char *p = "/v1/connect";
  size_t n = strlen(p);
  assert_true(sl_path_prefix_match(p, n, "/v1/connect"));
  assert_true(sl_path_prefix_match(p, n, "/v1/connect/"));
  assert_true(sl_path_prefix_match(p, n, "/v1/connect/x"));
  assert_true(sl_path_prefix_match(p, n, "/v1/connect?q=1"));
  assert_true(sl_path_prefix_match(p, n, "/v1/connect#f"));
  assert_false(sl_path_prefix_match(p, n, "/v1/connector"));
  assert_false(sl_path_prefix_match(p, n, "/v1/connect%20"));
  assert_false(sl_path_prefix_match(p, n, "/v1/conn"));
  assert_false(sl_path_prefix_match(p, n, "/v1"));
  p = "/v1/";
  n = strlen(p);
  assert_true(sl_path_prefix_match(p, n, "/v1/"));
  assert_true(sl_path_prefix_match(p, n, "/v1/a"));
  assert_false(sl_path_prefix_match(p, n, "/v1"));
  assert_false(sl_path_prefix_match(p, n, "/v1?x"));
  assert_false(sl_path_prefix_match(p, n, "/v10"));
  assert_true(sl_path_prefix_match("/", 1, "/"));
  assert_true(sl_path_prefix_match("/", 1, "/anything?q"));
  assert_false(sl_path_prefix_match("/", 1, "*"));
}

/* ---- a second implementation, for the exhaustive check ---------------- */

static int hexv(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Splits the path on '/', decodes each segment on its own, keeps a stack
 * of segments. Returns the status; the result in |out| (big enough). */
static enum sl_path_status reference(const char *in, size_t len, char *out) {
  size_t end = 0;
  while (end < len && in[end] != '?' && in[end] != '#') end++;
  if (end == 0 || in[0] != '/') return SL_PATH_NOT_ABSOLUTE;
  char segs[16][32];
  int nseg = 0;
  bool trailing = false;
  size_t i = 1;
  for (;;) {
    size_t j = i;
    while (j < end && in[j] != '/') j++;
    char seg[32];
    size_t k = 0;
    for (size_t q = i; q < j; q++) {
      unsigned char c = (unsigned char)in[q];
      if (c == '%') {
        if (q + 2 >= j || hexv(in[q + 1]) < 0 || hexv(in[q + 2]) < 0) return SL_PATH_BAD_ESCAPE;
        int v = hexv(in[q + 1]) * 16 + hexv(in[q + 2]);
        if (v == '/') return SL_PATH_ENCODED_SLASH;
        if (v == '\\') return SL_PATH_BACKSLASH;
        if (v < 0x20 || v == 0x7f) return SL_PATH_CONTROL;
        if ((v >= 'a' && v <= 'z') || (v >= 'A' && v <= 'Z') || (v >= '0' && v <= '9') ||
            strchr("-._~", v))
          seg[k++] = (char)v;
        else
          k += (size_t)sprintf(seg + k, "%%%02X", v);
        q += 2;
      } else {
        if (c == '\\') return SL_PATH_BACKSLASH;
        if (c < 0x20 || c == 0x7f) return SL_PATH_CONTROL;
        if (c == ' ' || c >= 0x80) return SL_PATH_INVALID_CHAR;
        seg[k++] = (char)c;
      }
    }
    seg[k] = '\0';
    bool last = j >= end;
    bool dot = strcmp(seg, ".") == 0, dotdot = strcmp(seg, "..") == 0;
    if (dotdot) {
      if (nseg == 0) return SL_PATH_ESCAPES_ROOT;
      nseg--;
    } else if (!dot && k > 0) {
      strcpy(segs[nseg++], seg);
    }
    /* The result ends with '/' when the path did, or ended in a dot
     * segment (§5.2.4: "/a/b/.." is "/a/"). */
    trailing = last && (dot || dotdot || k == 0);
    if (last) break;
    i = j + 1;
  }
  size_t o = 0;
  out[o++] = '/';
  for (int s = 0; s < nseg; s++) {
    size_t sl = strlen(segs[s]);
    memcpy(out + o, segs[s], sl);
    o += sl;
    if (s + 1 < nseg || trailing) out[o++] = '/';
  }
  if (nseg == 0) o = 1;
  for (size_t q = end; q < len; q++) { /* the query: raw bytes only checked */
    unsigned char c = (unsigned char)in[q];
    if (c < 0x20 || c == 0x7f) return SL_PATH_CONTROL;
    if (c == ' ' || c >= 0x80) return SL_PATH_INVALID_CHAR;
  }
  memcpy(out + o, in + end, len - end);
  out[o + len - end] = '\0';
  return SL_PATH_OK;
}

static void check_one(const char *in, size_t len) {
  enum sl_path_status st;
  char *got = norm(in, len, &st);
  char want[64];
  enum sl_path_status rst = reference(in, len, want);
  if (rst != st)
    fail_msg("'%.*s': %s, reference %s", (int)len, in, sl_path_status_name(st),
             sl_path_status_name(rst));
  if (!got) return;
  if (strcmp(got, want) != 0) fail_msg("'%.*s' -> '%s', reference '%s'", (int)len, in, got, want);
  size_t gl = strlen(got);
  assert_true(gl <= len);
  /* Idempotent: the normal form is its own normal form. */
  enum sl_path_status st2;
  char *again = norm(got, gl, &st2);
  if (!again || strcmp(again, got) != 0)
    fail_msg("'%s' is not stable: '%s'", got, again ? again : "refused");
  free(again);
  /* A plain path is already normal. */
  if (sl_path_is_plain(in, len) && (gl != len || memcmp(got, in, len) != 0))
    fail_msg("'%.*s' called plain but normalises to '%s'", (int)len, in, got);
  free(got);
}

static void test_exhaustive_small(void **state) {
  (void)state;
  static const char alpha[] = {'/', '.', '%', '2', 'e', 'F', 'a', '?', '5', '\x92'};
  enum { NA = sizeof(alpha), MAXLEN = 6 };
  char buf[MAXLEN + 1];
  unsigned long checked = 0;
  buf[0] = '/';
  for (size_t len = 1; len <= MAXLEN; len++) {
    size_t combos = 1;
    for (size_t k = 1; k < len; k++) combos *= NA;
    for (size_t n = 0; n < combos; n++) {
      size_t x = n;
      for (size_t k = 1; k < len; k++) {
        buf[k] = alpha[x % NA];
        x /= NA;
      }
      check_one(buf, len);
      checked++;
    }
  }
  assert_true(checked > 60000);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_issue_examples),   cmocka_unit_test(test_percent_encoding),
      cmocka_unit_test(test_dot_segments),     cmocka_unit_test(test_query_untouched),
      cmocka_unit_test(test_is_plain),
      cmocka_unit_test(test_invalid_raw_bytes),         cmocka_unit_test(test_prefix_match),
      cmocka_unit_test(test_exhaustive_small),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
