/*
 * sluice — the request id: what ties sluice's access log line to the
 * origin's logs and to the client's report.
 *
 * A request that carries `x-request-id` (1 to SL_REQUEST_ID_MAX visible
 * ASCII bytes) keeps it; any other gets one, 32 lowercase hex digits like
 * nginx's $request_id, unique in the process (the thread's keyed-hash name
 * and its sequence number; the process's random key makes ids from
 * replicas differ too, short of 2^-64 chances). The upstream request carries
 * the id as its one `x-request-id` field; the access log prints it.
 * Computed once, when first asked for.
 */
#ifndef SLUICE_CORE_REQUEST_ID_H
#define SLUICE_CORE_REQUEST_ID_H

#include <stddef.h>

struct sl_stream;

#define SL_REQUEST_ID_MAX 128

/* The id of |s|'s request (|*len| bytes, not NUL-terminated when it is
 * the client's). */
const char *sl_request_id(struct sl_stream *s, size_t *len);

/* The same, when the caller has already found the request's first
 * x-request-id field |client| (NULL: it has none): no second look. */
struct sl_header;
const char *sl_request_id_from(struct sl_stream *s, const struct sl_header *client,
                               size_t *len);

#endif
