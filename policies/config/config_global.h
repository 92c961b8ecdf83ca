/*
 * sluice — the top-level `global` section (the backend of fleet-wide
 * rate limits): schema and printer (config_global.c). The runtime is
 * proxy/global/ and policies/lease.c.
 */
#ifndef SLUICE_POLICIES_CONFIG_GLOBAL_H
#define SLUICE_POLICIES_CONFIG_GLOBAL_H

#include <stdio.h>

#include "sluice/config-t.h"

/* "local", "open", "closed" (NULL-terminated), by enum sl_global_fallback. */
extern const char *const SL_GLOBAL_FALLBACK_NAMES[];

/* `global:` as normalised YAML (the password file, never the password);
 * nothing when the section is absent. */
void cfg_print_global(FILE *out, const struct sl_config *cfg);

#endif
