/*
 * sluice — bounded name lists for reload log lines. See namelist.h.
 */
#include <string.h>

#include "core/namelist.h"

void sl_namelist_add(struct sl_namelist *nl, const char *name) {
  nl->n++;
  size_t need = strlen(name) + (nl->len ? 1 : 0);
  if (nl->len + need >= sizeof(nl->buf)) return;
  if (nl->len) nl->buf[nl->len++] = ',';
  memcpy(nl->buf + nl->len, name, strlen(name) + 1);
  nl->len += strlen(name);
  nl->shown++;
}
