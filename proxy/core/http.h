/*
 * sluice — small HTTP facts shared by the frontends, the upstream side and
 * the admin listener.
 */
#ifndef SLUICE_PROXY_HTTP_H
#define SLUICE_PROXY_HTTP_H

#include <stddef.h>
#include <stdint.h>

struct sl_arena;
struct sl_header;
struct sl_request;

/* The first field |name| (lowercase) of |r|, or NULL. */
const struct sl_header *sl_request_header(const struct sl_request *r, const char *name);

/* RFC 9110 §15 reason phrase for |status| (a class name for unlisted
 * codes). */
const char *sl_http_reason(int status);

/* ---- hop-by-hop fields --------------------------------------------- */

/* Which message a field is forwarded in: a client's request towards the
 * origin, or the origin's response towards the client. */
enum sl_http_dir { SL_HTTP_REQUEST = 0, SL_HTTP_RESPONSE };

enum sl_hop {
  SL_HOP_KEEP = 0,    /* forward it */
  SL_HOP_DROP,        /* hop-by-hop, framing, or rewritten by sluice */
  SL_HOP_CONNECTION,  /* the Connection field itself: drop it, and the
                       * fields it names (sl_http_connection_list) */
};

/* The one hop-by-hop filter, both directions (RFC 9110 §7.6.1): what to do
 * with the field |name| (|len| bytes, any case) of a message being
 * forwarded. Dropped either way: Connection, Keep-Alive,
 * Proxy-Connection, TE, Trailer, Transfer-Encoding, Upgrade, the framing
 * field Content-Length (each side frames its own message), and any field
 * |connection| names, a comma-separated list of field names (the message's
 * Connection values, NULL for none; matched without case). Requests also
 * drop the fields sluice writes itself: Host, Expect, HTTP2-Settings,
 * Forwarded, X-Forwarded-For and X-Forwarded-Proto. */
enum sl_hop sl_http_hop(enum sl_http_dir dir, const char *name, size_t len,
                        const char *connection);

/* The field names listed by the Connection fields among |h|[0..n) (names
 * lowercase), as one comma-separated list: NULL if there is none, the
 * value itself if there is one, else the values joined in |a|. Returns
 * NULL as well if joining failed for want of memory (the caller then
 * fails the message). |*oom| tells the two NULLs apart. */
const char *sl_http_connection_list(struct sl_arena *a, const struct sl_header *h, uint32_t n,
                                    int *oom);

#endif
