/*
 * sluice — the top-level form of the maintenance kind (maintenance.c):
 * parsed before the routes (whose implied policy it becomes), printed at
 * the top level.
 */
#ifndef SLUICE_KINDS_MAINTENANCE_H
#define SLUICE_KINDS_MAINTENANCE_H

#include <stdio.h>

#include "sluice/config-t.h"

struct cfg_schema;
struct cfg_node;
extern const struct sl_kind sl_kind_maintenance;

void sl_maintenance_parse_top(struct cfg_schema *s, const struct cfg_node *root);
void sl_maintenance_print_top(FILE *out, const struct sl_config *cfg);

#endif
