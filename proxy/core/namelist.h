/*
 * sluice — a bounded list of names for a log line (proxy/core/namelist.c):
 * the first names that fit, comma-separated, and a count of all.
 */
#ifndef SLUICE_CORE_NAMELIST_H
#define SLUICE_CORE_NAMELIST_H

#include <stddef.h>

struct sl_namelist {
  char buf[120];
  size_t len;
  unsigned n, shown;
};

void sl_namelist_add(struct sl_namelist *nl, const char *name);

#endif
