/*
 * sluice — the per-worker client of the fleet-wide limits' backend
 * (Redis): one asynchronous hiredis connection on the worker's libev
 * loop and the worker's lease store (a local share per (limit, key),
 * sluice/lease.h). Admission reaches it through the port it returns
 * (sluice/global-t.h). Everything here runs on the owning worker's
 * thread, except the process-wide metrics.
 *
 * No request waits on Redis: a decision uses the local share and, when
 * it runs low, queues an ask for the key; the asks of one loop iteration
 * leave as one EVALSHA before the loop waits (pipelined with the other
 * commands); the answer refills the shares. A
 * command older than command_timeout, a lost connection or an error
 * reply count the backend down: the fallback mode decides until a
 * reconnection (backoff 50 ms doubling to 5 s, jittered) has loaded the
 * script again.
 */
#ifndef SLUICE_GLOBAL_CLIENT_H
#define SLUICE_GLOBAL_CLIENT_H

#include <ev.h>
#include <stdbool.h>

#include "sluice/config-t.h"
#include "sluice/global-t.h"

struct sl_global_client;

/* A client for the worker |worker_id| on |loop|, idle until configured.
 * Aborts on out-of-memory (start-up). */
struct sl_global_client *sl_global_client_new(struct ev_loop *loop, int worker_id);

/* Applies |cfg|'s `global` section (start-up and each reload): the same
 * backend (address, password, database: sl_global_cfg.identity) keeps the
 * connection and every lease; another one reconnects; none disconnects.
 * |cfg| must outlive the next call (the worker's generation holds it). */
void sl_global_client_configure(struct sl_global_client *c, const struct sl_config *cfg);

/* The port admission calls (sl_admission_input.global); NULL when no
 * backend is configured. */
const struct sl_global_port *sl_global_client_port(struct sl_global_client *c);

/* Closes the connection (pending asks fail) and frees every lease. */
void sl_global_client_del(struct sl_global_client *c);

#endif
