/*
 * sluice — route selection (pure): request facts in, first matching route
 * out. SPEC section 3 "routes": first match wins.
 */
#ifndef SLUICE_ROUTE_H
#define SLUICE_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include "sluice/config-t.h"

/* Facts the data plane extracts from a request head. Strings are
 * NUL-terminated; header lookup goes through a callback so the engine
 * never sees the frontend's header representation. */
struct sl_request_facts {
  const char *method;
  const char *path;      /* request-target, query included, normalised (sluice/path.h) */
  const char *host;      /* Host or :authority, may carry a port; NULL if absent */
  const char *listener;  /* name of the listener the request came in on */
  bool websocket;        /* an HTTP/1.1 Upgrade: websocket or h2 :protocol websocket */
  /* Returns the value of header |name| (lowercase), or NULL. */
  const char *(*header)(const void *ctx, const char *name);
  const void *header_ctx;
};

bool sl_route_match_one(const struct sl_route_match *m, const struct sl_request_facts *f);
/* Returns the first route of |cfg| whose match accepts |f|, or NULL. */
const struct sl_route_cfg *sl_route_select(const struct sl_config *cfg,
                                           const struct sl_request_facts *f);

#endif
