/*
 * sluice — the exchange (proxy/core/stream.c): routing, admission, the
 * meeting point of a frontend and the upstream side. Types in stream-t.h.
 */
#ifndef SLUICE_CORE_STREAM_H
#define SLUICE_CORE_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/http.h"
#include "core/stream-t.h"

struct sl_stream *sl_stream_new(struct sl_conn *c, const struct sl_frontend_ops *fe,
                                enum sl_proto proto);
void sl_stream_del(struct sl_stream *s);
/* Frees the calling thread's recycled streams (worker exit). */
void sl_stream_cache_drain(void);
/* Appends a request header (copied into the stream arena; |name| is
 * lowercased). Returns 0, or -1 on OOM. */
int sl_stream_add_header(struct sl_stream *s, const char *name, size_t nlen,
                         const char *value, size_t vlen);
int sl_response_add_header(struct sl_stream *s, const char *name, size_t nlen,
                           const char *value, size_t vlen);
/* The request head is complete: route it, apply admission, start the
 * upstream exchange or answer locally. */
void sl_stream_dispatch(struct sl_stream *s);
/* The frontend appended request-body bytes to s->req_body (or set
 * s->req_done). */
void sl_stream_request_body(struct sl_stream *s);
/* The frontend consumed response-body bytes: the upstream may read on. */
void sl_stream_response_drained(struct sl_stream *s);
/* Answers |status| with sluice's JSON error body; |error| and |policy|
 * name the cause. Only valid while !s->resp_head_sent. */
void sl_stream_respond_error(struct sl_stream *s, int status, const char *error,
                             const char *policy, uint32_t retry_after);
/* Called by the upstream side: the exchange failed. Answers 502/504 if the
 * head has not gone out, else aborts. */
void sl_stream_upstream_failed(struct sl_stream *s, int status, const char *error);
/* The upstream answered 101 to a WebSocket request: the stream becomes a
 * tunnel (counted, listed on the worker for emergency closes). */
void sl_stream_tunnel_open(struct sl_stream *s);
/* Called by the frontend once a tunnel's head went out (h1: rendered into
 * the connection's output; h2: its HEADERS frame sent, since nghttp2
 * holds the head's strings uncopied until then). A tunnel lives long and
 * idles, and of its heads only the access line of its end still reads
 * anything (method, path, user-agent, traceparent, the request id): those
 * are copied into a right-sized block and the 2 KiB arena chunk is given
 * back (issue 16: an idle tunnel at HAProxy's cost). |extra| (may be
 * NULL) is the frontend's own block of |extra_size| bytes in the arena: it
 * moves too, and *extra is updated (the frontend relinks whatever points
 * at it). A paced tunnel keeps its arena (its pace state, with a live
 * timer, lives there). Out of memory: the arena stays as it was. */
void sl_stream_tunnel_compact(struct sl_stream *s, void **extra, size_t extra_size);
/* Ends a tunnel with a WebSocket close frame (|code|, |reason|) sent to
 * the client at the next frame boundary of the upstream-to-client stream,
 * then closes both sides. */
void sl_stream_tunnel_close(struct sl_stream *s, uint16_t code, const char *reason);
/* Upstream side: tunnel bytes from the origin are in s->resp_body. */
void sl_stream_tunnel_down(struct sl_stream *s, const char *data, size_t n);
/* Called by the upstream side when the exchange's outcome is known
 * (response head, or failure): feeds the circuit breaker. */
void sl_stream_outcome(struct sl_stream *s, bool failure);
/* The above, as the upstream side calls them (s->ex). */
extern const struct sl_exchange_ops sl_stream_exchange_ops;
/* Called by the frontend once the response is fully written (or the
 * stream is torn down): reports the outcome to metrics. */
void sl_stream_finish_metrics(struct sl_stream *s);

#endif
