/*
 * sluice — the `allow` section (exemptions) of the configuration: schema,
 * printer and reload fingerprint (config_allow.c). The rules' runtime is
 * policies/allow.c (sluice/allow.h).
 */
#ifndef SLUICE_POLICIES_CONFIG_ALLOW_H
#define SLUICE_POLICIES_CONFIG_ALLOW_H

#include <stdint.h>
#include <stdio.h>

#include "sluice/config-t.h"

struct cfg_schema;
struct cfg_node;

/* Parses the top-level `allow` list into s->cfg->allow (after the routes:
 * a rule's `routes` are checked against them) and builds its CIDR set. */
void cs_parse_allow(struct cfg_schema *s, const struct cfg_node *root);

/* `allow:` as normalised YAML (lists sorted, skips in their fixed order). */
void cfg_print_allow(FILE *out, const struct sl_config *cfg);

/* Fingerprint of every rule, for the reload diff (section "allow"). */
uint64_t cfg_allow_hash(const struct sl_config *cfg);

#endif
