/*
 * sluice — client connections (proxy/core/conn.c): accept, TLS handshake,
 * reads and writes, timers, lingering close. Types in conn-t.h.
 */
#ifndef SLUICE_CORE_CONN_H
#define SLUICE_CORE_CONN_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/conn-t.h"

struct sl_listener_cfg;

/* Takes |fd| (closed on failure). |lc|: the listener's configuration in
 * the worker's generation (NULL: none); with `proxy_protocol` the
 * connection waits for its PROXY header (and |peer| was trusted) first. */
void sl_conn_accept(struct sl_worker *w, struct sl_listener *lis, int fd,
                    const struct sockaddr_storage *peer, const struct sl_listener_cfg *lc);
/* Queue |c| for a write at the end of this loop iteration. */
void sl_conn_schedule_flush(struct sl_conn *c);
/* Close after pending output is written: the protocol state is freed,
 * TLS sends close_notify, the write side is shut and input is drained for
 * at most SL_LINGER_MS / SL_LINGER_MAX_BYTES before the socket is closed,
 * so the kernel does not turn the close into an RST that destroys the
 * answer (nginx lingering_close). */
#define SL_LINGER_MS 2000u
#define SL_LINGER_MAX_BYTES (1u << 20)
void sl_conn_close_after_flush(struct sl_conn *c);
void sl_conn_close(struct sl_conn *c);
/* Closes |w|'s oldest lingering connection of |lis|, so a new connection
 * can take its place under max_connections (a lingering connection has
 * nothing left to give its client but the chance of reading the last
 * answer; nginx reuses such connections the same way). Returns true if one
 * was closed. */
bool sl_conn_reclaim_lingering(struct sl_worker *w, const struct sl_listener *lis);
/* The worker's drain spread queue (worker.c): |c| waits there for its
 * turn; a connection that closes first leaves it (its turn counts as
 * spent, w->spread_spent). Pop returns the head, or NULL. */
void sl_conn_spread_push(struct sl_conn *c);
struct sl_conn *sl_conn_spread_pop(struct sl_worker *w);
void sl_conn_pause_read(struct sl_conn *c);
void sl_conn_resume_read(struct sl_conn *c);
/* (Re)arms the connection timer to fire after |ms| (0: stop). */
void sl_conn_set_timeout(struct sl_conn *c, uint64_t ms);
/* Makes it fire after |ms| at the latest: an earlier deadline stays. */
void sl_conn_set_timeout_by(struct sl_conn *c, uint64_t ms);
/* Runs once per loop iteration, before the loop blocks (ev_prepare):
 * parses buffered input of resumed connections and writes every queued
 * connection, until neither list has work, then frees closed ones. */
void sl_worker_flush_all(struct sl_worker *w);
/* Frees the calling thread's connection slabs (worker exit, after every
 * connection was freed). */
void sl_conn_cache_drain(void);

#endif
