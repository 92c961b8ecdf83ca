/*
 * sluice — a subscription to a sentinel's `+switch-master` channel, so
 * that a worker learns of a failover when the sentinels decide it, not
 * when its primary stops answering or answers -READONLY. That matters
 * when the old primary is alive but cut off from the sentinels: without
 * the announcement a worker would keep taking grants from a primary whose
 * writes the promoted replica never sees.
 *
 * Best effort: if the subscription's connection fails or drops, failovers
 * are still noticed the slower way (lost connection, -READONLY), and the
 * next discovery subscribes again.
 */
#ifndef SLUICE_GLOBAL_SENTINEL_WATCH_H
#define SLUICE_GLOBAL_SENTINEL_WATCH_H

#include <ev.h>

struct sl_sentinel_watch;

/* The sentinels switched |master_name| to |ip|:|port|. May close the
 * watch (sl_sentinel_watch_close) from inside. */
typedef void sl_switch_master_cb(void *arg, const char *ip, int port);

/* Subscribes on the sentinel at |ip|:|port| (numeric) on |loop|; NULL
 * when the connection cannot even start. */
struct sl_sentinel_watch *sl_sentinel_watch_open(struct ev_loop *loop, const char *ip, int port,
                                                 const char *master_name,
                                                 sl_switch_master_cb *cb, void *arg);

void sl_sentinel_watch_close(struct sl_sentinel_watch *w);

#endif
