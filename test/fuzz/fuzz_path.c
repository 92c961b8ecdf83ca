/*
 * libFuzzer driver for policies/path.c: sl_path_is_plain,
 * sl_path_normalize, sl_path_prefix_match.
 *
 * Input: a request path (raw bytes, NULs included). Beyond "no crash, no
 * overrun, no UB" (the output buffer is exactly len + 1 bytes, as the
 * contract says), the driver checks the laws of a normal form: the result
 * is no longer than the input, normalising it again changes nothing, a
 * path called plain normalises to itself, the path part of the result has
 * no "//", no "." or ".." segment, no percent-encoded unreserved character
 * and no lower-case hex digit in an escape, the query is kept byte for
 * byte, and the result matches itself as a prefix.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/path.h"

static void check(int ok, const char *what) {
  if (!ok) {
    fprintf(stderr, "fuzz_path: invariant violated: %s\n", what);
    abort();
  }
}

static int hexv(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1; /* lower case is not normal */
}

static void check_normal(const char *p, size_t len) {
  size_t end = 0;
  while (end < len && p[end] != '?' && p[end] != '#') end++;
  check(end > 0 && p[0] == '/', "starts with '/'");
  for (size_t i = 0; i < end; i++) {
    if (p[i] == '/') {
      check(i + 1 >= end || p[i + 1] != '/', "no '//'");
      size_t j = i + 1;
      while (j < end && p[j] != '/') j++;
      size_t n = j - i - 1;
      check(!(n == 1 && p[i + 1] == '.'), "no '.' segment");
      check(!(n == 2 && p[i + 1] == '.' && p[i + 2] == '.'), "no '..' segment");
    } else if (p[i] == '%') {
      check(i + 2 < end, "escape complete");
      int hi = hexv(p[i + 1]), lo = hexv(p[i + 2]);
      check(hi >= 0 && lo >= 0, "escape in upper-case hex");
      int v = hi * 16 + lo;
      int unreserved = (v >= 'a' && v <= 'z') || (v >= 'A' && v <= 'Z') ||
                       (v >= '0' && v <= '9') || v == '-' || v == '.' || v == '_' || v == '~';
      check(!unreserved, "no encoded unreserved character");
      check(v != '/' && v != '\\' && v >= 0x20 && v != 0x7f, "no refused escape");
    } else {
      unsigned char c = (unsigned char)p[i];
      check(c != '\\' && c >= 0x20 && c != 0x7f, "no refused byte");
    }
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > 4096) return 0;
  char *in = malloc(size ? size : 1);
  memcpy(in, data, size);
  char *out = malloc(size + 1);
  size_t ol = 0;
  enum sl_path_status st = sl_path_normalize(in, size, out, &ol);
  int plain = sl_path_is_plain(in, size);
  if (st == SL_PATH_OK) {
    check(ol <= size && out[ol] == '\0', "no longer than the input, terminated");
    check(!plain || (ol == size && memcmp(out, in, size) == 0), "plain means unchanged");
    check_normal(out, ol);
    /* The query is the input's. */
    size_t qi = 0, qo = 0;
    while (qi < size && in[qi] != '?' && in[qi] != '#') qi++;
    while (qo < ol && out[qo] != '?' && out[qo] != '#') qo++;
    check(size - qi == ol - qo && memcmp(in + qi, out + qo, size - qi) == 0, "query untouched");
    char *again = malloc(ol + 1);
    size_t al = 0;
    check(sl_path_normalize(out, ol, again, &al) == SL_PATH_OK, "normal form accepted");
    check(al == ol && memcmp(again, out, ol) == 0, "idempotent");
    free(again);
    if (memchr(out, '\0', ol) == NULL)
      check(sl_path_prefix_match(out, qo, out), "a path is below its own path part");
  } else {
    check(!plain, "a plain path is never refused");
    check(sl_path_status_name(st)[0] != '\0', "an error has a name");
  }
  free(out);
  free(in);
  return 0;
}
