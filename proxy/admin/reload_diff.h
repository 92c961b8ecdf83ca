/*
 * sluice — the reload log line and summary (proxy/admin/reload_diff.c).
 * TRANSITIONAL: replaced at merge by policies/config/diff.c.
 */
#ifndef SLUICE_ADMIN_RELOAD_DIFF_H
#define SLUICE_ADMIN_RELOAD_DIFF_H

#include <stddef.h>

#include "core/listener-t.h"

struct sl_config;

/* Logs the one line a reload leaves: what triggered it (|triggers|
 * coalesced), the generation, and what changed between |a| (the previous
 * configuration) and |b|, with the listener change |lc| and the blocklist
 * sizes; |ms| is the reload's duration. Leaves a short summary in
 * |summary| (for POST /reload). */
void sl_reload_diff_log(const char *trigger, unsigned triggers, const struct sl_config *a,
                        const struct sl_config *b, size_t bl_before, size_t bl_after,
                        const struct sl_lis_change *lc, double ms, char *summary,
                        size_t summary_cap);

#endif
