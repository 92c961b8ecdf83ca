/*
 * sluice — the admin HTTP/1.1 listener (proxy/admin.c).
 *
 * Serves, on a libev loop owned by the main thread:
 *
 *   GET  /healthz   200 "ok\n" while the process runs
 *   GET  /readyz    hooks->ready: 200 or 503
 *   GET  /metrics   sl_metrics_render(), Prometheus text format 0.0.4
 *   GET  /config    hooks->config
 *   POST /reload    hooks->reload
 *   GET  /explain   hooks->explain, given the raw query string
 *
 * /config, /reload and /explain are guarded: hooks->authorize decides.
 *
 * HEAD is accepted wherever GET is. Other paths get 404, other methods 405
 * with Allow. A route whose hook is NULL answers 404 (/readyz: 200).
 *
 * Limits, each answered before the connection is closed: request line and
 * headers 16 KiB / 100 fields (431), URL 8 KiB (414), body 64 KiB (413,
 * bodies are read and ignored), 10 s to receive a whole request (408;
 * an idle keep-alive connection is closed silently), 10 s without write
 * progress, 64 concurrent connections (the 65th gets 503 and is closed).
 * Malformed requests get 400 and the connection is closed.
 *
 * Threads: everything, hooks included, runs on the thread that runs |loop|;
 * sl_admin_new/_del must be called on that thread or while it is stopped.
 */
#ifndef SLUICE_PROXY_ADMIN_H
#define SLUICE_PROXY_ADMIN_H

#include <stddef.h>

struct ev_loop;
struct sl_sockaddr;

/* Each hook fills a response. |*body| is malloc'd by the hook (or left
 * NULL for an empty body); admin takes ownership and frees it. A status
 * outside 200..599 is answered as 500. Bodies of /reload and /explain that
 * begin with '{' are sent as application/json, others as text/plain. */
struct sl_admin_hooks {
  void (*ready)(void *ud, int *status);                                 /* 200 or 503 */
  void (*config)(void *ud, char **body, size_t *len);                   /* GET /config */
  void (*reload)(void *ud, int *status, char **body, size_t *len);      /* POST /reload */
  void (*explain)(void *ud, const char *query, int *status, char **body,
                  size_t *len); /* GET /explain?...: |query| is the raw query string
                                   after '?', "" when there is none */
  /* Before /config, /reload and /explain: |auth| is the request's one
   * Authorization value (|len| bytes; NULL when absent, repeated or over
   * 4200 bytes). Returns 200 to serve, 401 (no or wrong credentials:
   * answered with a Bearer challenge) or 403 (refused whatever the
   * credentials). NULL: every request is served. */
  int (*authorize)(void *ud, const char *auth, size_t len);
};

struct sl_admin;

/* Binds |addr| and starts serving on |loop|; |hooks| is copied, |ud| is
 * passed to every hook. Returns NULL and writes a message to |err| on
 * failure (socket, bind or listen error). */
struct sl_admin *sl_admin_new(struct ev_loop *loop, const struct sl_sockaddr *addr,
                              const struct sl_admin_hooks *hooks, void *ud, char *err,
                              size_t errlen);

/* Closes the listener and every admin connection; frees |a| (NULL is ok). */
void sl_admin_del(struct sl_admin *a);

/* The bound TCP port (useful after binding port 0). */
int sl_admin_port(const struct sl_admin *a);

/* Replaces the 10 s request/write timeout (seconds > 0); for tests. */
void sl_admin_set_timeout(struct sl_admin *a, double seconds);

#endif
