/*
 * sluice — lists and counts of what a listener holds for its devices. See
 * held.h; the eviction that reads them is core/idle.c.
 */
#include "core/held.h"
#include "core/dlist.h"
#include "core/listener-t.h"

/* Adds |d| (+1 or -1, modulo 2^32) to the listener's count; returns it after. */
static unsigned count_add(struct sl_listener *lis, int d) {
  return atomic_fetch_add_explicit(&lis->n_idle, (unsigned)d, memory_order_relaxed) + (unsigned)d;
}

/* ---- idle connections ------------------------------------------------ */

unsigned sl_held_conn_add(struct sl_conn *c) {
  if (c->idle_listed || c->dead || c->closing || c->lingering) return 0;
  c->idle_listed = true;
  c->idle_since = ev_now(c->w->loop);
  SL_DLIST_APPEND(c, c->w->idle_head, c->w->idle_tail, idle_prev, idle_next);
  return count_add(c->lis, 1);
}

void sl_conn_idle_leave(struct sl_conn *c) {
  if (!c->idle_listed) return;
  SL_DLIST_UNLINK(c, c->w->idle_head, c->w->idle_tail, idle_prev, idle_next);
  c->idle_listed = false;
  count_add(c->lis, -1);
}

/* ---- tunnels ----------------------------------------------------------- */

static void tunnel_list_remove(struct sl_stream *s) {
  struct sl_worker *w = s->conn->w;
  SL_DLIST_UNLINK(s, w->tunnels, w->tunnels_tail, tunnel_prev, tunnel_next);
}

static void tunnel_list_push_first(struct sl_stream *s) {
  struct sl_worker *w = s->conn->w;
  SL_DLIST_PREPEND(s, w->tunnels, w->tunnels_tail, tunnel_prev, tunnel_next);
}

void sl_held_tunnel_move_first(struct sl_stream *s) {
  tunnel_list_remove(s);
  tunnel_list_push_first(s);
}

void sl_held_tunnel_add(struct sl_stream *s) {
  s->tunnel_active = ev_now(s->conn->w->loop);
  tunnel_list_push_first(s);
  s->tunnel_held = true;
  count_add(s->conn->lis, 1);
}

void sl_held_tunnel_release(struct sl_stream *s) {
  if (!s->tunnel_held) return;
  s->tunnel_held = false;
  count_add(s->conn->lis, -1);
}

void sl_held_tunnel_unlink(struct sl_stream *s) {
  sl_held_tunnel_release(s);
  tunnel_list_remove(s);
}
