/*
 * sluice — what this binary is: its version, the commit it was built
 * from, and the libraries it runs with (`sluice --version`, the start-up
 * log line, sluice_build_info), and the process_* metrics Prometheus
 * clients conventionally export (CPU, memory, file descriptors, start
 * time), sampled at scrape time.
 */
#ifndef SLUICE_ADMIN_BUILD_INFO_H
#define SLUICE_ADMIN_BUILD_INFO_H

#include <stdio.h>

#define SLUICE_VERSION "0.1.0"

/* The commit the binary was built from: `git rev-parse --short=12 HEAD`,
 * "-dirty" appended when the tree had changes, "unknown" outside a git
 * checkout (set by the Makefile for this one file). */
const char *sl_build_commit(void);

/* "sluice 0.1.0 (commit 1a2b3c4d5e6f; nghttp2 1.52.0, OpenSSL 3.0.x ...)". */
void sl_build_info_print(FILE *out);

/* Registers sluice_build_info (a constant 1 with the version, commit and
 * library labels) and the process_* families; remembers the start time.
 * Call once at start-up, after sl_stats_init(). */
void sl_build_metrics_init(void);

/* Sets process_cpu_seconds_total, process_resident_memory_bytes,
 * process_virtual_memory_bytes, process_open_fds and process_max_fds from
 * /proc/self (a scrape-time collector: a few reads of /proc, no cost on
 * the request path). */
void sl_build_metrics_collect(void);

#endif
