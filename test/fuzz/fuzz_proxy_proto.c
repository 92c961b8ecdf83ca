/*
 * libFuzzer driver for proxy/core/proxy_proto.c: sl_pp_parse.
 *
 * Beyond "no crash, no UB" the driver checks what conn.c relies on: a
 * header never claims more bytes than it was given nor more than
 * SL_PP_MAX_HEADER; an error carries a message; every proper prefix of a
 * parsed header needs more bytes (an incomplete header is never taken for
 * an error or for a header), and the verdict on a header does not depend
 * on the bytes that follow it.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/proxy_proto.h"

static void check(int ok, const char *what) {
  if (!ok) {
    fprintf(stderr, "fuzz_proxy_proto: invariant violated: %s\n", what);
    abort();
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct sl_pp_header h, p;
  enum sl_pp_status st = sl_pp_parse(data, size, &h);
  if (st == SL_PP_ERROR) {
    check(h.error != NULL, "an error without a message");
    return 0;
  }
  if (st == SL_PP_NEED_MORE) {
    check(size < SL_PP_MAX_HEADER, "needs more beyond the largest header");
    return 0;
  }
  check(h.len > 0 && h.len <= size && h.len <= SL_PP_MAX_HEADER, "header length out of range");
  check(h.version == 1 || h.version == 2, "a header without a version");
  for (size_t i = 0; i < h.len; i++)
    check(sl_pp_parse(data, i, &p) == SL_PP_NEED_MORE, "a prefix of a header is not incomplete");
  check(sl_pp_parse(data, h.len, &p) == SL_PP_DONE && p.len == h.len &&
            p.has_addr == h.has_addr && memcmp(&p.src, &h.src, sizeof(p.src)) == 0,
        "the header alone parses differently");
  return 0;
}
