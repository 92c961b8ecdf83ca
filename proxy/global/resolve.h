/*
 * sluice — host name lookups off the worker loops, for the backends
 * sluice connects to as a client (Redis, Sentinel: proxy/global/).
 *
 * getaddrinfo() blocks (for as long as the resolver's timeouts and
 * attempts in resolv.conf say: 5 s x 2 by default), and hiredis calls it
 * inside redisAsyncConnect() when given a name. A worker never does: a
 * lookup runs on a short-lived detached thread of its own and its answer
 * comes back to the loop through an ev_async. A lookup is made at each
 * connection attempt (never at load), so a Kubernetes Service or a DNS
 * failover record that changes is followed on the next reconnection.
 *
 * Lifetime: the request is shared by the thread and the loop; whoever
 * lets go last frees it. sl_resolve_cancel() on the loop guarantees the
 * callback will not run, whatever the thread is doing.
 */
#ifndef SLUICE_GLOBAL_RESOLVE_H
#define SLUICE_GLOBAL_RESOLVE_H

#include <arpa/inet.h>
#include <ev.h>
#include <stddef.h>

#define SL_RESOLVE_MAX 8 /* addresses kept per answer */

struct sl_resolve;

/* The answer, on the loop's thread: |n| numeric addresses (IPv4 or IPv6
 * text, in getaddrinfo's order: RFC 6724), or none and |error| (the
 * resolver's message). The request is freed after this returns. */
typedef void sl_resolve_done(void *arg, const char (*addrs)[INET6_ADDRSTRLEN], size_t n,
                             const char *error);

/* Starts looking up |host| for |done| on |loop|; NULL when no thread can
 * be started (|done| is then never called). */
struct sl_resolve *sl_resolve_start(struct ev_loop *loop, const char *host, sl_resolve_done *done,
                                    void *arg);

/* On the loop's thread, before |done| ran: it never will. */
void sl_resolve_cancel(struct sl_resolve *r);

#endif
