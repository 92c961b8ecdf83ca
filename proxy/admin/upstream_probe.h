/*
 * sluice — is the app behind sluice up? With `admin.readiness: upstreams`
 * /readyz answers 200 only while every upstream accepts TCP connections,
 * so that Kubernetes sends no traffic to a pod whose app has not started
 * yet (or has stopped first): sluice would answer it 502.
 *
 * The main thread opens one non-blocking connection to each upstream of
 * the current configuration every second (a connect and a close; no
 * request is sent); a connect that has not finished by the next tick fails
 * the check (so it is given 1 to 2 s). An
 * upstream is up from its first accepted connection until a check fails.
 * Until the first check of an upstream ends, it counts as down.
 */
#ifndef SLUICE_ADMIN_UPSTREAM_PROBE_H
#define SLUICE_ADMIN_UPSTREAM_PROBE_H

#include <stdbool.h>

struct ev_loop;
struct sl_gen;

/* Starts the once-a-second checks on |loop| (main thread). */
void sl_upstream_probe_start(struct ev_loop *loop);
void sl_upstream_probe_stop(void);

/* A reload published a new generation: check its new upstreams now
 * rather than at the next tick (an upstream that only moved keeps its
 * verdict until then). */
void sl_upstream_probe_reloaded(void);

/* Whether every upstream of |g| was up at its last check (true when |g|
 * has none). Logs each change of an upstream's reachability. */
bool sl_upstream_probe_all_up(const struct sl_gen *g);

#endif
