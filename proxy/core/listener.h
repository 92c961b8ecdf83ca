/*
 * sluice — listeners (proxy/core/listener.c): binding, opening and
 * closing, and a reload's listener change in two steps, prepare (may fail,
 * touches nothing running) then commit (cannot fail). Main thread only;
 * workers read a listener's limits and TLS context atomically. Types in
 * listener-t.h.
 */
#ifndef SLUICE_CORE_LISTENER_H
#define SLUICE_CORE_LISTENER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/listener-t.h"

struct sl_config;

/* Binds one socket per worker for |lc|. The first bind checks the address
 * is free: SO_REUSEPORT would otherwise let two sluice processes share a
 * port silently, so probe with an exclusive bind first. Returns NULL with
 * a message in |err| on failure. */
struct sl_listener *sl_listener_open(const struct sl_listener_cfg *lc, int n_workers, char *err,
                                     size_t errlen);
/* Frees |l|: its remaining sockets, its TLS context, its strings. The
 * caller knows no worker watches it and no connection points to it. */
void sl_listener_close(struct sl_listener *l);

/* Opens every listener of |cfg| into the empty |set| (start-up). Returns
 * 0, or -1 with the failing listener's name in |name| and the message in
 * |err|, having closed what it opened. */
int sl_listener_set_open(struct sl_listener_set *set, const struct sl_config *cfg, int n_workers,
                         const char **name, char *err, size_t errlen);
/* Closes every listener and frees what was retired (exit, after the
 * workers were joined). */
void sl_listener_set_close(struct sl_listener_set *set);

/* Prepares every listener of |cfg| without touching the running ones:
 * loads changed certificates, binds new addresses. Returns 0, or -1 with
 * a message in |err| after undoing what it prepared (the running
 * configuration stays as it is). */
int sl_listeners_prepare(struct sl_listener_set *set, const struct sl_config *cfg,
                         struct sl_lis_change *ch, char *err, size_t errlen);
/* Applies a prepared change (cannot fail): stores limits, swaps TLS
 * contexts, moves sockets to successors, retires what is gone as of
 * generation |gen|, and makes the new set set->items. Call before the
 * generation is published, so workers see the moved sockets with it. */
void sl_listeners_commit(struct sl_listener_set *set, struct sl_lis_change *ch, uint64_t gen);
/* Frees a change's plans; |failed|: also what it prepared. */
void sl_lis_change_free(struct sl_lis_change *ch, bool failed);

/* Frees what was retired as of a generation up to |acked| (the oldest
 * every worker acknowledged) and, for a listener, has no connection
 * left. */
void sl_listener_set_collect(struct sl_listener_set *set, uint64_t acked);
/* Scrape time (main thread): sluice_idle_held of every listener. */
void sl_listener_set_gauges(const struct sl_listener_set *set);

#endif
