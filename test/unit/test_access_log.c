/*
 * The access log's pure parts: query redaction (names kept, values
 * starred, truncation safe at every size) and W3C traceparent parsing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include <stdlib.h>

#include "core/access_log.h"
#include "core/request_id.h"
#include "core/stream-t.h"

static void redacts(const char *in, const char *want) {
  char out[256];
  size_t n = sl_access_log_redact(in, out, sizeof(out));
  assert_string_equal(out, want);
  assert_int_equal(n, strlen(want));
}

static void test_redact(void **state) {
  (void)state;
  redacts("/v1/x", "/v1/x");
  redacts("/v1/x?", "/v1/x?");
  redacts("/v1/x?a=1", "/v1/x?a=*");
  redacts("/v1/x?token=s3cr3t&user=bob&flag", "/v1/x?token=*&user=*&*");
  redacts("/v1/reset?3f9a0c5e", "/v1/reset?*"); /* a bare item may be the token */
  redacts("/v1/x?a=1=2&b==&=v", "/v1/x?a=*&b=*&=*"); /* '=' inside a value is the value's */
  redacts("/p=q?k=v", "/p=q?k=*");                    /* before '?': the path, kept */
  redacts("/v1/x?a=1&&b", "/v1/x?a=*&&*");
}

/* Every output size: NUL-terminated, a prefix of the whole redaction, and
 * never a secret byte. */
static void test_redact_truncates(void **state) {
  (void)state;
  const char *in = "/v1/login?token=SECRET&id=SECRET2&SECRET3";
  char whole[128];
  sl_access_log_redact(in, whole, sizeof(whole));
  for (size_t cap = 1; cap < sizeof(whole); cap++) {
    char out[128];
    memset(out, 'Z', sizeof(out));
    size_t n = sl_access_log_redact(in, out, cap);
    assert_true(n < cap);
    assert_int_equal(out[n], '\0');
    assert_memory_equal(out, whole, n);
    assert_null(strstr(out, "SECRET"));
  }
  char none[1] = {'Z'};
  assert_int_equal(sl_access_log_redact(in, none, 0), 0);
  assert_int_equal(none[0], 'Z');
}

static void test_traceparent(void **state) {
  (void)state;
  static const char ok[] = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  const char *id = sl_traceparent_trace_id(ok, strlen(ok));
  assert_non_null(id);
  assert_memory_equal(id, "4bf92f3577b34da6a3ce929d0e0e4736", 32);
  /* a later version may append fields after a '-'; version 00 may not */
  static const char v1[] = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra";
  assert_non_null(sl_traceparent_trace_id(v1, strlen(v1)));
  static const char *const bad[] = {
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", /* 00 with more */
      "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",       /* version ff */
      "00-00000000000000000000000000000000-00f067aa0ba902b7-01",       /* zero trace id */
      "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",       /* zero parent */
      "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",       /* uppercase */
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",        /* short */
      "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",       /* separator */
      "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",      /* no '-' after */
      "",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    assert_null(sl_traceparent_trace_id(bad[i], strlen(bad[i])));
}

/* Generated ids: 32 lowercase hex digits, one thread's share a name (the
 * first 16) and count up by one in the last 16, carries included (300
 * ids cross ..ff -> ..100); a client's usable id is kept. */
static void test_request_ids(void **state) {
  (void)state;
  static struct sl_stream s;
  uint64_t prev = 0;
  char name[17] = "";
  for (int i = 0; i < 300; i++) {
    memset(&s, 0, sizeof(s));
    size_t len;
    const char *id = sl_request_id(&s, &len);
    assert_int_equal(len, 32);
    for (size_t k = 0; k < 32; k++) assert_non_null(strchr("0123456789abcdef", id[k]));
    if (i == 0) memcpy(name, id, 16);
    assert_memory_equal(id, name, 16);
    uint64_t seq = strtoull(id + 16, NULL, 16);
    if (i) assert_true(seq == prev + 1);
    prev = seq;
    size_t len2;
    assert_ptr_equal(sl_request_id(&s, &len2), id); /* decided once */
  }
  memset(&s, 0, sizeof(s));
  struct sl_header h = {.name = "x-request-id", .name_len = 12, .value = "abc-123", .value_len = 7};
  size_t len;
  const char *id = sl_request_id_from(&s, &h, &len);
  assert_int_equal(len, 7);
  assert_memory_equal(id, "abc-123", 7);
  memset(&s, 0, sizeof(s));
  struct sl_header bad = {.name = "x-request-id", .name_len = 12, .value = "a b", .value_len = 3};
  assert_int_equal((sl_request_id_from(&s, &bad, &len), len), 32);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_redact),
      cmocka_unit_test(test_redact_truncates),
      cmocka_unit_test(test_traceparent),
      cmocka_unit_test(test_request_ids),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
