/*
 * sluice — reloading the configuration (proxy/admin/reload.c), and the
 * admin hooks that read or reload it. Main thread only.
 */
#ifndef SLUICE_ADMIN_RELOAD_H
#define SLUICE_ADMIN_RELOAD_H

#include <stdbool.h>

#include "admin/admin.h"

struct sl_config;
struct sl_process;

/* Starts watching the files |cfg| (the running configuration) was read
 * from, on p->loop; |p| must outlive sl_reload_stop. Aborts on
 * out-of-memory (start-up). */
void sl_reload_start(struct sl_process *p, const struct sl_config *cfg);
void sl_reload_stop(void);
/* Asks for a reload at the next loop iteration; triggers that arrive
 * before it runs join it (bounded: one pending reload at most).
 * |trigger| ("SIGHUP", "file") is logged; it must be a literal. */
void sl_reload_request(const char *trigger);
/* The sluice_config_* metrics after a load (|cfg| may be NULL if !ok). */
void sl_reload_metrics(bool ok, const struct sl_config *cfg);

/* /readyz, /config, /reload and /explain of the running process. */
extern const struct sl_admin_hooks sl_reload_admin_hooks;
extern const struct sl_admin_hooks sl_reload_metrics_hooks;

#endif
