/*
 * sluice — the normalised YAML printer's helpers (config_print.c), for
 * the policy kinds' printers (struct sl_kind.print).
 */
#ifndef SLUICE_POLICIES_CONFIG_PRINT_H
#define SLUICE_POLICIES_CONFIG_PRINT_H

#include <stdint.h>
#include <stdio.h>

#include "sluice/config-t.h"

void cfg_print_indent(FILE *out, int n);
/* A double-quoted YAML string, escaped. */
void cfg_print_str(FILE *out, const char *s);
/* "<indent>key: value\n": quoted, a number, as is; mode only when set. */
void cfg_print_kv_str(FILE *out, int ind, const char *key, const char *v);
void cfg_print_kv_u64(FILE *out, int ind, const char *key, uint64_t v);
void cfg_print_kv_raw(FILE *out, int ind, const char *key, const char *v);
void cfg_print_kv_mode(FILE *out, int ind, enum sl_mode m);
/* A duration in milliseconds, in its shortest unit ("100ms", "2s"). */
void cfg_print_kv_ms(FILE *out, int ind, const char *key, uint64_t ms);

#endif
