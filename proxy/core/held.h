/*
 * sluice — the bookkeeping of what a listener holds for its devices
 * (proxy/core/held.c): its idle connections and open WebSocket tunnels,
 * listed per worker and counted in the listener's n_idle, the count
 * limits.max_idle caps. Lists and counts only: who goes when the count is
 * over the cap is core/idle.h, which sits above the connection and the
 * exchange; this sits below both, so either can keep its entries true.
 */
#ifndef SLUICE_CORE_HELD_H
#define SLUICE_CORE_HELD_H

#include <ev.h>

#include "core/conn-t.h"
#include "core/stream-t.h"
#include "core/worker-t.h"

/* |c| joins the tail of its worker's idle list (longest idle first), stamped
 * with now. Returns its listener's count after, or 0 if |c| was listed
 * already or cannot be held (closing, lingering, dead). */
unsigned sl_held_conn_add(struct sl_conn *c);
/* An exchange starts on |c| (or it closes): off the idle list, uncounted.
 * Idempotent. */
void sl_conn_idle_leave(struct sl_conn *c);

/* |s| became a tunnel: first on the worker's tunnel list (most recently
 * active first) and counted (the cap is checked once its head is out:
 * sl_idle_tunnel_opened). */
void sl_held_tunnel_add(struct sl_stream *s);
/* |s| is closing (its close frame is decided): uncounted; it stays listed
 * until it ends. Idempotent. */
void sl_held_tunnel_release(struct sl_stream *s);
/* |s| ends: off the tunnel list, uncounted. */
void sl_held_tunnel_unlink(struct sl_stream *s);

void sl_held_tunnel_move_first(struct sl_stream *s);
/* Bytes moved through tunnel |s| (either way): it is the worker's most
 * recently active one. Called per chunk moved, so the common case (it is
 * first already) is a store and a compare. */
static inline void sl_held_tunnel_touch(struct sl_stream *s) {
  struct sl_worker *w = s->conn->w;
  s->tunnel_active = ev_now(w->loop);
  if (w->tunnels != s) sl_held_tunnel_move_first(s);
}

#endif
