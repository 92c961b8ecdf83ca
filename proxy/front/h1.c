/*
 * sluice — HTTP/1.1 frontend (server side), on llhttp.
 *
 * One request at a time per connection: when a request's message is
 * complete the parser pauses and the socket stops being read, so
 * pipelined requests wait in the read buffer and are answered strictly in
 * order (RFC 9112 §9.3.2) without sluice buffering more than one read.
 *
 * Framing is strict (llhttp built with LLHTTP_STRICT_MODE, no lenient
 * flags): Content-Length with Transfer-Encoding, duplicate Content-Length,
 * bare LF and obs-fold are errors (RFC 9112 §6.3, §2.2, §5.2), answered 400
 * with the connection closed before anything reaches the upstream.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <llhttp.h>

#include "sluice/log.h"
#include "sluice/retry.h"
#include "core/hpiece.h"
#include "core/conn.h"
#include "core/idle.h"
#include "core/pace.h"
#include "core/listener-t.h"
#include "core/stream.h"
#include "core/worker-t.h"
#include "front/front.h"
#include "core/http.h"
#include "core/stats.h"
#include "front/ws.h"

enum h1_state {
  H1_IDLE = 0,      /* between requests */
  H1_HEADERS,       /* inside a request head */
  H1_BODY,          /* head dispatched, body still arriving */
  H1_WAIT_RESPONSE, /* request complete, response in progress */
  H1_TUNNEL,        /* after a 101: raw bytes both ways */
};

struct sl_h1 {
  struct sl_conn *c;
  llhttp_t parser;
  enum h1_state state;
  struct sl_stream *cur;

  /* Head fields being accumulated (pieces may span reads). */
  struct sl_hpiece field, value, target;
  char *url; /* the request target, in the stream's arena once complete */
  uint32_t head_bytes, n_headers;
  uint32_t n_host;

  int err_status;        /* set by a callback before returning an error */
  const char *err_what;
  const char *err_header; /* an extra "name: value\r\n" for that answer */
  bool keep_alive;       /* this exchange allows another after it */
  bool client_close;     /* the client asked to close after it (Connection: close, 1.0) */
  bool resp_chunked;     /* response framed with chunked encoding */
  bool resp_close_delim; /* HTTP/1.0 client, unknown length */
  bool resp_complete;
  bool eof;              /* client half-closed */
  bool http10;
  bool head_request;       /* the request line said HEAD */
  bool prev_read_ended_lf; /* the previous llhttp_execute input ended in LF */
  const char *exec_start;  /* input of the llhttp_execute in progress */
  struct sl_metric_series *m_active;
};

static const struct sl_frontend_ops h1_frontend;
static llhttp_settings_t h1_settings;

static struct sl_h1 *h1_of(struct sl_conn *c) { return c->proto_data; }

static int h1_fail(struct sl_h1 *h, int status, const char *what) {
  h->err_status = status;
  h->err_what = what;
  return -1;
}

static int h1_count_head(struct sl_h1 *h, size_t n) {
  h->head_bytes += (uint32_t)n;
  if (h->head_bytes > h->c->lis->header_bytes) return h1_fail(h, 431, "header_too_large");
  return 0;
}

static int on_message_begin(llhttp_t *p) {
  struct sl_h1 *h = p->data;
  struct sl_conn *c = h->c;
  h->cur = sl_stream_new(c, &h1_frontend, SL_PROTO_H1);
  if (!h->cur) return h1_fail(h, 503, "out_of_memory");
  h->cur->req.scheme = c->ssl ? "https" : "http";
  h->state = H1_HEADERS;
  sl_conn_idle_leave(c);
  sl_hpiece_reset(&h->field);
  sl_hpiece_reset(&h->value);
  sl_hpiece_reset(&h->target);
  h->url = NULL;
  h->head_bytes = h->n_headers = h->n_host = 0;
  h->head_request = false;
  h->resp_chunked = h->resp_close_delim = h->resp_complete = false;
  if (c->lis->request_header_timeout_ms) sl_conn_set_timeout(c, c->lis->request_header_timeout_ms);
  return 0;
}

/* Right after the method token: an error answer to HEAD has no body,
 * even when the error is found later in the request line. */
static int on_method_complete(llhttp_t *p) {
  struct sl_h1 *h = p->data;
  h->head_request = p->method == HTTP_HEAD;
  return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t n) {
  struct sl_h1 *h = p->data;
  if (h1_count_head(h, n)) return -1;
  if (sl_hpiece_add(&h->target, at, n)) return h1_fail(h, 503, "oom");
  return 0;
}

static int on_url_complete(llhttp_t *p) {
  struct sl_h1 *h = p->data;
  h->url = sl_arena_strndup(&h->cur->arena, h->target.len ? h->target.at : "", h->target.len);
  sl_hpiece_clear(&h->target);
  return h->url ? 0 : h1_fail(h, 503, "oom");
}

static int on_header_field(llhttp_t *p, const char *at, size_t n) {
  struct sl_h1 *h = p->data;
  if (h1_count_head(h, n)) return -1;
  if (sl_hpiece_add(&h->field, at, n)) return h1_fail(h, 503, "oom");
  return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t n) {
  struct sl_h1 *h = p->data;
  if (h1_count_head(h, n)) return -1;
  /* llhttp continues an obs-fold line (CRLF then SP/HTAB) as another value
   * span starting right after the LF; a genuine value never does. RFC 9112
   * §5.2 lets a server reject it, and a proxy must not pass it on. */
  bool after_lf = at > h->exec_start ? at[-1] == '\n' : h->prev_read_ended_lf;
  if (after_lf) return h1_fail(h, 400, "obs_fold");
  if (sl_hpiece_add(&h->value, at, n)) return h1_fail(h, 503, "oom");
  return 0;
}

static bool token_equal(const char *a, size_t alen, const char *b) {
  return alen == strlen(b) && strncasecmp(a, b, alen) == 0;
}

static int on_header_value_complete(llhttp_t *p) {
  struct sl_h1 *h = p->data;
  if (++h->n_headers > h->c->lis->headers) return h1_fail(h, 431, "too_many_headers");
  const char *v = h->value.len ? h->value.at : "";
  size_t vlen = h->value.len;
  /* Trailing OWS is not part of the value (RFC 9110 §5.5). */
  while (vlen && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t')) vlen--;
  const char *f = h->field.len ? h->field.at : "";
  if (token_equal(f, h->field.len, "host") && ++h->n_host > 1)
    return h1_fail(h, 400, "duplicate_host");
  /* The one copy of a field: into the stream's arena. */
  if (sl_stream_add_header(h->cur, f, h->field.len, v, vlen)) return h1_fail(h, 503, "oom");
  sl_hpiece_clear(&h->field);
  sl_hpiece_clear(&h->value);
  return 0;
}

/* A header field that ended without a value (`Name:` then CRLF). */
static int on_header_field_complete(llhttp_t *p) {
  struct sl_h1 *h = p->data;
  sl_hpiece_clear(&h->value);
  return 0;
}

static bool header_has_token(const char *v, const char *token) {
  size_t tl = strlen(token);
  const char *s = v;
  while (*s) {
    while (*s == ' ' || *s == '\t' || *s == ',') s++;
    const char *e = s;
    while (*e && *e != ',') e++;
    const char *t = e;
    while (t > s && (t[-1] == ' ' || t[-1] == '\t')) t--;
    if ((size_t)(t - s) == tl && strncasecmp(s, token, tl) == 0) return true;
    s = e;
  }
  return false;
}

static int on_headers_complete(llhttp_t *p) {
  struct sl_h1 *h = p->data;
  struct sl_stream *s = h->cur;
  struct sl_request *r = &s->req;
  struct sl_conn *c = h->c;

  r->method = llhttp_method_name((llhttp_method_t)p->method);
  r->path = h->url ? h->url : "";
  h->http10 = p->http_major == 1 && p->http_minor == 0;
  const struct sl_header *host = sl_request_header(r, "host");
  if (host) {
    if (host->value_len == 0) return h1_fail(h, 400, "empty_host");
    r->authority = host->value;
  } else if (!h->http10) {
    return h1_fail(h, 400, "missing_host"); /* RFC 9112 §3.2 */
  }
  if (p->method == HTTP_CONNECT) return h1_fail(h, 405, "connect_not_supported");
  if (r->path[0] != '/' && !(r->path[0] == '*' && p->method == HTTP_OPTIONS))
    return h1_fail(h, 400, "bad_request_target");

  r->is_head = p->method == HTTP_HEAD;
  const struct sl_header *te = sl_request_header(r, "transfer-encoding");
  /* Only "chunked" is understood; any other coding would be lost when the
   * body is re-framed for the upstream (RFC 9112 §6.1: 501). */
  if (te && strcasecmp(te->value, "chunked") != 0)
    return h1_fail(h, 501, "unsupported_transfer_encoding");
  if (p->flags & F_CHUNKED) {
    r->has_body = true;
  } else if (p->flags & F_CONTENT_LENGTH) {
    r->content_length = (int64_t)p->content_length;
    r->has_body = p->content_length > 0;
  }
  const struct sl_header *expect = sl_request_header(r, "expect");
  if (expect) {
    if (strcasecmp(expect->value, "100-continue") != 0) return h1_fail(h, 417, "bad_expect");
    r->expect_continue = r->has_body && !h->http10;
  }
  const struct sl_header *upg = sl_request_header(r, "upgrade");
  const struct sl_header *conn_hdr = sl_request_header(r, "connection");
  if (upg && header_has_token(upg->value, "websocket") && conn_hdr &&
      header_has_token(conn_hdr->value, "upgrade")) {
    /* RFC 6455 §4.1/§4.2.1: a GET with a 16-byte base64 key and version
     * 13; another version is answered 426 naming the one sluice speaks. */
    if (p->method != HTTP_GET) return h1_fail(h, 400, "websocket_needs_get");
    const struct sl_header *key = sl_request_header(r, "sec-websocket-key");
    if (!key || !sl_ws_key_valid(key->value, key->value_len))
      return h1_fail(h, 400, "bad_websocket_key");
    const struct sl_header *ver = sl_request_header(r, "sec-websocket-version");
    if (!ver || strcmp(ver->value, "13") != 0) {
      h->err_header = "sec-websocket-version: 13\r\n";
      return h1_fail(h, 426, "websocket_version_unsupported");
    }
    r->upgrade_websocket = true;
  }
  /* Any other Upgrade (h2c included) is never forwarded: the header is
   * hop-by-hop and dropped, and the request proceeds as plain HTTP/1.1. */

  h->client_close = !llhttp_should_keep_alive(p);
  h->keep_alive = !h->client_close && !c->w->draining;
  /* RFC 9112 §6.1: an HTTP/1.0 message with Transfer-Encoding has framing
   * a 1.0 intermediary may have got wrong: close after answering it. */
  if (h->http10 && te) h->keep_alive = false;
  /* A refused or failed upgrade leaves llhttp in its upgrade state: close
   * after answering rather than parse further bytes as HTTP. */
  if (r->upgrade_websocket || p->upgrade) h->keep_alive = false;
  h->state = r->has_body ? H1_BODY : H1_WAIT_RESPONSE;
  /* The head is in: the header timeout ends, the idle timeout guards the
   * rest of the exchange. */
  sl_conn_set_timeout(c, c->lis->idle_timeout_ms);

  sl_stream_dispatch(s);
  /* 100-continue is sent once sluice has decided to go upstream; a local
   * answer (error, rejection) goes out instead and the body is never
   * solicited (RFC 9110 §10.1.1). */
  if (r->expect_continue && !s->local_response && !s->resp_head_sent)
    SL_PIPE_LIT(&c->out, "HTTP/1.1 100 Continue\r\n\r\n");
  /* Upgrade requests are proxied as plain requests until tunnels exist:
   * tell llhttp to keep parsing rather than hand over raw bytes. */
  return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t n) {
  struct sl_h1 *h = p->data;
  struct sl_stream *s = h->cur;
  if (s->local_response) return 0; /* answered already: discard */
  if (sl_pipe_write(&s->req_body, at, n)) return h1_fail(h, 503, "oom");
  s->bytes_in += n;
  sl_pace_charge(s, SL_PACE_UP, n);
  return 0;
}

static int on_message_complete(llhttp_t *p) {
  struct sl_h1 *h = p->data;
  struct sl_stream *s = h->cur;
  s->req_done = true;
  if (h->state == H1_BODY) h->state = H1_WAIT_RESPONSE;
  /* Pause: pipelined bytes stay unparsed until this response is done. */
  return HPE_PAUSED;
}

static void h1_settings_init(void) {
  static bool done;
  if (done) return;
  llhttp_settings_init(&h1_settings);
  h1_settings.on_message_begin = on_message_begin;
  h1_settings.on_method_complete = on_method_complete;
  h1_settings.on_url = on_url;
  h1_settings.on_url_complete = on_url_complete;
  h1_settings.on_header_field = on_header_field;
  h1_settings.on_header_value = on_header_value;
  h1_settings.on_header_field_complete = on_header_field_complete;
  h1_settings.on_header_value_complete = on_header_value_complete;
  h1_settings.on_headers_complete = on_headers_complete;
  h1_settings.on_body = on_body;
  h1_settings.on_message_complete = on_message_complete;
  done = true;
}

static int h1_start(struct sl_conn *c) {
  struct sl_h1 *h = calloc(1, sizeof(*h));
  if (!h) return -1;
  h1_settings_init();
  h->c = c;
  llhttp_init(&h->parser, HTTP_REQUEST, &h1_settings);
  h->parser.data = h;
  c->proto_data = h;
  h->m_active = c->lis->m_conn_h1;
  if (h->m_active) sl_metric_gauge_add(h->m_active, 1);
  return 0;
}

/* Writes a complete error response for a request that never reached a
 * stream dispatch (parse errors, limits) and closes after it. */
static void h1_write_error_and_close(struct sl_h1 *h, int status, const char *error) {
  struct sl_conn *c = h->c;
  struct sl_stream *s = h->cur;
  if (s && (s->route || s->local_response)) {
    /* Already dispatched: answer through the stream if the head is not
     * out yet, otherwise the connection can only be cut. */
    h->keep_alive = false;
    if (!s->resp_head_sent && !s->local_response) {
      sl_stream_respond_error(s, status, error, "http", 0);
      sl_conn_close_after_flush(c);
      return;
    }
    /* A local answer is whole in memory (the upstream side may have
     * answered this very timeout): it is flushed, not cut. */
    if (s->resp_head_sent && !h->resp_complete && !s->local_response) {
      sl_conn_close(c);
      return;
    }
    sl_conn_close_after_flush(c);
    return;
  }
  double seconds = s ? ev_now(c->w->loop) - s->started : 0; /* no stream: no time yet */
  if (s) {
    sl_stream_del(s);
    h->cur = NULL;
  }
  char body[256];
  int bl = sl_reject_body_json(body, sizeof(body), error, "http", 0);
  size_t blen = bl > 0 ? (size_t)bl : 0;
  sl_pipe_printf(&c->out,
                 "HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %zu\r\n"
                 "%sconnection: close\r\n\r\n",
                 status, sl_http_reason(status), blen, h->err_header ? h->err_header : "");
  /* RFC 9110 §9.3.2: a HEAD response has no content (its length is still
   * announced, as it would be for GET). */
  if (!h->head_request) sl_pipe_write(&c->out, body, blen);
  sl_stats_request_done(c->w, "-", SL_PROTO_H1, status, seconds < 0 ? 0 : seconds);
  h->state = H1_IDLE;
  sl_conn_close_after_flush(c);
}

static void h1_request_done_reading(struct sl_h1 *h) {
  /* Stop reading until the response is written: the next pipelined
   * request must not be parsed before this one is answered. */
  sl_conn_pause_read(h->c);
}

/* Tunnel bytes from the client go to the upstream as they are. */
static ssize_t h1_tunnel_read(struct sl_h1 *h, const char *data, size_t len) {
  struct sl_stream *s = h->cur;
  if (!s || s->req_done) return (ssize_t)len;
  if (sl_pipe_write(&s->req_body, data, len) != 0) return -1;
  s->bytes_in += len;
  sl_pace_charge(s, SL_PACE_UP, len);
  sl_stream_request_body(s);
  if (h->cur == s && (sl_pipe_full(&s->req_body) || sl_pace_hold(s, SL_PACE_UP)))
    sl_conn_pause_read(h->c);
  return (ssize_t)len;
}

static ssize_t h1_on_read(struct sl_conn *c, const char *data, size_t len) {
  struct sl_h1 *h = h1_of(c);
  if (h->state == H1_TUNNEL) return h1_tunnel_read(h, data, len);
  if (h->state == H1_WAIT_RESPONSE) return 0; /* paused; keep bytes */
  h->exec_start = data;
  llhttp_errno_t err = llhttp_execute(&h->parser, data, len);
  size_t used = len;
  if (err == HPE_PAUSED) {
    used = (size_t)(llhttp_get_error_pos(&h->parser) - data);
    h1_request_done_reading(h);
    h->prev_read_ended_lf = used > 0 && data[used - 1] == '\n';
    goto parsed;
  } else if (err != HPE_OK) {
    int status = h->err_status ? h->err_status : 400;
    const char *what = h->err_what ? h->err_what : "bad_request";
    if (SL_LOG_ENABLED(SL_LOG_DEBUG))
      sl_log(SL_LOG_DEBUG, "h1 parse error", "peer", c->peer_ip, "reason",
             llhttp_get_error_reason(&h->parser), NULL);
    h1_write_error_and_close(h, status, what);
    return (ssize_t)len;
  }
  h->prev_read_ended_lf = len > 0 && data[len - 1] == '\n';
  /* The read buffer is reused: a field cut by this read moves to its
   * scratch. */
  if (sl_hpiece_keep(&h->field) || sl_hpiece_keep(&h->value) || sl_hpiece_keep(&h->target)) {
    h1_write_error_and_close(h, 503, "out_of_memory");
    return (ssize_t)len;
  }
parsed:;
  /* The body timeout measures progress, not the whole body: each read of
   * it starts the idle timeout over. */
  if (h->state == H1_BODY) sl_conn_set_timeout(c, c->lis->idle_timeout_ms);
  struct sl_stream *s = h->cur;
  if (s && !s->local_response && s->route) {
    if (!sl_pipe_empty(&s->req_body) || s->req_done) sl_stream_request_body(s);
    /* Back-pressure: the upstream has not taken the body yet, or a paced
     * upload has used its bandwidth (on_body charged it). */
    if (h->cur == s &&
        (sl_pipe_full(&s->req_body) || (h->state == H1_BODY && sl_pace_hold(s, SL_PACE_UP))))
      sl_conn_pause_read(c);
  }
  return (ssize_t)used;
}

static int h1_put_headers(struct sl_pipe *o, const struct sl_response *r) {
  int rv = 0;
  for (uint32_t i = 0; i < r->n_headers && rv == 0; i++)
    rv |= sl_pipe_put_field(o, r->headers[i].name, r->headers[i].name_len, r->headers[i].value,
                            r->headers[i].value_len);
  return rv;
}

/* Renders the response head into c->out. */
static void h1_response_head(struct sl_stream *s) {
  struct sl_conn *c = s->conn;
  struct sl_h1 *h = h1_of(c);
  struct sl_response *r = &s->resp;
  struct sl_pipe *o = &c->out;
  s->resp_head_sent = true;

  if (s->tunnel) {
    static const char line[] = "HTTP/1.1 101 Switching Protocols\r\n";
    int rv = sl_pipe_write(o, line, sizeof(line) - 1);
    rv |= h1_put_headers(o, r);
    static const char tail[] = "connection: upgrade\r\nupgrade: websocket\r\n\r\n";
    rv |= sl_pipe_write(o, tail, sizeof(tail) - 1);
    if (rv) {
      sl_conn_close(c);
      return;
    }
    /* From here on both directions are raw bytes; the upstream side's
     * timer closes the tunnel when it goes idle. */
    h->state = H1_TUNNEL;
    h->keep_alive = false;
    s->req_done = false;
    h->url = NULL; /* in the arena the compaction gives back */
    sl_stream_tunnel_compact(s, NULL, 0);
    sl_idle_tunnel_opened(s);
    sl_conn_set_timeout(c, 0);
    sl_conn_resume_read(c);
    sl_conn_schedule_flush(c);
    return;
  }

  /* A request whose body sluice has not read cannot share the connection
   * with the next one. A local answer (a refusal) is rendered from the
   * head, before llhttp reports the message complete: a request without a
   * body is complete all the same, and keeping its connection spares a
   * throttled client a reconnect (and TLS handshake) per retry. */
  if (!s->req_done && !(s->local_response && !s->req.has_body)) h->keep_alive = false;
  if (h->http10 && r->content_length < 0 && !r->no_body) {
    h->resp_close_delim = true;
    h->keep_alive = false;
  } else if (r->content_length < 0 && !r->no_body) {
    h->resp_chunked = true;
  }
  int rv = SL_PIPE_LIT(o, "HTTP/1.1 ");
  rv |= sl_pipe_put_uint(o, (uint64_t)r->status, false);
  rv |= SL_PIPE_LIT(o, " ");
  rv |= sl_pipe_puts(o, sl_http_reason(r->status));
  rv |= SL_PIPE_LIT(o, "\r\n");
  rv |= h1_put_headers(o, r);
  if (r->content_length >= 0 && !(r->no_body && r->status == 304))
  {
    rv |= SL_PIPE_LIT(o, "content-length: ");
    rv |= sl_pipe_put_uint(o, (uint64_t)r->content_length, false);
    rv |= SL_PIPE_LIT(o, "\r\n");
  }
  if (h->resp_chunked) rv |= SL_PIPE_LIT(o, "transfer-encoding: chunked\r\n");
  if (!h->keep_alive)
    rv |= SL_PIPE_LIT(o, "connection: close\r\n");
  else if (h->http10)
    rv |= SL_PIPE_LIT(o, "connection: keep-alive\r\n");
  rv |= SL_PIPE_LIT(o, "\r\n");
  if (rv) {
    sl_conn_close(c);
    return;
  }
  sl_conn_schedule_flush(c);
}

static void h1_response_body(struct sl_stream *s) { sl_conn_schedule_flush(s->conn); }

static void h1_request_body_drained(struct sl_stream *s, size_t n) {
  struct sl_conn *c = s->conn;
  struct sl_h1 *h = h1_of(c);
  (void)n;
  /* Reading was paused for the origin, not by the client: the body
   * timeout starts over. */
  if (h->state == H1_BODY) sl_conn_set_timeout(c, c->lis->idle_timeout_ms);
  if ((h->state == H1_BODY || h->state == H1_TUNNEL) && !sl_pipe_full(&s->req_body) && !h->eof)
    sl_conn_resume_read(c);
}

static void h1_abort(struct sl_stream *s) { sl_conn_close(s->conn); }

static const struct sl_frontend_ops h1_frontend = {
    .response_head = h1_response_head,
    .response_body = h1_response_body,
    .request_body_drained = h1_request_body_drained,
    .abort = h1_abort,
};

/* The response was written in full: finish the exchange and, on a
 * keep-alive connection, go back to parsing. */
static void h1_exchange_done(struct sl_h1 *h) {
  struct sl_conn *c = h->c;
  struct sl_stream *s = h->cur;
  bool reuse = h->keep_alive && s->req_done && !h->eof;
  sl_stream_finish_metrics(s);
  h->cur = NULL;
  /* The client asked to close after a request read to its end (a refusal
   * of a bodiless request is answered from its head): nothing of its is
   * unread, unless it sent more after asking to close. When sluice chose
   * to close (draining, an unread body), linger as before: a pipelining
   * client may have the next request on its way. */
  c->input_done = !reuse && h->client_close &&
                  (s->req_done || (s->local_response && !s->req.has_body));
  sl_stream_del(s);
  h->state = H1_IDLE;
  if (!reuse) {
    sl_conn_close_after_flush(c);
    return;
  }
  sl_conn_set_timeout(c, c->lis->idle_timeout_ms);
  llhttp_resume(&h->parser);
  sl_conn_resume_read(c);
  if (h->state == H1_IDLE) sl_conn_idle_enter(c); /* no pipelined request started */
}

/* Moves response body from the stream's pipe to the connection's output,
 * adding chunked framing; chunks move without copying. */
static void h1_produce(struct sl_conn *c) {
  struct sl_h1 *h = h1_of(c);
  struct sl_stream *s = h->cur;
  if (!s || !s->resp_head_sent || h->resp_complete) return;
  if (h->state == H1_TUNNEL) {
    bool moved_any = false;
    while (!sl_pipe_empty(&s->resp_body) && !sl_pipe_full(&c->out)) {
      size_t n = sl_pace_quota(s, SL_PACE_DOWN, s->resp_body.len);
      if (!n) break; /* the pacer's timer calls h1_response_body */
      if (sl_pipe_move(&c->out, &s->resp_body, n) != 0) {
        sl_conn_close(c);
        return;
      }
      sl_pace_charge(s, SL_PACE_DOWN, n);
      s->bytes_out += n;
      moved_any = true;
    }
    if (moved_any) sl_stream_response_drained(s);
    if (c->dead || h->cur != s) return;
    /* The origin closed the tunnel: finish writing, then close. */
    if (s->resp_done && sl_pipe_empty(&s->resp_body)) {
      h->resp_complete = true;
      sl_conn_close_after_flush(c);
    }
    return;
  }
  size_t moved = 0;
  if (!s->resp.no_body) {
    if (s->local_body_len) {
      /* Local answers always carry a content-length: no chunk framing. */
      if (sl_pipe_write(&c->out, s->local_body, s->local_body_len) != 0) {
        sl_conn_close(c);
        return;
      }
      s->bytes_out += s->local_body_len;
      s->local_body_len = 0;
    }
    while (!sl_pipe_empty(&s->resp_body) && !sl_pipe_full(&c->out)) {
      size_t n = sl_pace_quota(s, SL_PACE_DOWN, s->resp_body.len);
      if (!n) break; /* the pacer's timer calls h1_response_body */
      if (h->resp_chunked) {
        sl_pipe_put_uint(&c->out, n, true);
        SL_PIPE_LIT(&c->out, "\r\n");
      }
      if (sl_pipe_move(&c->out, &s->resp_body, n) != 0) {
        sl_conn_close(c);
        return;
      }
      sl_pace_charge(s, SL_PACE_DOWN, n);
      if (h->resp_chunked) SL_PIPE_LIT(&c->out, "\r\n");
      moved += n;
    }
  } else {
    sl_pipe_clear(&s->resp_body);
  }
  s->bytes_out += moved;
  if (moved) {
    sl_conn_set_timeout(c, c->lis->idle_timeout_ms);
    sl_stream_response_drained(s);
    if (c->dead || h->cur != s) return;
  }
  if (s->resp_done && sl_pipe_empty(&s->resp_body)) {
    if (h->resp_chunked && !s->resp.no_body) SL_PIPE_LIT(&c->out, "0\r\n\r\n");
    h->resp_complete = true;
    h1_exchange_done(h);
  }
}

static void h1_on_eof(struct sl_conn *c) {
  struct sl_h1 *h = h1_of(c);
  h->eof = true;
  if (h->state == H1_TUNNEL) {
    /* The client closed: its last bytes go to the origin, then the
     * tunnel ends (upstream/h1.c, h1_flush). */
    h->cur->req_done = true;
    sl_stream_request_body(h->cur);
    return;
  }
  if (h->state == H1_IDLE || !h->cur) {
    sl_conn_close_after_flush(c);
    return;
  }
  if (h->state == H1_HEADERS || h->state == H1_BODY) {
    /* The request can never complete. */
    if (h->cur->route && h->cur->resp_head_sent) {
      sl_conn_close(c);
      return;
    }
    if (h->cur->route) {
      h->keep_alive = false;
      sl_conn_close(c);
      return;
    }
    sl_stream_del(h->cur);
    h->cur = NULL;
    sl_conn_close(c);
    return;
  }
  /* H1_WAIT_RESPONSE: finish writing the response, then close. */
  h->keep_alive = false;
}

static void h1_destroy(struct sl_conn *c) {
  struct sl_h1 *h = h1_of(c);
  if (!h) return;
  if (h->cur) {
    if (h->cur->route) sl_stream_finish_metrics(h->cur);
    sl_stream_del(h->cur);
  }
  if (h->m_active) sl_metric_gauge_add(h->m_active, -1);
  sl_hpiece_free(&h->field);
  sl_hpiece_free(&h->value);
  sl_hpiece_free(&h->target);
  free(h);
  c->proto_data = NULL;
}

static void h1_drain(struct sl_conn *c, const char *tunnel_reason) {
  struct sl_h1 *h = h1_of(c);
  if (h->state == H1_TUNNEL) {
    sl_stream_tunnel_close(h->cur, 1001, tunnel_reason ? tunnel_reason : SL_DRAIN_CLOSE_REASON);
    return;
  }
  if (h->state == H1_IDLE) {
    sl_conn_close_after_flush(c);
    return;
  }
  h->keep_alive = false;
}

static bool h1_idle(struct sl_conn *c) { return h1_of(c)->state == H1_IDLE; }

static void h1_on_timeout(struct sl_conn *c) {
  struct sl_h1 *h = h1_of(c);
  switch (h->state) {
  case H1_IDLE:
    sl_conn_close(c);
    break;
  case H1_HEADERS:
    h1_write_error_and_close(h, 408, "request_header_timeout");
    break;
  case H1_BODY:
    h1_write_error_and_close(h, 408, "request_body_timeout");
    break;
  case H1_WAIT_RESPONSE:
  case H1_TUNNEL:
    /* The client stopped reading our response (the upstream side has its
     * own timeouts). */
    sl_conn_close(c);
    break;
  }
}

const struct sl_proto_ops sl_h1_ops = {
    .alpn = "http/1.1",
    .start = h1_start,
    .on_timeout = h1_on_timeout,
    .on_read = h1_on_read,
    .produce = h1_produce,
    .on_eof = h1_on_eof,
    .destroy = h1_destroy,
    .drain = h1_drain,
    .idle = h1_idle,
};
