/*
 * sluice — limits.max_idle: who goes when a listener holds more devices
 * than its cap (proxy/core/idle.c; the lists and counts are core/held.h).
 *
 * Held: client connections with no exchange in progress (h1 between
 * requests, h2 without a stream) and open WebSocket tunnels. Each is one
 * device's standing claim on the sidecar's memory, so one cap counts them
 * all (the listener's n_idle, shared by its workers). When a newcomer puts
 * the listener over the cap, the worker gives back the one of its own that
 * has been quiet longest: an idle connection since it went idle, a tunnel
 * since its last byte either way. An idle h2 connection gets GOAWAY, an h1
 * one is closed between requests, and a tunnel's connection is drained
 * with a WebSocket close 1001 whose reason carries a spread retry-after
 * (SL_EVICT_CLOSE_REASON). New connections are never refused for the cap.
 *
 * The victim is never on the newcomer's own connection, and a worker that
 * holds no other one of the listener evicts nothing (but an idle
 * connection, which goes itself): the listener may hold one more than the
 * cap per worker.
 */
#ifndef SLUICE_CORE_IDLE_H
#define SLUICE_CORE_IDLE_H

#include "core/held.h"

/* The close reason of a tunnel evicted for the cap: "%u" is its
 * retry-after in whole seconds. */
#define SL_EVICT_CLOSE_REASON "sluice: listener at its idle limit, retry-after %u"

/* The protocol has no exchange in progress on |c|: it is held (core/held.h)
 * and, over the cap, one goes. Idempotent: an idle connection keeps its
 * place. */
void sl_conn_idle_enter(struct sl_conn *c);
/* Tunnel |s| (held since sl_stream_tunnel_open) has sent its head to the
 * client: over the cap, one goes. Called by the frontend, outside the
 * upstream's 101 handling. */
void sl_idle_tunnel_opened(struct sl_stream *s);

#endif
