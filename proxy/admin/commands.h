/*
 * sluice — the commands that do not start the proxy (proxy/admin/commands.c),
 * and configuration loading with its error report, shared with `run` and
 * reloads.
 */
#ifndef SLUICE_ADMIN_COMMANDS_H
#define SLUICE_ADMIN_COMMANDS_H

#include <stdbool.h>
#include <stdint.h>

struct sl_config;
struct sl_config_errors;

/* Logs each of |errs| (error level, |msg|, where = file:line:col). */
void sl_config_log_errors(const struct sl_config_errors *errs, const char *msg);
/* Loads |path|; on failure reports the errors as log lines (|as_log|) or
 * on stderr, and returns NULL. */
struct sl_config *sl_config_load_or_report(const char *path, bool as_log);

/* `sluice check`: 0 if |path| is valid (certificates and keys loaded
 * too), else 1; |print|: print the normalised configuration. */
int sl_cmd_check(const char *path, bool print);
/* The same with options: |strict| makes the warnings (blocklist entries
 * whose `expires` has passed, reported as FILE:LINE:COL: warning: ...)
 * errors, so the exit status is 1. */
struct sl_check_opts {
  bool print, strict;
};
int sl_cmd_check_with(const char *path, const struct sl_check_opts *o);
/* Logs a warning line for each blocklist entry of |cfg| that has lapsed
 * at |now_unix| (at most 10, then one line with the count of the rest). */
void sl_config_log_expired(const struct sl_config *cfg, int64_t now_unix);
/* `sluice explain`: evaluates one request against fresh policy state;
 * |hdrs| are "Name: value". Returns 0, or 1 on error. */
int sl_cmd_explain(const char *path, const char *method, const char *ip, const char **hdrs,
                   int n_hdrs, const char *req_path);

#endif
