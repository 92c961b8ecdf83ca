/*
 * Who may use the admin API's guarded endpoints (admin/admin_auth.c):
 * loopback addresses, and the token rule with every kind of bad
 * credentials.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "sluice/config.h"
#include "admin/admin_auth.h"

static bool loopback(const char *text) {
  struct sl_sockaddr a;
  char err[128];
  assert_int_equal(sl_parse_sockaddr(text, &a, err, sizeof(err)), 0);
  return sl_sockaddr_is_loopback(&a);
}

static void test_loopback(void **state) {
  (void)state;
  assert_true(loopback("127.0.0.1:9901"));
  assert_true(loopback("127.3.2.1:1"));
  assert_true(loopback("[::1]:9901"));
  assert_true(loopback("[::ffff:127.0.0.1]:9901"));
  assert_false(loopback("0.0.0.0:9901"));
  assert_false(loopback("[::]:9901"));
  assert_false(loopback("10.0.0.1:9901"));
  assert_false(loopback("128.0.0.1:9901"));
  assert_false(loopback("[::ffff:10.0.0.1]:9901"));
  assert_false(loopback("[::2]:9901"));
}

static int authz(const char *token, bool lo, const char *auth) {
  return sl_admin_authorize(token, lo, auth, auth ? strlen(auth) : 0);
}

static void test_authorize(void **state) {
  (void)state;
  /* No token: loopback serves, anything else refuses whatever is sent. */
  assert_int_equal(authz(NULL, true, NULL), 200);
  assert_int_equal(authz(NULL, true, "Bearer x"), 200);
  assert_int_equal(authz(NULL, false, NULL), 403);
  assert_int_equal(authz(NULL, false, "Bearer x"), 403);
  /* A token: required on loopback too. */
  for (int lo = 0; lo < 2; lo++) {
    assert_int_equal(authz("s3cr3t", lo, "Bearer s3cr3t"), 200);
    assert_int_equal(authz("s3cr3t", lo, "bearer s3cr3t"), 200); /* scheme: any case */
    assert_int_equal(authz("s3cr3t", lo, NULL), 401);
    assert_int_equal(authz("s3cr3t", lo, ""), 401);
    assert_int_equal(authz("s3cr3t", lo, "Bearer"), 401);
    assert_int_equal(authz("s3cr3t", lo, "Bearer "), 401);
    assert_int_equal(authz("s3cr3t", lo, "Bearer s3cr3"), 401);   /* prefix */
    assert_int_equal(authz("s3cr3t", lo, "Bearer s3cr3tt"), 401); /* longer */
    assert_int_equal(authz("s3cr3t", lo, "Bearer S3CR3T"), 401);  /* the token: exact */
    assert_int_equal(authz("s3cr3t", lo, "Basic s3cr3t"), 401);
    assert_int_equal(authz("s3cr3t", lo, "Bearer  s3cr3t"), 401); /* one space */
  }
  /* An empty token (the loader refuses one) matches nothing. */
  assert_int_equal(authz("", true, "Bearer "), 401);
  assert_int_equal(authz("", false, "Bearer "), 401);
  /* A NUL inside the value does not end the comparison early. */
  assert_int_equal(sl_admin_authorize("ab", false, "Bearer a\0b", 10), 401);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_loopback),
      cmocka_unit_test(test_authorize),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
