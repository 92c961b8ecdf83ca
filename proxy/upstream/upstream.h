/*
 * sluice — the upstream side as the rest of proxy/ calls it (stream.c,
 * conn.c, worker.c). Types in upstream-t.h; the backend contract in
 * backend.h.
 */
#ifndef SLUICE_UPSTREAM_H
#define SLUICE_UPSTREAM_H

#include "upstream/upstream-t.h"

struct sl_upstream_cfg;

/* The worker's pool for upstream |u| (created on first use; a reload that
 * moved the upstream retires the old pool). Limits follow |u|. NULL on
 * OOM. */
struct sl_pool *sl_pool_for(struct sl_worker *w, const struct sl_upstream_cfg *u);
/* Closes the pool's idle connections (worker exit, teardown). */
void sl_pool_close_all(struct sl_pool *p);
/* Closes the pool's idle connections, takes it out of the gauges and
 * frees it (its worker, at exit: nothing of it may be in use). */
void sl_pool_del(struct sl_pool *p);
/* Sets sluice_upstream_connections{upstream,state} and
 * sluice_upstream_pending{upstream} to the sums over every pool of every
 * worker, retired ones included, by upstream name (the metrics collector,
 * on the scraping thread). An upstream whose pools are all gone reads 0. */
void sl_pool_collect(void);
/* Starts the upstream half of |s| (connect, reuse or queue). On failure
 * answers the stream itself (503 queue full, 502). */
void sl_upstream_start(struct sl_stream *s);
/* More request body is in s->req_body (or s->req_done). */
void sl_upstream_request_body(struct sl_stream *s);
/* The frontend drained response body: resume reading the origin. */
void sl_upstream_resume(struct sl_stream *s);
/* The stream goes away: return or close its upstream connection. */
void sl_upstream_detach(struct sl_stream *s);
/* Ends the upstream half of a tunnel now (emergency close, idle). */
void sl_upstream_tunnel_end(struct sl_stream *s);
/* Writes every upstream connection queued this loop iteration (one writev
 * each, so pipelined requests go out together). Called by the worker's
 * flush pass. */
void sl_upstream_flush_scheduled(struct sl_worker *w);

#endif
