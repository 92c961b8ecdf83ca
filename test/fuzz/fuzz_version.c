/*
 * libFuzzer driver for policies/version.c: sl_version_parse,
 * sl_vrange_parse, sl_vrange_match, sl_vrange_free.
 *
 * Input: the first line is a range expression (up to its first NUL), every
 * further line is a candidate version (raw bytes, NULs included). Beyond
 * "no crash, no leak, no UB" the driver checks the order's laws on the
 * versions that parse (reflexive, antisymmetric, transitive), that the
 * canonical form parses back to the same version, and that an error
 * carries a message and an offset inside the expression.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/version.h"

#define MAX_VERSIONS 16

static int sign(int x) { return (x > 0) - (x < 0); }

static void check(int ok, const char *what) {
  if (!ok) {
    fprintf(stderr, "fuzz_version: invariant violated: %s\n", what);
    abort();
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *in = (const char *)data;
  const char *nl = memchr(in, '\n', size);
  size_t rlen = nl ? (size_t)(nl - in) : size;

  /* The range: a C string, as the config loader hands it over. */
  char *expr = malloc(rlen + 1);
  memcpy(expr, in, rlen);
  expr[rlen] = '\0';
  size_t elen = strlen(expr);
  struct sl_vrange r;
  char err[128] = "";
  size_t err_off = (size_t)-1;
  int rv = sl_vrange_parse(expr, &r, err, sizeof(err), &err_off);
  if (rv == 0) {
    check(r.n >= 1 && r.clauses != NULL, "a parsed range has a clause");
  } else {
    check(err[0] != '\0', "a range error has a message");
    check(err_off <= elen, "a range error offset lies within the expression");
  }

  struct sl_version v[MAX_VERSIONS];
  size_t nv = 0;
  size_t off = nl ? rlen + 1 : size;
  while (off < size && nv < MAX_VERSIONS) {
    const char *p = in + off;
    const char *e = memchr(p, '\n', size - off);
    size_t len = e ? (size_t)(e - p) : size - off;
    off += len + 1;
    struct sl_version x;
    if (sl_version_parse(p, len, &x) != 0) continue;
    check(memchr(x.pre, '\0', sizeof(x.pre)) != NULL, "tag is NUL-terminated");
    check(sl_version_cmp(&x, &x) == 0, "cmp is reflexive");
    /* The canonical form is a version again, and the same one. */
    char buf[128];
    int n = sl_version_format(&x, buf, sizeof(buf));
    check(n > 0, "a parsed version formats");
    struct sl_version y;
    check(sl_version_parse(buf, (size_t)n, &y) == 0, "the canonical form parses");
    check(memcmp(x.num, y.num, sizeof(x.num)) == 0 && strcmp(x.pre, y.pre) == 0,
          "format then parse is the identity");
    if (rv == 0) (void)sl_vrange_match(&r, &x);
    v[nv++] = x;
  }

  for (size_t i = 0; i < nv; i++) {
    for (size_t j = 0; j < nv; j++) {
      int ij = sign(sl_version_cmp(&v[i], &v[j])), ji = sign(sl_version_cmp(&v[j], &v[i]));
      check(ij == -ji, "cmp is antisymmetric");
      if (rv == 0 && ij == 0)
        check(sl_vrange_match(&r, &v[i]) == sl_vrange_match(&r, &v[j]),
              "equal versions match a range alike");
      for (size_t k = 0; k < nv; k++) {
        int jk = sign(sl_version_cmp(&v[j], &v[k]));
        int ik = sign(sl_version_cmp(&v[i], &v[k]));
        if (ij <= 0 && jk <= 0) check(ik <= 0, "cmp is transitive");
      }
    }
  }
  if (rv == 0) sl_vrange_free(&r);
  free(expr);
  return 0;
}
