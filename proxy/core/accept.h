/*
 * sluice — what a new client connection must pass before any TLS or HTTP
 * work (proxy/core/accept.c): the listener's connection-rate limit, and on
 * a `proxy_protocol` listener the trust of the balancer and the header's
 * errors (counted and logged). Called by worker.c at accept and by conn.c
 * once a PROXY header has named the client; worker thread only.
 */
#ifndef SLUICE_CORE_ACCEPT_H
#define SLUICE_CORE_ACCEPT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

struct sl_worker;
struct sl_listener;
struct sl_listener_cfg;

/* The configuration of |lis| in the worker's current generation, or NULL
 * when a reload removed it (its connections carry on). O(listeners),
 * pointer compares only. */
const struct sl_listener_cfg *sl_accept_cfg(const struct sl_worker *w, const struct sl_listener *lis);

/* The connection-rate limit of SPEC section 4 for a client at |peer|:
 * true to go on, false to close the socket (counted as a rejection;
 * shadow mode counts and goes on). |lc| NULL: no limit. */
bool sl_accept_connect_rate(struct sl_worker *w, const struct sl_listener_cfg *lc,
                            const struct sockaddr_storage *peer);

/* Whether |peer| may send PROXY headers to |lc| (one of its `trusted`
 * blocks; an IPv4-mapped IPv6 peer counts as IPv4). */
bool sl_accept_proxy_trusted(const struct sl_listener_cfg *lc, const struct sockaddr_storage *peer);

/* |peer|'s address as text ("192.0.2.1" also for an IPv4-mapped IPv6
 * peer, "2001:db8::1"), NUL-terminated in |buf|. */
void sl_accept_format_peer(const struct sockaddr_storage *peer, char *buf, size_t len);

/* A connection of |listener| closed for its PROXY header: counts
 * sluice_proxy_protocol_errors_total{listener,reason} and logs a warning
 * (at most one line per second per worker, with how many were left out;
 * |reason| "closed", a peer that hung up before its header, is only
 * counted: balancers' TCP health checks do that). |detail| may be NULL. */
void sl_accept_proxy_error(struct sl_worker *w, const char *listener, const char *reason,
                           const char *peer_ip, const char *detail);

#endif
