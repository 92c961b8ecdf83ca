/*
 * Unit tests for proxy/hpiece.h: header fields accumulated from pieces.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "hpiece.h"

/* A field split at every byte boundary (two pieces), and one fed a byte
 * per "read" (the input buffer is overwritten after each keep, as a
 * reused read buffer is), come back byte-exact. */
static void test_every_split(void **state) {
  (void)state;
  static char field[3000];
  for (size_t i = 0; i < sizeof(field); i++) field[i] = (char)('a' + i % 26);
  struct sl_hpiece p = {0};
  char input[sizeof(field)];
  for (size_t cut = 0; cut <= sizeof(field); cut += 7) {
    memcpy(input, field, cut);
    if (cut) assert_int_equal(sl_hpiece_add(&p, input, cut), 0);
    assert_int_equal(sl_hpiece_keep(&p), 0);
    memset(input, 'X', sizeof(input)); /* the read buffer is reused */
    memcpy(input, field + cut, sizeof(field) - cut);
    if (cut < sizeof(field))
      assert_int_equal(sl_hpiece_add(&p, input, sizeof(field) - cut), 0);
    assert_int_equal(p.len, sizeof(field));
    assert_memory_equal(p.at, field, sizeof(field));
    sl_hpiece_clear(&p);
  }
  sl_hpiece_free(&p);
}

/* Byte by byte: linear growth, the scratch at most twice the field. */
static void test_byte_by_byte_is_geometric(void **state) {
  (void)state;
  enum { N = 16384 };
  static char field[N];
  for (size_t i = 0; i < N; i++) field[i] = (char)('0' + i % 10);
  struct sl_hpiece p = {0};
  unsigned grows = 0;
  size_t cap = 0;
  for (size_t i = 0; i < N; i++) {
    char byte = field[i];
    assert_int_equal(sl_hpiece_add(&p, &byte, 1), 0);
    assert_int_equal(sl_hpiece_keep(&p), 0);
    if (p.cap != cap) grows++;
    cap = p.cap;
  }
  assert_int_equal(p.len, N);
  assert_memory_equal(p.at, field, N);
  assert_true(p.cap >= N && p.cap <= 2 * N);
  assert_true(grows <= 8); /* 256 .. 16384: doubling */
  sl_hpiece_free(&p);
  assert_null(p.buf);
  assert_int_equal(p.len, 0);
}

/* A field that arrives whole stays a slice: no copy, no allocation. */
static void test_whole_field_is_a_slice(void **state) {
  (void)state;
  const char *in = "content-type";
  struct sl_hpiece p = {0};
  assert_int_equal(sl_hpiece_add(&p, in, strlen(in)), 0);
  assert_ptr_equal(p.at, in);
  assert_null(p.buf);
  sl_hpiece_clear(&p);
  assert_int_equal(sl_hpiece_keep(&p), 0); /* nothing pending: nothing kept */
  assert_null(p.buf);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_every_split),
      cmocka_unit_test(test_byte_by_byte_is_geometric),
      cmocka_unit_test(test_whole_field_is_a_slice),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
