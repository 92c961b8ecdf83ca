/*
 * libFuzzer driver for the configuration loader (policies/config*.c):
 * YAML from a file through libyaml, the node tree, merge, schema and value
 * parsers, then the normalised printer.
 *
 * The input is written to a file in a private directory and loaded with
 * sl_config_load(). Invariants besides "no crash, no leak, no UB":
 *  - a failed load returns at least one error, and every error that names
 *    a file has line and column >= 1 (except "cannot read", which has no
 *    place to point at);
 *  - a successful load prints (sl_config_print) to YAML that loads again
 *    and prints to the very same text (the printer's contract).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sluice/config.h"

static char dir[64], main_path[96], printed_path[96];

static void check(int ok, const char *what) {
  if (!ok) {
    fprintf(stderr, "fuzz_config: invariant violated: %s\n", what);
    abort();
  }
}

static void write_file(const char *path, const void *p, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f || (n && fwrite(p, 1, n, f) != n) || fclose(f) != 0) abort();
}

static void cleanup(void) {
  unlink(main_path);
  unlink(printed_path);
  rmdir(dir);
}

static void setup(void) {
  const char *tmp = getenv("TMPDIR");
  snprintf(dir, sizeof(dir), "%s/sluice-fuzz-config-XXXXXX", tmp && strlen(tmp) < 24 ? tmp : "/tmp");
  if (!mkdtemp(dir)) abort();
  snprintf(main_path, sizeof(main_path), "%s/sluice.yaml", dir);
  /* Outside the main file's directory, so that an `include: .` in the
   * input never sees it. */
  snprintf(printed_path, sizeof(printed_path), "%s.printed.yaml", dir);
  atexit(cleanup);
}

static void check_errors(const struct sl_config_errors *errs) {
  for (size_t i = 0; i < errs->n; i++) {
    const struct sl_config_error *e = &errs->items[i];
    check(e->message && e->message[0], "an error has a message");
    if (e->file && strncmp(e->message, "cannot read", 11) != 0)
      check(e->line >= 1 && e->col >= 1, "an error with a file has line and column >= 1");
  }
}

static char *print(const struct sl_config *cfg, size_t *len) {
  char *text = NULL;
  FILE *f = open_memstream(&text, len);
  if (!f) abort();
  check(sl_config_print(cfg, f) == 0, "a loaded configuration prints");
  fclose(f);
  return text;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!dir[0]) setup();
  write_file(main_path, data, size);
  struct sl_config_errors errs = {0};
  struct sl_config *cfg = sl_config_load(main_path, &errs);
  check_errors(&errs);
  check((cfg == NULL) == (errs.n > 0), "a load fails iff it reports an error");
  sl_config_errors_free(&errs);
  if (!cfg) return 0;

  size_t len1, len2;
  char *text1 = print(cfg, &len1);
  write_file(printed_path, text1, len1);
  struct sl_config *again = sl_config_load(printed_path, &errs);
  if (!again) {
    fprintf(stderr, "--- printed configuration:\n%s--- does not load:\n", text1);
    sl_config_errors_print(&errs, stderr);
    check(0, "the printed configuration loads again");
  }
  char *text2 = print(again, &len2);
  if (len1 != len2 || memcmp(text1, text2, len1) != 0) {
    fprintf(stderr, "--- printed once:\n%s--- printed twice:\n%s", text1, text2);
    check(0, "printing is a fixed point");
  }
  free(text1);
  free(text2);
  sl_config_free(again);
  sl_config_free(cfg);
  unlink(printed_path);
  return 0;
}
