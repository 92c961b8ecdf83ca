/* Test fixture: a configuration from YAML text, through a temporary file
 * and sl_config_load, as the binary reads it. */
#ifndef SLUICE_TEST_YAML_FIXTURE_H
#define SLUICE_TEST_YAML_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "sluice/config.h"

/* Loads |head| then |body| (either may be ""). Returns the snapshot, or
 * NULL with the problems in |errs|. */
static struct sl_config *yaml_load(const char *head, const char *body,
                                   struct sl_config_errors *errs) {
  char path[64];
  snprintf(path, sizeof(path), "/tmp/sluice-test-yaml-XXXXXX");
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  FILE *f = fdopen(fd, "w");
  assert_non_null(f);
  fputs(head, f);
  fputs(body, f);
  fclose(f);
  struct sl_config *cfg = sl_config_load(path, errs);
  unlink(path);
  return cfg;
}

/* The same, failing the test (with the messages) if it does not load. */
static struct sl_config *yaml_load_ok(const char *head, const char *body) {
  struct sl_config_errors errs = {0};
  struct sl_config *cfg = yaml_load(head, body, &errs);
  if (!cfg) sl_config_errors_print(&errs, stderr);
  sl_config_errors_free(&errs);
  assert_non_null(cfg);
  return cfg;
}

/* What `sluice check --print` writes for |cfg| (malloc'd; caller frees). */
static inline char *yaml_print(const struct sl_config *cfg) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  assert_non_null(f);
  assert_int_equal(sl_config_print(cfg, f), 0);
  fclose(f);
  return buf;
}

#endif
