/*
 * sluice — the `+switch-master` subscription. See sentinel_watch.h.
 *
 * A sentinel publishes "<master-name> <old-ip> <old-port> <new-ip>
 * <new-port>" on +switch-master once it has promoted a replica (all
 * masters it monitors share the channel: the name is checked here).
 */
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <hiredis/adapters/libev.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/log.h"
#include "global/sentinel_watch.h"

struct sl_sentinel_watch {
  redisAsyncContext *ac; /* NULL once the connection is gone */
  sl_switch_master_cb *cb;
  void *arg;
  char master[65];
};

static void on_message(redisAsyncContext *ac, void *r, void *priv) {
  struct sl_sentinel_watch *w = ac->data;
  redisReply *rep = r;
  if (!w || !rep || rep->type != REDIS_REPLY_ARRAY || rep->elements != 3 ||
      rep->element[0]->type != REDIS_REPLY_STRING || strcmp(rep->element[0]->str, "message") ||
      rep->element[2]->type != REDIS_REPLY_STRING)
    return; /* the subscription's confirmation, or the connection going */
  char name[65], old_ip[INET6_ADDRSTRLEN], ip[INET6_ADDRSTRLEN];
  int old_port, port;
  if (sscanf(rep->element[2]->str, "%64s %45s %d %45s %d", name, old_ip, &old_port, ip, &port) != 5 ||
      strcmp(name, w->master) || port <= 0 || port > 65535)
    return;
  w->cb(w->arg, ip, port); /* may close |w|: nothing after this */
}

static void on_connect(const redisAsyncContext *ac, int status) {
  struct sl_sentinel_watch *w = ac->data;
  if (w && status != REDIS_OK) w->ac = NULL; /* hiredis frees it after this */
}

static void on_disconnect(const redisAsyncContext *ac, int status) {
  struct sl_sentinel_watch *w = ac->data;
  if (w) w->ac = NULL;
}

struct sl_sentinel_watch *sl_sentinel_watch_open(struct ev_loop *loop, const char *ip, int port,
                                                 const char *master_name,
                                                 sl_switch_master_cb *cb, void *arg) {
  struct sl_sentinel_watch *w = calloc(1, sizeof(*w));
  if (!w) return NULL;
  snprintf(w->master, sizeof(w->master), "%s", master_name);
  w->cb = cb;
  w->arg = arg;
  w->ac = redisAsyncConnect(ip, port);
  if (!w->ac || w->ac->err) {
    if (w->ac) redisAsyncFree(w->ac);
    free(w);
    return NULL;
  }
  w->ac->data = w;
  redisLibevAttach(loop, w->ac);
  redisAsyncSetConnectCallback(w->ac, on_connect);
  redisAsyncSetDisconnectCallback(w->ac, on_disconnect);
  if (redisAsyncCommand(w->ac, on_message, NULL, "SUBSCRIBE +switch-master") != REDIS_OK) {
    sl_sentinel_watch_close(w);
    return NULL;
  }
  return w;
}

void sl_sentinel_watch_close(struct sl_sentinel_watch *w) {
  if (!w) return;
  redisAsyncContext *ac = w->ac;
  if (ac) {
    ac->data = NULL; /* callbacks from here on see no watch */
    redisAsyncFree(ac); /* deferred by hiredis when inside its callback */
  }
  free(w);
}
