/*
 * Unit tests for proxy/ws.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "front/ws.h"

/* RFC 6455 §1.3 example. */
static void test_accept_rfc_example(void **state) {
  (void)state;
  char out[29];
  const char *key = "dGhlIHNhbXBsZSBub25jZQ==";
  sl_ws_accept(key, strlen(key), out);
  assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
  assert_true(sl_ws_key_valid(key, strlen(key)));
  assert_false(sl_ws_key_valid("short", 5));
  assert_false(sl_ws_key_valid("dGhlIHNhbXBsZSBub25jZQ=x", 24));
  char k[25];
  assert_int_equal(sl_ws_new_key(k), 0);
  assert_true(sl_ws_key_valid(k, strlen(k)));
}

static size_t frame(uint8_t *out, size_t payload, bool masked) {
  size_t i = 0;
  out[i++] = 0x82;
  uint8_t m = masked ? 0x80 : 0;
  if (payload < 126) {
    out[i++] = (uint8_t)(m | payload);
  } else if (payload < 65536) {
    out[i++] = m | 126;
    out[i++] = (uint8_t)(payload >> 8);
    out[i++] = (uint8_t)payload;
  } else {
    out[i++] = m | 127;
    for (int k = 7; k >= 0; k--) out[i++] = (uint8_t)((uint64_t)payload >> (8 * k));
  }
  if (masked) {
    memcpy(out + i, "\x01\x02\x03\x04", 4);
    i += 4;
  }
  memset(out + i, 'p', payload);
  return i + payload;
}

/* Boundaries are found for 7-bit, 16-bit and 64-bit lengths, masked or
 * not, whatever the split of the byte stream. */
static void test_tracker_every_split(void **state) {
  (void)state;
  static uint8_t stream[70000 * 2 + 400];
  size_t sizes[] = {0, 5, 125, 126, 300, 65535, 65536};
  size_t n = 0, boundaries[16], nb = 0;
  for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
    n += frame(stream + n, sizes[i], i & 1);
    boundaries[nb++] = n;
  }
  size_t splits[] = {1, 2, 3, 7, 13, 1000, n};
  for (size_t s = 0; s < sizeof(splits) / sizeof(splits[0]); s++) {
    struct sl_ws_tracker t = {0};
    size_t off = 0, seen = 0;
    while (off < n) {
      size_t take = n - off < splits[s] ? n - off : splits[s];
      sl_ws_track(&t, stream + off, take);
      off += take;
      while (seen < nb && boundaries[seen] < off) seen++;
      if (seen < nb && boundaries[seen] == off) {
        assert_true(sl_ws_at_boundary(&t));
        seen++;
      }
    }
    assert_true(sl_ws_at_boundary(&t));
  }
  /* Mid-frame is not a boundary. */
  struct sl_ws_tracker t = {0};
  sl_ws_track(&t, stream, 3);
  assert_false(sl_ws_at_boundary(&t));
}

static void test_close_frame(void **state) {
  (void)state;
  uint8_t out[140];
  size_t n = sl_ws_close_frame(out, 1008, "blocked firmware", NULL);
  assert_int_equal(n, 2 + 2 + 16);
  assert_int_equal(out[0], 0x88);
  assert_int_equal(out[1], 18);
  assert_int_equal(out[2], 1008 >> 8);
  assert_int_equal(out[3], 1008 & 0xff);
  assert_memory_equal(out + 4, "blocked firmware", 16);
  const uint8_t mask[4] = {0xaa, 0xbb, 0xcc, 0xdd};
  n = sl_ws_close_frame(out, 1001, "bye", mask);
  assert_int_equal(n, 2 + 4 + 5);
  assert_int_equal(out[1], 0x80 | 5);
  assert_int_equal(out[6] ^ 0xaa, 1001 >> 8);
  assert_int_equal(out[7] ^ 0xbb, 1001 & 0xff);
  assert_int_equal(out[8] ^ 0xcc, 'b');
  /* Long reasons are cut to fit a control frame. */
  char reason[300];
  memset(reason, 'r', sizeof(reason) - 1);
  reason[sizeof(reason) - 1] = '\0';
  n = sl_ws_close_frame(out, 1008, reason, NULL);
  assert_int_equal(out[1], 125);
  assert_int_equal(n, 127);
  struct sl_ws_tracker t = {0};
  sl_ws_track(&t, out, n);
  assert_true(sl_ws_at_boundary(&t));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_accept_rfc_example),
      cmocka_unit_test(test_tracker_every_split),
      cmocka_unit_test(test_close_frame),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
