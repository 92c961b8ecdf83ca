/*
 * sluice — upstream pools (types; functions in upstream.h).
 */
#ifndef SLUICE_UPSTREAM_UPSTREAM_T_H
#define SLUICE_UPSTREAM_UPSTREAM_T_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

struct sl_worker;
struct sl_upconn;
struct sl_stream;

struct sl_pool {
  struct sl_worker *w;
  char *name;
  struct sl_sockaddr_storage_copy {
    struct sockaddr_storage ss;
    socklen_t len;
  } addr;
  char *address_text;
  uint32_t max_conns;   /* this worker's share */
  uint32_t max_pending; /* this worker's share */
  uint64_t connect_timeout_ms, response_timeout_ms, idle_timeout_ms;
  uint32_t n_conns;     /* open, idle or busy */
  uint32_t n_pending;
  struct sl_upconn *idle; /* idle keep-alive connections, LIFO */
  struct sl_stream *queue_head, *queue_tail;
  struct sl_pool *next;
  bool retired;         /* replaced by a reload: close when empty */
  uint32_t pipeline;    /* pipelining depth (1: off) */
  struct sl_upconn *pipe_candidate; /* busy connection taking pipelined requests */
};

#endif
