/*
 * sluice — route selection. See include/sluice/route.h.
 */
#include <string.h>
#include <strings.h>

#include "sluice/path.h"
#include "sluice/route.h"

/* Host comparison ignores case and a trailing ":port" (RFC 9110 §7.2:
 * the port is not part of the name being routed on), and the root dot of
 * a fully qualified name ("api.example.com." is the same host, and DNS
 * and most origins treat it so; matching it raw let it skip the route). */
static bool host_equal(const char *want, const char *have) {
  size_t wl = strlen(want);
  const char *end = have + strlen(have);
  if (have[0] == '[') {
    const char *rb = strchr(have, ']');
    if (rb) end = rb + 1;
  } else {
    const char *colon = strrchr(have, ':');
    if (colon) end = colon;
    if (end - have > 1 && end[-1] == '.') end--;
  }
  return (size_t)(end - have) == wl && strncasecmp(want, have, wl) == 0;
}

bool sl_route_match_one(const struct sl_route_match *m, const struct sl_request_facts *f) {
  /* f->path is normalised (sl_path_normalize) and so is the prefix
   * (checked at config load): segment-boundary match, see path.h. */
  if (m->path_prefix && !sl_path_prefix_match(m->path_prefix, strlen(m->path_prefix), f->path))
    return false;
  if (m->method && strcmp(m->method, f->method) != 0) return false;
  if (m->host && (!f->host || !host_equal(m->host, f->host))) return false;
  if (m->listener && (!f->listener || strcmp(m->listener, f->listener) != 0)) return false;
  if (m->websocket == 0 && f->websocket) return false;
  if (m->websocket == 1 && !f->websocket) return false;
  for (size_t i = 0; i < m->n_headers; i++) {
    const char *v = f->header ? f->header(f->header_ctx, m->headers[i].name) : NULL;
    if (!v) return false;
    if (m->headers[i].value && strcmp(m->headers[i].value, v) != 0) return false;
  }
  return true;
}

const struct sl_route_cfg *sl_route_select(const struct sl_config *cfg,
                                           const struct sl_request_facts *f) {
  for (size_t i = 0; i < cfg->n_routes; i++) {
    if (sl_route_match_one(&cfg->routes[i].match, f)) return &cfg->routes[i];
  }
  return NULL;
}
