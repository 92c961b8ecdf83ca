/*
 * sluice — what the pool (pool.c) gives an upstream backend (h1.c, and any
 * later one): closing, releasing and failing a connection, its lazy timer,
 * the scheduled flush, and the replay rules. Private to proxy/upstream/.
 */
#ifndef SLUICE_UPSTREAM_BACKEND_H
#define SLUICE_UPSTREAM_BACKEND_H

#include "core/conn-t.h"
#include "core/container.h"
#include "core/listener-t.h"
#include "core/stream.h"
#include "core/worker-t.h"
#include "upstream/upstream.h"

/* The backends (one line each). */
extern const struct sl_upstream_ops sl_upstream_h1_ops;

/* A new connection of pool |p| on |fd|, a non-blocking stream socket
 * connected or connecting (its first writable event completes it, then
 * the backend attaches u->s; NULL there parks it idle). Counts against
 * the pool's connections; on success takes ownership of |fd|. NULL on
 * OOM (|fd| is the caller's still). The pool's own connects come through
 * here; tests hand it one end of a socketpair. */
struct sl_upconn *sl_upconn_adopt(struct sl_pool *p, int fd);
/* Closes |u| and gives its slot back: the backend's close() runs, the
 * streams it hands back are replayed (or failed), a queued stream may
 * connect. The memory is freed at once unless a callback of |u| is on the
 * stack: frontends called from there may tear the exchange down, and the
 * callback must still be able to look at u->dead / u->s afterwards. */
void sl_upconn_close(struct sl_upconn *u);
/* The exchange on |u| is over (u->s is cleared here): |u| goes back to
 * the idle list or to the next queued stream if |reusable| and the pool
 * is neither retired nor draining, else it closes. */
void sl_upconn_release(struct sl_upconn *u, bool reusable);
/* Fails u->s with |status| / |error| (an upstream failure the breaker and
 * the upstream metrics hear of) and closes |u|. */
void sl_upconn_fail(struct sl_upconn *u, int status, const char *error);
/* The origin closed or reset reused |u| before answering u->s: if the
 * request can be replayed exactly (|body_taken| request body bytes were
 * consumed), closes |u| and sends it again on a fresh connection.
 * Returns false (nothing done) otherwise. */
bool sl_upconn_retry(struct sl_upconn *u, uint64_t body_taken);
/* Queues |u| for one on_writable at the end of this loop iteration, so
 * that requests pipelined meanwhile leave in the same writev. */
void sl_upconn_schedule_flush(struct sl_upconn *u);

/* The connection's one timer, lazy (libev "be smart about timeouts"):
 * setting or extending a deadline stores it; only an earlier deadline
 * re-arms the heap timer, and a timer that fires early re-arms for the
 * remainder before on_timeout is called. */
void sl_upconn_set_timeout(struct sl_upconn *u, uint64_t ms);
/* Arms the timer for the absolute deadline |at| (the deadline too). */
void sl_upconn_arm_at(struct sl_upconn *u, ev_tstamp at);
/* Progress: the current timeout starts over. */
static inline void sl_upconn_touch(struct sl_upconn *u) {
  u->timeout_at = ev_now(u->pool->w->loop) + u->timeout;
}

/* Whether sluice may send |s| again after a connection failed under it
 * (|body_taken| body bytes consumed). See pool.c. */
bool sl_upstream_may_replay(const struct sl_stream *s, uint64_t body_taken);
/* Reports an upstream failure of |s| (metrics, breaker) and answers it
 * |status| (or aborts it if its head went out). */
void sl_upstream_fail_stream(struct sl_pool *p, struct sl_stream *s, int status,
                             const char *error);

#endif
