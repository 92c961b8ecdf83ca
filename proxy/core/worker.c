/*
 * sluice — worker threads. See worker.h.
 *
 * Each worker runs its own loop and accepts on its own SO_REUSEPORT socket
 * per listener, so the kernel spreads connections and no lock is taken on
 * the data path. The main thread talks to a worker only through atomics
 * and one ev_async.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sluice/blocklist.h"
#include "sluice/identify.h"
#include "sluice/policy_state.h"
#include "sluice/ratelimit.h"
#include "sluice/log.h"
#include "sluice/version.h"
#include "core/accept.h"
#include "core/clock.h"
#include "core/conn.h"
#include "core/container.h"
#include "core/gen.h"
#include "global/client.h"
#include "core/listener-t.h"
#include "core/stats.h"
#include "core/stream.h"
#include "core/worker.h"
#include "front/front.h"
#include "front/h2mem.h"
#include "upstream/upstream.h"

atomic_int sl_workers_exited;

static _Atomic uint64_t stop_timeout_ms, stop_spread_ms;

static void flush_cb(struct ev_loop *loop, ev_prepare *w, int revents) {
  struct sl_worker *wk = SL_CONTAINER_OF(w, struct sl_worker, flush_watcher);
  (void)loop;
  (void)revents;
  sl_worker_flush_all(wk);
}

static void accept_cb(struct ev_loop *loop, ev_io *io, int revents) {
  struct sl_worker_listener *wl = SL_CONTAINER_OF(io, struct sl_worker_listener, io);
  struct sl_worker *w = wl->w;
  struct sl_listener *lis = wl->lis;
  (void)loop;
  (void)revents;
  /* Bounded batch: accepting is cheap, but the loop must get back to
   * serving established connections. */
  for (int i = 0; i < 64; i++) {
    struct sockaddr_storage peer;
    socklen_t plen = sizeof(peer);
    int fd = accept4(io->fd, (struct sockaddr *)&peer, &plen, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR) continue;
      if (errno == EMFILE || errno == ENFILE)
        sl_log(SL_LOG_WARN, "accept: out of file descriptors", "listener", lis->name, NULL);
      return;
    }
    if (atomic_load_explicit(&lis->n_connections, memory_order_relaxed) >= lis->max_connections &&
        !sl_conn_reclaim_lingering(w, lis)) {
      /* Over the listener's cap (and no lingering connection of this
       * worker to give back): refuse at once rather than queue work the
       * process cannot serve. */
      close(fd);
      continue;
    }
    /* The connection-rate limit (SPEC section 4) runs here, before any
     * TLS or HTTP work, on the TCP peer; behind a PROXY header it runs on
     * the header's client once that is in (conn.c). An untrusted peer
     * may not send one: closed without a byte read. */
    const struct sl_listener_cfg *lc = sl_accept_cfg(w, lis);
    bool proxied = lc && lc->proxy_protocol.n_trusted;
    if (proxied && !sl_accept_proxy_trusted(lc, &peer)) {
      char ip[64];
      sl_accept_format_peer(&peer, ip, sizeof(ip));
      sl_accept_proxy_error(w, lis->name, "untrusted", ip,
                            "peer not in proxy_protocol.trusted");
      close(fd);
      continue;
    }
    if (!proxied && !sl_accept_connect_rate(w, lc, &peer)) {
      close(fd);
      continue;
    }
    sl_stats_connection_accepted(lis->name);
    sl_conn_accept(w, lis, fd, &peer, lc);
  }
}

static void drain_check(struct sl_worker *w) {
  if (w->draining && w->n_conns == 0) ev_break(w->loop, EVBREAK_ALL);
}

/* Tunnels no turn of the spread covers (opened by an upgrade that was in
 * flight when the drain began) are closed once the spread is over. */
static void close_late_tunnels(struct sl_worker *w) {
  for (struct sl_stream *t = w->tunnels, *tn; t; t = tn) {
    tn = t->tunnel_next;
    if (t->ws_close_pending || t->resp_done || t->conn->spread_queued) continue;
    sl_stream_tunnel_close(t, 1001, SL_DRAIN_CLOSE_REASON);
    sl_conn_schedule_flush(t->conn);
  }
}

/* Takes the turns of the drain spread that are due: the i-th of n (from
 * 0) at spread_at + spread_s * i / n, so the last is spread_s * (n-1)/n
 * after the first and the clients' reconnects come at most n/spread_s a
 * second. Counting from the clock (not from timer firings) keeps a late
 * timer from stretching the spread. */
static void spread_tick(struct sl_worker *w) {
  uint32_t due = w->spread_n;
  if (w->spread_s > 0) {
    double turns = (ev_now(w->loop) - w->spread_at) * w->spread_n / w->spread_s;
    if (turns + 1 < due) due = (uint32_t)turns + 1;
  }
  while (w->spread_spent < due) {
    struct sl_conn *c = sl_conn_spread_pop(w);
    if (!c) break;
    if (c->ops && c->ops->drain) c->ops->drain(c, NULL);
    if (!c->dead) sl_conn_schedule_flush(c);
  }
  if (!w->spread_head) {
    ev_timer_stop(w->loop, &w->spread_timer);
    close_late_tunnels(w);
  }
}

static void spread_timer_cb(struct ev_loop *loop, ev_timer *t, int revents) {
  (void)loop;
  (void)revents;
  spread_tick(SL_CONTAINER_OF(t, struct sl_worker, spread_timer));
}

static void drain_timer_cb(struct ev_loop *loop, ev_timer *t, int revents) {
  struct sl_worker *w = SL_CONTAINER_OF(t, struct sl_worker, drain_timer);
  (void)revents;
  ev_tstamp deadline = w->drain_timer.data ? *(ev_tstamp *)w->drain_timer.data : 0;
  if (w->n_conns == 0 || ev_now(loop) >= deadline) {
    /* Drain deadline: whatever is still open is cut now. */
    while (w->conns) sl_conn_close(w->conns);
    sl_worker_flush_all(w);
    ev_break(loop, EVBREAK_ALL);
    return;
  }
  /* Connections that became idle since the last check close now; those
   * waiting for their turn in the spread stay. */
  for (struct sl_conn *c = w->conns, *n; c; c = n) {
    n = c->next;
    if (c->spread_queued) continue;
    if (!c->ops || (c->ops->idle && c->ops->idle(c))) sl_conn_close_after_flush(c);
  }
  if (!w->spread_head) close_late_tunnels(w);
  drain_check(w);
}

/* Long-lived connections (open tunnels, h2) take turns spread evenly over
 * drain_spread, so that their clients do not all reconnect elsewhere in
 * the same few milliseconds (a herd the drain itself would make); until
 * its turn a connection is served as usual. The rest drain at once: an
 * idle keep-alive connection closes (its client reconnects when it next
 * has a request, on its own schedule), a busy one after its response. */
static void spread_begin(struct sl_worker *w) {
  uint32_t n = 0;
  for (struct sl_stream *t = w->tunnels; t; t = t->tunnel_next) {
    if (t->conn->spread_queued || t->conn->lingering) continue;
    sl_conn_spread_push(t->conn);
    n++;
  }
  for (struct sl_conn *c = w->conns, *cn; c; c = cn) {
    cn = c->next;
    if (c->lingering || c->spread_queued) continue; /* lingering: ends within SL_LINGER_MS */
    if (!c->ops) {
      sl_conn_close(c);
    } else if (c->ops->drain_spread) {
      sl_conn_spread_push(c);
      n++;
    } else if (c->ops->drain) {
      c->ops->drain(c, NULL);
    }
  }
  w->spread_n = n;
  w->spread_spent = 0;
  w->spread_at = ev_now(w->loop);
  w->spread_s = (ev_tstamp)atomic_load(&stop_spread_ms) / 1000.0;
  if (n)
    sl_log_json(SL_LOG_INFO, "drain: spreading closes", "\"worker\":%d,\"connections\":%u,"
                "\"spread_ms\":%llu", w->id, n, (unsigned long long)atomic_load(&stop_spread_ms));
  double every = n && w->spread_s > 0 ? w->spread_s / n : 0.001;
  ev_timer_init(&w->spread_timer, spread_timer_cb, every, every < 0.001 ? 0.001 : every);
  spread_tick(w); /* the first turn is now */
  if (w->spread_head) ev_timer_start(w->loop, &w->spread_timer);
}

static void worker_begin_drain(struct sl_worker *w) {
  if (w->draining) return;
  w->draining = true;
  /* Close (not just stop watching) this worker's listening sockets: the
   * kernel would otherwise keep completing handshakes into the backlog,
   * and clients would wait on connections nobody accepts. With every
   * worker's socket closed, new connections are refused at once. */
  while (w->listeners) {
    struct sl_worker_listener *wl = w->listeners;
    w->listeners = wl->next;
    ev_io_stop(w->loop, &wl->io);
    close(wl->lis->fds[w->id]);
    wl->lis->fds[w->id] = -1;
    free(wl);
  }
  w->n_listeners = 0;
  spread_begin(w);
  static __thread ev_tstamp deadline;
  deadline = ev_now(w->loop) + (ev_tstamp)atomic_load(&stop_timeout_ms) / 1000.0;
  w->drain_timer.data = &deadline;
  ev_timer_init(&w->drain_timer, drain_timer_cb, 0.05, 0.05);
  ev_timer_start(w->loop, &w->drain_timer);
}

/* The enforcing entry of |bl| that refuses device |d| as of |now_unix|,
 * or NULL: its address (client_ip), its device id (device_id, by hash: an
 * idle connection keeps no id, so another id of the same 64-bit hash
 * matches too, a 2^-64 chance that only closes a connection which then
 * reconnects and is judged on its real id), or its firmware. Only entries
 * count: `unknown: deny` alone does not cut every device that never sent
 * a version. */
static const struct sl_block_entry *device_blocked(const struct sl_blocklist *bl,
                                                   const struct sl_dev_facts *d, int64_t now_unix) {
  const char *cls = d->cls[0] ? d->cls : NULL;
  size_t cls_len = strlen(d->cls);
  struct sl_block_verdict bv;
  if (d->family && sl_blocklist_n_addr(bl)) {
    sl_blocklist_check_addr(bl, d->family, d->addr, cls, cls_len, now_unix, &bv);
    if (bv.deny) return bv.entry;
  }
  if (d->has_id && sl_blocklist_n_device_id(bl)) {
    sl_blocklist_check_device_id(bl, d->id_hash, NULL, 0, cls, cls_len, now_unix, &bv);
    if (bv.deny) return bv.entry;
  }
  if (!d->cls[0] && !d->firmware[0]) return NULL;
  struct sl_version v;
  bool have_v = d->firmware[0] && sl_version_parse(d->firmware, strlen(d->firmware), &v) == 0;
  sl_blocklist_check(bl, cls, cls_len, have_v ? &v : NULL, now_unix, &bv);
  return bv.deny ? bv.entry : NULL;
}

/* After a reload: close idle connections whose last request came from a
 * device the new blocklist refuses (SPEC section 4, emergency blocks reach
 * open connections). Busy connections are left to finish; their next
 * request meets the new blocklist anyway. Connections and tunnels exempt
 * from the blocklist (`allow`) are left alone. */
static void close_newly_blocked(struct sl_worker *w) {
  const struct sl_blocklist *bl = w->gen->blocklist;
  if (!bl || sl_blocklist_size(bl) == 0) return;
  int64_t now_unix = (int64_t)ev_now(w->loop);
  unsigned closed = 0;
  for (struct sl_conn *c = w->conns, *n; c; c = n) {
    n = c->next;
    if (c->blocklist_exempt || !c->ops || !c->ops->idle || !c->ops->idle(c)) continue;
    if (device_blocked(bl, &c->last, now_unix)) {
      if (c->ops->drain) c->ops->drain(c, NULL);
      sl_conn_close_after_flush(c);
      closed++;
    }
  }
  /* Open tunnels of newly blocked devices: close frame 1008 (policy
   * violation) with the entry's reason, at a frame boundary. */
  unsigned tunnels = 0;
  for (struct sl_stream *t = w->tunnels, *tn; t; t = tn) {
    tn = t->tunnel_next;
    if (t->blocklist_exempt) continue;
    if (t->ws_close_pending || t->resp_done) continue; /* already closing */
    const struct sl_block_entry *e = device_blocked(bl, &t->dev, now_unix);
    if (e) {
      sl_stream_tunnel_close(t, 1008, e->reason ? e->reason : "blocked");
      sl_conn_schedule_flush(t->conn);
      tunnels++;
    }
  }
  if (tunnels)
    sl_log_json(SL_LOG_INFO, "closed tunnels of newly blocked devices",
                "\"worker\":%d,\"tunnels\":%u", w->id, tunnels);
  if (closed)
    sl_log_json(SL_LOG_INFO, "closed idle connections of newly blocked devices",
                "\"worker\":%d,\"connections\":%u", w->id, closed);
}

static bool gen_has_listener(const struct sl_gen *g, const struct sl_listener *l) {
  for (int i = 0; i < g->n_listeners; i++)
    if (g->listeners[i] == l) return true;
  return false;
}

static void worker_watch(struct sl_worker *w, struct sl_listener *l) {
  struct sl_worker_listener *wl = calloc(1, sizeof(*wl));
  if (!wl) abort(); /* start-up or reload path */
  wl->lis = l;
  wl->w = w;
  ev_io_init(&wl->io, accept_cb, l->fds[w->id], EV_READ);
  ev_io_start(w->loop, &wl->io);
  wl->next = w->listeners;
  w->listeners = wl;
  w->n_listeners++;
}

/* Makes the listeners this worker accepts on those of w->gen. A listener
 * the generation dropped stops accepting here and its socket is closed;
 * its connections carry on. When a successor took the socket over, the
 * main thread already moved the fd to it (the old slot reads -1), so the
 * same socket is stopped here and watched again under the successor. A
 * listener new to the generation is watched on this worker's socket.
 * A listener's fds are written by the main thread only before the
 * generation that changes them is published, and otherwise only by this
 * worker for its own slot: no lock is needed. */
static void worker_apply_listeners(struct sl_worker *w) {
  const struct sl_gen *g = w->gen;
  for (struct sl_worker_listener **pp = &w->listeners; *pp;) {
    struct sl_worker_listener *wl = *pp;
    if (gen_has_listener(g, wl->lis)) {
      pp = &wl->next;
      continue;
    }
    ev_io_stop(w->loop, &wl->io);
    if (wl->lis->fds[w->id] >= 0) close(wl->lis->fds[w->id]);
    wl->lis->fds[w->id] = -1;
    *pp = wl->next;
    w->n_listeners--;
    free(wl);
  }
  for (int i = 0; i < g->n_listeners; i++) {
    struct sl_listener *l = g->listeners[i];
    bool watched = false;
    for (struct sl_worker_listener *wl = w->listeners; wl && !watched; wl = wl->next)
      watched = wl->lis == l;
    if (watched || l->fds[w->id] < 0) continue;
    if (w->draining) {
      /* A reload raced with the drain: do not start accepting again. */
      close(l->fds[w->id]);
      l->fds[w->id] = -1;
      continue;
    }
    worker_watch(w, l);
  }
}

static void wakeup_cb(struct ev_loop *loop, ev_async *a, int revents) {
  struct sl_worker *w = SL_CONTAINER_OF(a, struct sl_worker, wakeup);
  (void)loop;
  (void)revents;
  if (atomic_exchange(&w->reload_requested, false)) {
    struct sl_gen *g = sl_gen_current_ref();
    struct sl_gen *old = w->gen;
    w->gen = g;
    sl_global_client_configure(w->global, g->cfg); /* before |old| (its config) goes */
    worker_apply_listeners(w);
    sl_gen_unref(old);
    close_newly_blocked(w);
    atomic_store(&w->acked_generation, g->cfg->generation);
  }
  if (atomic_load(&w->stop_requested)) worker_begin_drain(w);
}

void sl_worker_init(struct sl_worker *w, int id, int n_workers, struct sl_gen *gen) {
  memset(w, 0, sizeof(*w));
  w->id = id;
  w->n_workers = n_workers;
  w->loop = ev_loop_new(EVFLAG_AUTO | EVFLAG_NOSIGMASK);
  if (!w->loop) abort();
  w->gen = gen;
  ev_async_init(&w->wakeup, wakeup_cb);
  ev_async_start(w->loop, &w->wakeup);
  ev_prepare_init(&w->flush_watcher, flush_cb);
  ev_prepare_start(w->loop, &w->flush_watcher);
  w->global = sl_global_client_new(w->loop, id);
  sl_global_client_configure(w->global, gen->cfg);
  worker_apply_listeners(w);
  atomic_init(&w->acked_generation, gen->cfg->generation);
}

static void *worker_main(void *arg) {
  struct sl_worker *w = arg;
  ev_run(w->loop, 0);
  /* Loop ended (drained): release everything this thread owns. */
  while (w->conns) sl_conn_close(w->conns);
  sl_worker_flush_all(w);
  for (struct sl_pool *p = w->pools, *n; p; p = n) {
    n = p->next;
    sl_pool_del(p);
  }
  w->pools = NULL;
  sl_global_client_del(w->global);
  w->global = NULL;
  sl_gen_unref(w->gen);
  w->gen = NULL;
  sl_stream_cache_drain();
  sl_chunk_cache_drain();
  sl_h2mem_drain();
  sl_conn_cache_drain();
  sl_h2_cache_drain();
  atomic_fetch_add(&sl_workers_exited, 1);
  return NULL;
}

int sl_worker_start(struct sl_worker *w) {
  return pthread_create(&w->thread, NULL, worker_main, w);
}

void sl_worker_notify_reload(struct sl_worker *w) {
  atomic_store(&w->reload_requested, true);
  ev_async_send(w->loop, &w->wakeup);
}

void sl_worker_notify_stop(struct sl_worker *w, uint64_t timeout_ms, uint64_t spread_ms) {
  atomic_store(&stop_timeout_ms, timeout_ms);
  atomic_store(&stop_spread_ms, spread_ms < timeout_ms ? spread_ms : timeout_ms);
  atomic_store(&w->stop_requested, true);
  ev_async_send(w->loop, &w->wakeup);
}

void sl_worker_join(struct sl_worker *w) {
  pthread_join(w->thread, NULL);
  ev_loop_destroy(w->loop);
  while (w->listeners) {
    struct sl_worker_listener *wl = w->listeners;
    w->listeners = wl->next;
    free(wl);
  }
}

uint64_t sl_workers_acked_min(const struct sl_worker *w, int n) {
  uint64_t min = UINT64_MAX;
  for (int i = 0; i < n; i++) {
    uint64_t a = atomic_load(&w[i].acked_generation);
    if (a < min) min = a;
  }
  return min;
}
