/*
 * sluice — limits.max_idle: which of the connections and tunnels a
 * listener holds for its devices goes when it holds too many. See idle.h;
 * the lists and counts it reads are core/held.c.
 */
#include <stdint.h>
#include <stdio.h>

#include "sluice/config-t.h"
#include "sluice/log.h"
#include "sluice/metrics.h"
#include "sluice/retry.h"
#include "core/conn.h"
#include "core/gen.h"
#include "core/idle.h"
#include "core/listener-t.h"
#include "core/rand.h"
#include "core/stream.h"

/* The worker's longest idle connection of |lis| other than |except|. The
 * list holds every listener's, longest idle first. */
static struct sl_conn *oldest_idle_conn(struct sl_worker *w, const struct sl_listener *lis,
                                        const struct sl_conn *except) {
  for (struct sl_conn *c = w->idle_head; c; c = c->idle_next)
    if (c->lis == lis && c != except) return c;
  return NULL;
}

/* Its quietest held tunnel of |lis| not on connection |except|: from the
 * tail of the list, past other listeners' tunnels and closing ones
 * (released, but listed until their close frame is out). A newcomer's own
 * connection is never drained under it: the newcomer may be a tunnel
 * opening on it, whose other tunnels the drain would close with it. */
static struct sl_stream *quietest_tunnel(struct sl_worker *w, const struct sl_listener *lis,
                                         const struct sl_conn *except) {
  for (struct sl_stream *t = w->tunnels_tail; t; t = t->tunnel_prev)
    if (t->tunnel_held && t->conn != except && t->conn->lis == lis) return t;
  return NULL;
}

static void count_eviction(struct sl_listener *lis, const char *what, const char *peer) {
  if (lis->m_idle_evictions) sl_metric_inc(lis->m_idle_evictions);
  if (SL_LOG_ENABLED(SL_LOG_DEBUG))
    sl_log(SL_LOG_DEBUG, "idle connection evicted: listener at max_idle", "listener", lis->name,
           "kind", what, "peer", peer, NULL);
}

/* Drains tunnel |t|'s connection: the close frame says when to come
 * back, drawn as for a refusal whose wait is past the cap (uniform over
 * the top `jitter` share of [min, max] of reject.retry_after), so evicted
 * devices return spread over that window instead of together. An h1
 * connection closes when its tunnel has; an h2 one gets GOAWAY and closes
 * once its streams have (every tunnel on it gets the same close). */
static void evict_tunnel(struct sl_stream *t) {
  struct sl_conn *c = t->conn;
  uint32_t retry = sl_retry_after_s(&t->gen->cfg->reject, UINT64_MAX, sl_rand64());
  char reason[96];
  snprintf(reason, sizeof(reason), SL_EVICT_CLOSE_REASON, retry);
  count_eviction(c->lis, "tunnel", c->peer_ip);
  /* Closed here, not only by the drain: a connection already draining
   * ignores a second drain, and the tunnel must stop being held now. */
  sl_stream_tunnel_close(t, 1001, reason);
  if (c->ops && c->ops->drain) c->ops->drain(c, reason);
  if (!c->dead) sl_conn_schedule_flush(c);
}

static void evict_conn(struct sl_conn *c) {
  sl_conn_idle_leave(c);
  count_eviction(c->lis, "connection", c->peer_ip);
  if (c->ops && c->ops->drain) c->ops->drain(c, NULL);
  if (!c->dead) sl_conn_close_after_flush(c);
}

/* |lis| holds |n| after a newcomer (|new_conn| or |new_tunnel|) of worker
 * |w| joined: over the cap, the quietest of the worker's others goes. An
 * idle connection and a tunnel quiet since the same instant: the
 * connection, which carries no device's session. */
static void held_check(struct sl_worker *w, struct sl_listener *lis, unsigned n,
                       struct sl_conn *new_conn, struct sl_stream *new_tunnel) {
  uint32_t cap = atomic_load_explicit(&lis->max_idle, memory_order_relaxed);
  if (cap == 0 || n <= cap) return;
  struct sl_conn *c = oldest_idle_conn(w, lis, new_conn);
  struct sl_stream *t = quietest_tunnel(w, lis, new_tunnel ? new_tunnel->conn : new_conn);
  if (t && (!c || t->tunnel_active < c->idle_since)) {
    evict_tunnel(t);
    return;
  }
  /* An idle connection that is the worker's only one of the listener
   * goes itself: it costs its client nothing but a reconnect. */
  if (!c && !new_tunnel) c = new_conn;
  if (c) evict_conn(c);
}

/* ---- the newcomers ---------------------------------------------------- */

void sl_conn_idle_enter(struct sl_conn *c) {
  unsigned n = sl_held_conn_add(c);
  if (n) held_check(c->w, c->lis, n, c, NULL);
}

void sl_idle_tunnel_opened(struct sl_stream *s) {
  if (!s->tunnel_held) return;
  struct sl_listener *lis = s->conn->lis;
  held_check(s->conn->w, lis, atomic_load_explicit(&lis->n_idle, memory_order_relaxed), NULL, s);
}
