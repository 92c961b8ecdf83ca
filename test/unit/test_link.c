/*
 * The link seam: libsluice.a is a library of its own. This program is
 * linked with every object of the archive (-Wl,--whole-archive, see the
 * Makefile), and without proxy/main.o, so an object that uses a symbol
 * only the command line defines fails the build here, and so does a
 * symbol defined twice. The tests then drive the library's entry points
 * the command line calls.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "admin/commands.h"
#include "admin/process.h"

static void test_run_without_config_fails(void **st) {
  (void)st;
  struct sl_run_opts opts = {.config_path = "/nonexistent/sluice.yaml", .workers = 1};
  assert_int_equal(sl_run(&opts), 1);
}

/* `sluice check`: the shipped example is valid, a file that is not a
 * configuration is not (make unit runs from the repository's root). */
static void test_check(void **st) {
  (void)st;
  assert_int_equal(sl_cmd_check("deploy/examples/sluice.yaml", false), 0);
  char path[] = "/tmp/sluice-test-link-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  FILE *f = fdopen(fd, "w");
  assert_non_null(f);
  fputs("listeners: 5\n", f);
  fclose(f);
  assert_int_equal(sl_cmd_check(path, false), 1);
  unlink(path);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_run_without_config_fails),
      cmocka_unit_test(test_check),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
