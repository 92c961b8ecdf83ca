/*
 * sluice — configuration loader (policies/config*.c).
 *
 * Contract: the loader is pure (files in, snapshot or errors out); it never
 * touches sockets or the running proxy. The proxy validates a new snapshot
 * in full with sl_config_load() before it replaces the running one.
 */
#ifndef SLUICE_CONFIG_H
#define SLUICE_CONFIG_H

#include <stdio.h>
#include "sluice/config-t.h"

/* Loads |path| and every *.yaml of its `include:` directory (name order),
 * merged as SPEC section 3 says, validates all of it and returns a new
 * snapshot owned by the caller (release with sl_config_free()). On any
 * error returns NULL and appends every error found to |errs|, each with
 * the file, line and column it concerns. Policy `state` pointers are left
 * NULL: the admission engine attaches state after loading. */
struct sl_config *sl_config_load(const char *path, struct sl_config_errors *errs);
void sl_config_free(struct sl_config *cfg);

/* Writes the normalised configuration (defaults filled in, durations and
 * rates in canonical form) as YAML that sl_config_load() accepts again. */
int sl_config_print(const struct sl_config *cfg, FILE *out);

/* Writes "FILE:LINE:COL: message\n" for each error. */
void sl_config_errors_print(const struct sl_config_errors *errs, FILE *out);
void sl_config_errors_free(struct sl_config_errors *errs);

/* Describes blocklist entry |e| as of |now_unix| for `sluice check`, the
 * start-up and reload logs and explain: "blocklist entry 'NAME' expired at
 * T (2 days ago): it no longer blocks anything" when it has lapsed (an
 * entry without a name is named by its versions and class), "... expires
 * at T (in 3 hours)" otherwise, "" when it has no `expires`. */
void sl_config_describe_expiry(const struct sl_block_entry *e, int64_t now_unix, char *buf,
                               size_t len);

/* Helpers shared with the CLI and the admin listener. Each returns 0 on
 * success, -1 with a message in |err| otherwise. */
int sl_parse_duration_ms(const char *s, uint64_t *out_ms, char *err, size_t errlen);
int sl_parse_rate(const char *s, struct sl_rate *out, char *err, size_t errlen);
int sl_parse_bandwidth(const char *s, struct sl_bandwidth *out, char *err, size_t errlen);
int sl_parse_sockaddr(const char *s, struct sl_sockaddr *out, char *err, size_t errlen);
/* "10.0.0.5:6379", "[fd00::5]:6379" or "redis.prod.svc:6379": a host
 * name (RFC 1123 labels) is kept for resolution at connect time. */
int sl_parse_hostport(const char *s, struct sl_hostport *out, char *err, size_t errlen);
int sl_parse_cidr(const char *s, struct sl_cidr *out, char *err, size_t errlen);

#endif
