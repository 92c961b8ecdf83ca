/*
 * sluice — the access log line of one exchange (`access_log: on|sampled`).
 */
#ifndef SLUICE_CORE_ACCESS_LOG_H
#define SLUICE_CORE_ACCESS_LOG_H

#include <stddef.h>

#include "sluice/config-t.h"

struct sl_stream;

/* Writes |s|'s line: method, path (its query as `access_log_query` says),
 * status, route, protocol, client address, duration, whether sluice
 * answered itself, the request id, the user agent and the W3C trace id of
 * a valid `traceparent`, and the body bytes in and out (s->bytes_in,
 * s->bytes_out). One write(2). */
void sl_access_log_write(struct sl_stream *s);

/* |path|'s query with every value replaced by "*" (names kept: "a=*&b=*"),
 * an item without '=' replaced whole ("?*": it may be the token itself),
 * into |out| (|cap| bytes, NUL-terminated, truncated to fit); the part
 * before the '?' is copied as is. Returns the length. Pure. */
size_t sl_access_log_redact(const char *path, char *out, size_t cap);

/* The trace id (32 hex digits) of a `traceparent` value in the W3C Trace
 * Context form "VV-TRACEID-PARENTID-FLAGS" (version 00 has exactly those
 * 55 bytes; later versions may append "-..."), or NULL when it is not one
 * (an all-zero id is invalid). Pure. */
const char *sl_traceparent_trace_id(const char *v, size_t len);

#endif
