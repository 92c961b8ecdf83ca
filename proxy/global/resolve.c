/*
 * sluice — host name lookups off the worker loops. See resolve.h.
 *
 * One detached thread per lookup: lookups happen only at connection
 * attempts, which back off from 50 ms to 5 s, so a pool would save
 * nothing worth its code. (glibc's getaddrinfo_a does the same with a
 * thread of its own per request, and its completion signal or thread
 * would still have to reach the loop.)
 *
 * Shared state, under |mu|: |cancelled| (set by the loop), |refs| (2
 * while the thread runs and the loop waits; the last to drop frees).
 * The thread sends the ev_async only while holding |mu| and only if not
 * cancelled; the loop cancels under |mu| and then stops the watcher
 * (which also clears a send already made), so after sl_resolve_cancel()
 * neither the watcher nor the callback is touched again.
 */
#include <errno.h>
#include <stdio.h>
#include <netdb.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "core/container.h"
#include "global/resolve.h"

#define THREAD_STACK (256u * 1024u) /* NSS modules may want more than a worker's small stacks */

struct sl_resolve {
  pthread_mutex_t mu;
  int refs;
  bool cancelled;
  struct ev_loop *loop;
  ev_async w;
  sl_resolve_done *done;
  void *arg;
  size_t n;
  char addrs[SL_RESOLVE_MAX][INET6_ADDRSTRLEN];
  char error[128];
  char host[];
};

static void release(struct sl_resolve *r) {
  pthread_mutex_lock(&r->mu);
  int left = --r->refs;
  pthread_mutex_unlock(&r->mu);
  if (left == 0) {
    pthread_mutex_destroy(&r->mu);
    free(r);
  }
}

/* The addresses of |ai| as text, duplicates (one per socket type or
 * protocol) dropped. */
static void collect(struct sl_resolve *r, const struct addrinfo *ai) {
  for (; ai && r->n < SL_RESOLVE_MAX; ai = ai->ai_next) {
    char text[INET6_ADDRSTRLEN];
    const void *a;
    if (ai->ai_family == AF_INET)
      a = &((const struct sockaddr_in *)ai->ai_addr)->sin_addr;
    else if (ai->ai_family == AF_INET6)
      a = &((const struct sockaddr_in6 *)ai->ai_addr)->sin6_addr;
    else
      continue;
    if (!inet_ntop(ai->ai_family, a, text, sizeof(text))) continue;
    bool seen = false;
    for (size_t i = 0; i < r->n && !seen; i++) seen = !strcmp(r->addrs[i], text);
    if (!seen) memcpy(r->addrs[r->n++], text, sizeof(text));
  }
}

static void *lookup(void *p) {
  struct sl_resolve *r = p;
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                           .ai_flags = AI_ADDRCONFIG};
  struct addrinfo *res = NULL;
  int rc = getaddrinfo(r->host, NULL, &hints, &res);
  if (rc == 0) {
    collect(r, res);
    freeaddrinfo(res);
    if (r->n == 0) snprintf(r->error, sizeof(r->error), "no IPv4 or IPv6 address");
  } else {
    snprintf(r->error, sizeof(r->error), "%s",
             rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
  }
  pthread_mutex_lock(&r->mu);
  if (!r->cancelled) ev_async_send(r->loop, &r->w);
  pthread_mutex_unlock(&r->mu);
  release(r);
  return NULL;
}

static void answered(struct ev_loop *loop, ev_async *w, int revents) {
  struct sl_resolve *r = SL_CONTAINER_OF(w, struct sl_resolve, w);
  ev_async_stop(loop, w);
  r->done(r->arg, (const char(*)[INET6_ADDRSTRLEN])r->addrs, r->n, r->n ? NULL : r->error);
  release(r);
}

struct sl_resolve *sl_resolve_start(struct ev_loop *loop, const char *host, sl_resolve_done *done,
                                    void *arg) {
  size_t hl = strlen(host);
  struct sl_resolve *r = calloc(1, sizeof(*r) + hl + 1);
  if (!r) return NULL;
  memcpy(r->host, host, hl + 1);
  pthread_mutex_init(&r->mu, NULL);
  r->refs = 2;
  r->loop = loop;
  r->done = done;
  r->arg = arg;
  ev_async_init(&r->w, answered);
  ev_async_start(loop, &r->w);
  pthread_attr_t attr;
  pthread_t t;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&attr, THREAD_STACK);
  int rc = pthread_create(&t, &attr, lookup, r);
  pthread_attr_destroy(&attr);
  if (rc != 0) {
    ev_async_stop(loop, &r->w);
    pthread_mutex_destroy(&r->mu);
    free(r);
    return NULL;
  }
  return r;
}

void sl_resolve_cancel(struct sl_resolve *r) {
  pthread_mutex_lock(&r->mu);
  r->cancelled = true;
  pthread_mutex_unlock(&r->mu);
  ev_async_stop(r->loop, &r->w);
  release(r);
}
