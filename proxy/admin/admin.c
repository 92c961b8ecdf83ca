/*
 * sluice — the admin HTTP/1.1 listener. See admin.h for the routes and
 * limits.
 *
 * One `struct admin_conn` per connection, with its libev watchers, its
 * llhttp parser and its read buffer embedded. A connection is in one of
 * three states:
 *
 *   READING  parsing requests; on_message_complete pauses the parser, so
 *            one request is answered at a time and pipelined bytes wait in
 *            the read buffer;
 *   WRITING  the read watcher is stopped while the response drains with
 *            sl_io_sendv(); partial writes wait on the write watcher;
 *   LINGER   after an answer that closes the connection: the write side is
 *            shut down and input is read and dropped until EOF or 2 s, so
 *            that unread input does not turn the close into a RST that
 *            destroys the answer in flight (nginx lingering_close).
 *
 * One timer per connection serves all three: the deadline for a whole
 * request (not reset by each byte, so a slow drip cannot hold a slot), the
 * write-progress timeout, and the linger limit.
 */
#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>
#include <netinet/in.h>

#include <ev.h>
#include <llhttp.h>

#include "sluice/config-t.h"
#include "sluice/json.h"
#include "sluice/log.h"
#include "sluice/metrics.h"
#include "admin/admin.h"
#include "core/clock.h" /* sl_test_clock_advance */
#include "core/container.h"
#include "core/io.h"
#include "core/http.h"

#define ADMIN_MAX_CONNS 64
#define ADMIN_MAX_BODY (64 * 1024)    /* bytes */
#define ADMIN_MAX_URL 8192            /* bytes */
#define ADMIN_MAX_HEAD 16384          /* request line + header bytes */
#define ADMIN_MAX_HEADERS 100
#define ADMIN_MAX_AUTH 4200          /* "Bearer " and a token of up to 4096 bytes */
#define ADMIN_TIMEOUT 10.0            /* seconds */
#define ADMIN_LINGER 2.0              /* seconds */
#define ADMIN_ACCEPT_PAUSE 0.1        /* seconds, after EMFILE and friends */
#define ADMIN_RBUF 4096

enum conn_state { CS_READING, CS_WRITING, CS_LINGER };

struct admin_conn {
  struct sl_admin *admin;
  struct admin_conn *prev, *next;
  int fd;
  enum conn_state state;
  ev_io rio, wio;
  ev_timer timer;
  llhttp_t parser;

  /* The request being parsed. */
  bool in_message;  /* its first byte has been parsed */
  bool complete;    /* on_message_complete ran */
  bool keep_alive;  /* decided at completion */
  int error_status; /* set by a callback that refuses the request */
  size_t head_bytes, n_headers;
  uint64_t body_bytes;
  size_t url_len;
  char url[ADMIN_MAX_URL + 1];
  /* The Authorization field, for the guarded routes: the field name being
   * parsed (enough of it to tell), then the value. */
  char field[16];
  size_t field_len;
  bool in_auth, auth_bad; /* auth_bad: too long or repeated */
  bool in_trailers;        /* the head is done: fields now are trailers */
  size_t auth_len, n_auth;
  char auth[ADMIN_MAX_AUTH + 1];

  /* Received, not yet parsed: rbuf[roff..rlen). */
  size_t roff, rlen;
  char rbuf[ADMIN_RBUF];

  /* The response: head (inline) then body (owned), |sent| across both. */
  char head[512];
  size_t head_len;
  char *body;
  size_t body_len, sent;
  bool close_after;
};

struct sl_admin {
  struct ev_loop *loop;
  int fd, port;
  ev_io accept_w;
  ev_timer accept_pause;
  struct sl_admin_hooks hooks;
  void *ud;
  double timeout;
  struct admin_conn *conns;
  unsigned n_conns;
};

static void conn_drive(struct admin_conn *c);

/* ---- connection lifetime ------------------------------------------ */

static void conn_close(struct admin_conn *c) {
  struct sl_admin *a = c->admin;
  ev_io_stop(a->loop, &c->rio);
  ev_io_stop(a->loop, &c->wio);
  ev_timer_stop(a->loop, &c->timer);
  close(c->fd);
  if (c->prev) c->prev->next = c->next;
  else a->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  a->n_conns--;
  free(c->body);
  free(c);
}

static void conn_set_timer(struct admin_conn *c, double seconds) {
  c->timer.repeat = seconds;
  ev_timer_again(c->admin->loop, &c->timer);
}

/* Ready for the next request on this connection. The read watcher is
 * started by conn_drive() once the buffered bytes are used up. */
static void conn_next_request(struct admin_conn *c) {
  c->state = CS_READING;
  c->in_message = c->complete = c->keep_alive = false;
  c->error_status = 0;
  c->head_bytes = c->n_headers = 0;
  c->body_bytes = 0;
  c->url_len = 0;
  c->url[0] = '\0';
  c->field_len = c->auth_len = c->n_auth = 0;
  c->in_auth = c->auth_bad = c->in_trailers = false;
  llhttp_resume(&c->parser);
  conn_set_timer(c, c->admin->timeout);
}

/* ---- responses ---------------------------------------------------- */

/* Queues a response and switches to WRITING. Takes ownership of |body|
 * (malloc'd or NULL). |inline_body| (short, static) is used instead when
 * non-NULL. |extra| is one more header line without its CRLF (an Allow or
 * WWW-Authenticate field; NULL: none). A HEAD request gets the headers
 * only. */
static void conn_respond(struct admin_conn *c, int status, const char *ctype, char *body,
                         size_t len, const char *inline_body, const char *extra, bool close) {
  if (status < 200 || status > 599) {
    free(body);
    body = NULL;
    len = 0;
    inline_body = "internal error\n";
    ctype = "text/plain; charset=utf-8";
    status = 500;
  }
  if (inline_body) {
    free(body);
    body = NULL;
    len = strlen(inline_body);
  }
  if (!body && !inline_body) len = 0;
  bool head_only = c->complete && llhttp_get_method(&c->parser) == HTTP_HEAD;
  bool no_body = status == 204 || status == 304;

  int n = snprintf(c->head, sizeof(c->head), "HTTP/1.1 %d %s\r\n", status, sl_http_reason(status));
  size_t hl = (size_t)n;
  if (!no_body)
    hl += (size_t)snprintf(c->head + hl, sizeof(c->head) - hl,
                           "content-type: %s\r\ncontent-length: %zu\r\n", ctype, len);
  if (extra) hl += (size_t)snprintf(c->head + hl, sizeof(c->head) - hl, "%s\r\n", extra);
  hl += (size_t)snprintf(c->head + hl, sizeof(c->head) - hl,
                         "cache-control: no-store\r\nconnection: %s\r\n\r\n",
                         close ? "close" : "keep-alive");
  /* Inline bodies are short and static: they go in the head buffer. */
  if (inline_body && !head_only && !no_body && hl + len < sizeof(c->head)) {
    memcpy(c->head + hl, inline_body, len);
    hl += len;
  }
  if (head_only || no_body) {
    free(body);
    body = NULL;
  }
  c->head_len = hl;
  free(c->body);
  c->body = body;
  c->body_len = body ? len : 0;
  c->sent = 0;
  c->close_after = close;
  c->state = CS_WRITING;
  ev_io_stop(c->admin->loop, &c->rio);
  conn_set_timer(c, c->admin->timeout);
}

static void conn_respond_text(struct admin_conn *c, int status, const char *text, bool close) {
  conn_respond(c, status, "text/plain; charset=utf-8", NULL, 0, text, NULL, close);
}

/* Returns 1 when everything was sent, 0 when waiting for the socket to
 * drain (write watcher started), -1 on a socket error. */
static int conn_flush(struct admin_conn *c) {
  size_t total = c->head_len + c->body_len;
  while (c->sent < total) {
    struct iovec iov[2];
    int n = 0;
    if (c->sent < c->head_len) {
      iov[n++] = (struct iovec){c->head + c->sent, c->head_len - c->sent};
      if (c->body_len) iov[n++] = (struct iovec){c->body, c->body_len};
    } else {
      iov[n++] = (struct iovec){c->body + (c->sent - c->head_len), total - c->sent};
    }
    ssize_t w = sl_io_sendv(c->fd, iov, n);
    if (w == SL_IO_AGAIN) {
      ev_io_start(c->admin->loop, &c->wio);
      return 0;
    }
    if (w < 0) return -1;
    c->sent += (size_t)w;
    conn_set_timer(c, c->admin->timeout); /* progress */
  }
  ev_io_stop(c->admin->loop, &c->wio);
  free(c->body);
  c->body = NULL;
  c->body_len = c->head_len = c->sent = 0;
  return 1;
}

static void conn_linger(struct admin_conn *c) {
  c->state = CS_LINGER;
  shutdown(c->fd, SHUT_WR);
  c->roff = c->rlen = 0;
  conn_set_timer(c, ADMIN_LINGER);
  ev_io_start(c->admin->loop, &c->rio);
}

/* ---- routes ------------------------------------------------------- */

static const char *body_ctype(const char *body, size_t len) {
  return len && body && body[0] == '{' ? "application/json" : "text/plain; charset=utf-8";
}

static void route_healthz(struct admin_conn *c, const char *query, bool close) {
  conn_respond_text(c, 200, "ok\n", close);
}

static void route_readyz(struct admin_conn *c, const char *query, bool close) {
  struct sl_admin *a = c->admin;
  int status = 200;
  if (a->hooks.ready) a->hooks.ready(a->ud, &status);
  conn_respond_text(c, status, status == 200 ? "ready\n" : "not ready\n", close);
}

static void route_metrics(struct admin_conn *c, const char *query, bool close) {
  char *out;
  size_t len;
  if (sl_metrics_render(&out, &len) != 0) {
    conn_respond_text(c, 503, "out of memory\n", close);
    return;
  }
  conn_respond(c, 200, "text/plain; version=0.0.4; charset=utf-8", out, len, NULL, NULL, close);
}

/* The routes served by a hook of the process: 404 when it gave none;
 * otherwise the hook fills status and a malloc'd body (taken over). */
struct hook_answer {
  int status;
  char *body;
  size_t len;
};

static bool hook_missing(struct admin_conn *c, bool present, bool close) {
  if (!present) conn_respond_text(c, 404, "not found\n", close);
  return !present;
}

static void hook_respond(struct admin_conn *c, const struct hook_answer *h, const char *ctype,
                         bool close) {
  conn_respond(c, h->status, ctype ? ctype : body_ctype(h->body, h->len), h->body, h->len, NULL,
               NULL, close);
}

static void route_config(struct admin_conn *c, const char *query, bool close) {
  struct sl_admin *a = c->admin;
  if (hook_missing(c, a->hooks.config != NULL, close)) return;
  struct hook_answer h = {200, NULL, 0};
  a->hooks.config(a->ud, &h.body, &h.len);
  hook_respond(c, &h, "text/plain; charset=utf-8", close);
}

static void route_reload(struct admin_conn *c, const char *query, bool close) {
  struct sl_admin *a = c->admin;
  if (hook_missing(c, a->hooks.reload != NULL, close)) return;
  struct hook_answer h = {500, NULL, 0};
  a->hooks.reload(a->ud, &h.status, &h.body, &h.len);
  hook_respond(c, &h, NULL, close);
}

static void route_explain(struct admin_conn *c, const char *query, bool close) {
  struct sl_admin *a = c->admin;
  if (hook_missing(c, a->hooks.explain != NULL, close)) return;
  struct hook_answer h = {500, NULL, 0};
  a->hooks.explain(a->ud, query, &h.status, &h.body, &h.len);
  hook_respond(c, &h, NULL, close);
}

#ifdef SLUICE_TESTING
/* POST /testing/clock?advance_ms=N (1 <= N <= 86400000): moves policy time
 * (sl_now_ns) forward by N ms; answers the total offset. Tests only: the
 * route does not exist in release builds. */
static void route_test_clock(struct admin_conn *c, const char *query, bool close) {
  const char *v = strncmp(query, "advance_ms=", 11) == 0 ? query + 11 : NULL;
  char *end = NULL;
  unsigned long long ms = v && *v >= '0' && *v <= '9' ? strtoull(v, &end, 10) : 0;
  if (!end || *end != '\0' || ms < 1 || ms > 86400000ull) {
    conn_respond_text(c, 400, "want advance_ms=N, 1 <= N <= 86400000\n", close);
    return;
  }
  uint64_t total = sl_test_clock_advance((uint64_t)ms * 1000000u);
  char body[64]; /* inline: copied into the head buffer */
  snprintf(body, sizeof(body), "{\"offset_ms\": %llu}\n", (unsigned long long)(total / 1000000u));
  conn_respond(c, 200, "application/json", NULL, 0, body, NULL, close);
}
#endif

struct admin_route {
  const char *path;
  bool post;    /* POST only; otherwise GET and HEAD */
  bool guarded; /* changes or reveals something: hooks->authorize decides */
  void (*serve)(struct admin_conn *c, const char *query, bool close);
};

static const struct admin_route routes[] = {
    {"/healthz", false, false, route_healthz}, {"/readyz", false, false, route_readyz},
    {"/metrics", false, false, route_metrics}, {"/config", false, true, route_config},
    {"/reload", true, true, route_reload},     {"/explain", false, true, route_explain},
#ifdef SLUICE_TESTING
    {"/testing/clock", true, false, route_test_clock},
#endif
};

/* Asks hooks->authorize about the request's Authorization field; answers
 * 401 (with a Bearer challenge) or 403 itself and returns false when it
 * says no. */
static bool conn_authorized(struct admin_conn *c, bool close) {
  struct sl_admin *a = c->admin;
  if (!a->hooks.authorize) return true;
  /* The field value without the trailing blanks llhttp leaves in it
   * (RFC 9110 §5.5: optional whitespace is not part of the value). */
  size_t len = c->auth_len;
  while (len > 0 && (c->auth[len - 1] == ' ' || c->auth[len - 1] == '\t')) len--;
  int st = a->hooks.authorize(a->ud, c->n_auth == 1 && !c->auth_bad ? c->auth : NULL, len);
  if (st == 200) return true;
  if (st == 401) {
    conn_respond(c, 401, "application/json", NULL, 0,
                 "{\"error\":\"unauthorized\",\"detail\":\"this endpoint wants "
                 "Authorization: Bearer <admin.token_file's token>\"}\n",
                 "www-authenticate: Bearer realm=\"sluice-admin\"", close);
    return false;
  }
  conn_respond(c, 403, "application/json", NULL, 0,
               "{\"error\":\"token_required\",\"detail\":\"the admin address is not loopback: "
               "set admin.token_file to use this endpoint\"}\n",
               NULL, close);
  return false;
}

/* Answers the complete request in c->url. */
static void conn_route(struct admin_conn *c) {
  bool close = !c->keep_alive;
  char *query = strchr(c->url, '?');
  size_t path_len = query ? (size_t)(query - c->url) : c->url_len;
  query = query ? query + 1 : c->url + c->url_len;
  uint8_t method = llhttp_get_method(&c->parser);

  for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
    const struct admin_route *r = &routes[i];
    if (strlen(r->path) != path_len || memcmp(r->path, c->url, path_len) != 0) continue;
    bool ok = r->post ? method == HTTP_POST : method == HTTP_GET || method == HTTP_HEAD;
    if (!ok) {
      conn_respond(c, 405, "text/plain; charset=utf-8", NULL, 0, "method not allowed\n",
                   r->post ? "allow: POST" : "allow: GET, HEAD", close);
      return;
    }
    if (r->guarded && !conn_authorized(c, close)) return;
    r->serve(c, query, close);
    return;
  }
  conn_respond_text(c, 404, "not found\n", close);
}

/* ---- parsing ------------------------------------------------------ */

static struct admin_conn *conn_of(llhttp_t *p) {
  return SL_CONTAINER_OF(p, struct admin_conn, parser);
}

/* Fails the parse with |status| as the answer. */
static int refuse(struct admin_conn *c, int status) {
  c->error_status = status;
  return HPE_USER;
}

static int on_message_begin(llhttp_t *p) {
  conn_of(p)->in_message = true;
  return 0;
}

static int count_head(struct admin_conn *c, size_t len) {
  c->head_bytes += len;
  return c->head_bytes > ADMIN_MAX_HEAD ? refuse(c, 431) : 0;
}

static int on_url(llhttp_t *p, const char *at, size_t len) {
  struct admin_conn *c = conn_of(p);
  if (len > ADMIN_MAX_URL - c->url_len) return refuse(c, 414);
  memcpy(c->url + c->url_len, at, len);
  c->url_len += len;
  c->url[c->url_len] = '\0';
  return count_head(c, len);
}

static int on_head_data(llhttp_t *p, const char *at, size_t len) {
  return count_head(conn_of(p), len);
}

static int on_header_field(llhttp_t *p, const char *at, size_t len) {
  struct admin_conn *c = conn_of(p);
  /* The name may come in pieces; only its first bytes are kept, its
   * length is counted whole. */
  for (size_t i = 0; i < len; i++, c->field_len++)
    if (c->field_len < sizeof(c->field)) c->field[c->field_len] = (char)tolower((unsigned char)at[i]);
  return count_head(c, len);
}

static int on_header_field_complete(llhttp_t *p) {
  struct admin_conn *c = conn_of(p);
  /* Credentials come in the head only (RFC 9110 §6.5.1: a trailer must
   * not carry authentication); a chunked body's trailer fields are not
   * looked at. */
  c->in_auth = !c->in_trailers && c->field_len == 13 && memcmp(c->field, "authorization", 13) == 0;
  if (c->in_auth && c->n_auth++) c->auth_bad = true; /* a second one: ambiguous */
  c->field_len = 0;
  return ++c->n_headers > ADMIN_MAX_HEADERS ? refuse(c, 431) : 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len) {
  struct admin_conn *c = conn_of(p);
  if (c->in_auth) {
    if (len > ADMIN_MAX_AUTH - c->auth_len) {
      c->auth_bad = true;
    } else {
      memcpy(c->auth + c->auth_len, at, len);
      c->auth_len += len;
      c->auth[c->auth_len] = '\0';
    }
  }
  return count_head(c, len);
}

static int on_header_value_complete(llhttp_t *p) {
  conn_of(p)->in_auth = false;
  return 0;
}

static int on_headers_complete(llhttp_t *p) {
  struct admin_conn *c = conn_of(p);
  c->in_trailers = true;
  /* A declared length is refused before any of the body is read. */
  if ((p->flags & F_CONTENT_LENGTH) && p->content_length > ADMIN_MAX_BODY) return refuse(c, 413);
  return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len) {
  struct admin_conn *c = conn_of(p);
  c->body_bytes += len;
  return c->body_bytes > ADMIN_MAX_BODY ? refuse(c, 413) : 0;
}

static int on_message_complete(llhttp_t *p) {
  struct admin_conn *c = conn_of(p);
  c->complete = true;
  c->keep_alive = llhttp_should_keep_alive(p) && !p->upgrade;
  return HPE_PAUSED; /* one request at a time; the rest waits in rbuf */
}

static const llhttp_settings_t parser_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_method = on_head_data,
    .on_version = on_head_data,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_header_field_complete = on_header_field_complete,
    .on_header_value_complete = on_header_value_complete,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* Parses buffered input; on a complete or refused request, queues the
 * answer (state becomes WRITING). */
static void conn_parse(struct admin_conn *c) {
  const char *data = c->rbuf + c->roff;
  llhttp_errno_t err = llhttp_execute(&c->parser, data, c->rlen - c->roff);
  if (err == HPE_OK) {
    c->roff = c->rlen = 0;
    return;
  }
  if ((err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) && c->complete) {
    const char *pos = llhttp_get_error_pos(&c->parser);
    size_t used = pos && pos >= data ? (size_t)(pos - data) : c->rlen - c->roff;
    c->roff += used <= c->rlen - c->roff ? used : c->rlen - c->roff;
    if (err == HPE_PAUSED_UPGRADE) c->keep_alive = false;
    conn_route(c);
    return;
  }
  /* Malformed or refused: answer and close; the rest of the input is
   * dropped while lingering. */
  int status = c->error_status ? c->error_status : 400;
  const char *text = status == 413   ? "request body too large\n"
                     : status == 414 ? "uri too long\n"
                     : status == 431 ? "request header fields too large\n"
                                     : "bad request\n";
  if (SL_LOG_ENABLED(SL_LOG_DEBUG)) {
    const char *why = llhttp_get_error_reason(&c->parser);
    char esc[256];
    size_t n = 0;
    sl_json_escape(esc, sizeof(esc), &n, why ? why : "");
    esc[n] = '\0';
    sl_log_json(SL_LOG_DEBUG, "admin request refused", "\"status\":%d,\"reason\":\"%s\"", status,
                esc);
  }
  c->roff = c->rlen = 0;
  conn_respond_text(c, status, text, true);
}

/* Runs the connection until it must wait for the socket. May free |c|. */
static void conn_drive(struct admin_conn *c) {
  for (;;) {
    switch (c->state) {
    case CS_WRITING: {
      int r = conn_flush(c);
      if (r < 0) {
        conn_close(c);
        return;
      }
      if (r == 0) return;
      if (c->close_after) {
        conn_linger(c);
        return;
      }
      conn_next_request(c);
      break;
    }
    case CS_READING:
      if (c->roff == c->rlen) {
        c->roff = c->rlen = 0;
        ev_io_start(c->admin->loop, &c->rio);
        return;
      }
      conn_parse(c);
      break;
    case CS_LINGER:
      return;
    }
  }
}

/* ---- watchers ----------------------------------------------------- */

static void on_readable(struct ev_loop *loop, ev_io *w, int revents) {
  struct admin_conn *c = SL_CONTAINER_OF(w, struct admin_conn, rio);
  if (c->state == CS_LINGER) {
    char sink[4096];
    for (;;) {
      ssize_t n = sl_io_read(c->fd, sink, sizeof(sink));
      if (n > 0) continue;
      if (n == SL_IO_AGAIN) return;
      conn_close(c); /* EOF or error */
      return;
    }
  }
  ssize_t n = sl_io_read(c->fd, c->rbuf + c->rlen, sizeof(c->rbuf) - c->rlen);
  if (n == SL_IO_AGAIN) return;
  if (sl_io_is_fatal(n)) {
    conn_close(c);
    return;
  }
  if (n == SL_IO_EOF || n == 0) {
    /* EOF. Everything received has been parsed; a request cut short gets
     * a 400 (the peer may still read), an idle connection just closes. */
    if (c->in_message && !c->complete && llhttp_finish(&c->parser) != HPE_OK) {
      conn_respond_text(c, 400, "bad request\n", true);
      conn_drive(c);
    } else {
      conn_close(c);
    }
    return;
  }
  c->rlen += (size_t)n;
  conn_drive(c);
}

static void on_writable(struct ev_loop *loop, ev_io *w, int revents) {
  conn_drive(SL_CONTAINER_OF(w, struct admin_conn, wio));
}

static void on_timeout(struct ev_loop *loop, ev_timer *w, int revents) {
  struct admin_conn *c = SL_CONTAINER_OF(w, struct admin_conn, timer);
  if (c->state == CS_READING && (c->in_message || c->rlen > c->roff)) {
    c->roff = c->rlen = 0;
    conn_respond_text(c, 408, "request timeout\n", true);
    conn_drive(c);
    return;
  }
  conn_close(c); /* idle keep-alive, stalled writer, or linger over */
}

static void conn_start(struct sl_admin *a, int fd) {
  struct admin_conn *c = calloc(1, sizeof(*c));
  if (!c) {
    close(fd);
    return;
  }
  c->admin = a;
  c->fd = fd;
  llhttp_init(&c->parser, HTTP_REQUEST, &parser_settings);
  ev_io_init(&c->rio, on_readable, fd, EV_READ);
  ev_io_init(&c->wio, on_writable, fd, EV_WRITE);
  ev_init(&c->timer, on_timeout);
  c->next = a->conns;
  if (a->conns) a->conns->prev = c;
  a->conns = c;
  a->n_conns++;
  conn_next_request(c);
  conn_drive(c);
}

/* Over the connection limit: a short 503, best effort, then close. Input
 * already received is drained first so the close does not reset the
 * connection under the answer. */
static void refuse_busy(int fd) {
  static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\n"
                             "content-type: text/plain; charset=utf-8\r\n"
                             "content-length: 5\r\nconnection: close\r\n\r\nbusy\n";
  char sink[1024];
  while (recv(fd, sink, sizeof(sink), MSG_DONTWAIT) > 0) {
  }
  (void)!send(fd, busy, sizeof(busy) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
  shutdown(fd, SHUT_WR);
  close(fd);
}

static void on_accept_resume(struct ev_loop *loop, ev_timer *w, int revents) {
  struct sl_admin *a = SL_CONTAINER_OF(w, struct sl_admin, accept_pause);
  ev_io_start(loop, &a->accept_w);
}

static void on_accept(struct ev_loop *loop, ev_io *w, int revents) {
  struct sl_admin *a = SL_CONTAINER_OF(w, struct sl_admin, accept_w);
  for (int i = 0; i < ADMIN_MAX_CONNS; i++) { /* bounded work per wake-up */
    int fd = accept4(a->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      /* Out of descriptors or memory: the pending connection stays in the
       * backlog and would wake us at once; back off instead of spinning. */
      sl_log(SL_LOG_WARN, "admin accept failed", "error", strerror(errno), (char *)NULL);
      ev_io_stop(loop, &a->accept_w);
      ev_timer_set(&a->accept_pause, ADMIN_ACCEPT_PAUSE, 0);
      ev_timer_start(loop, &a->accept_pause);
      return;
    }
    if (a->n_conns >= ADMIN_MAX_CONNS) refuse_busy(fd);
    else conn_start(a, fd);
  }
}

/* ---- public ------------------------------------------------------- */

struct sl_admin *sl_admin_new(struct ev_loop *loop, const struct sl_sockaddr *addr,
                              const struct sl_admin_hooks *hooks, void *ud, char *err,
                              size_t errlen) {
  const char *text = addr && addr->text ? addr->text : "(admin address)";
  if (!addr || addr->len == 0) {
    snprintf(err, errlen, "admin listener: no address");
    return NULL;
  }
  int fd = socket(addr->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    snprintf(err, errlen, "admin listener %s: socket: %s", text, strerror(errno));
    return NULL;
  }
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(fd, (const struct sockaddr *)&addr->ss, addr->len) != 0) {
    snprintf(err, errlen, "admin listener %s: bind: %s", text, strerror(errno));
    goto fail_fd;
  }
  if (listen(fd, 128) != 0) {
    snprintf(err, errlen, "admin listener %s: listen: %s", text, strerror(errno));
    goto fail_fd;
  }
  struct sockaddr_storage bound;
  socklen_t blen = sizeof(bound);
  int port = 0;
  if (getsockname(fd, (struct sockaddr *)&bound, &blen) == 0) {
    if (bound.ss_family == AF_INET) port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
    else if (bound.ss_family == AF_INET6) port = ntohs(((struct sockaddr_in6 *)&bound)->sin6_port);
  }

  struct sl_admin *a = calloc(1, sizeof(*a));
  if (!a) {
    snprintf(err, errlen, "admin listener %s: out of memory", text);
    goto fail_fd;
  }
  a->loop = loop;
  a->fd = fd;
  a->port = port;
  if (hooks) a->hooks = *hooks;
  a->ud = ud;
  a->timeout = ADMIN_TIMEOUT;
  ev_io_init(&a->accept_w, on_accept, fd, EV_READ);
  ev_init(&a->accept_pause, on_accept_resume);
  ev_io_start(loop, &a->accept_w);
  return a;

fail_fd:
  close(fd);
  return NULL;
}

void sl_admin_del(struct sl_admin *a) {
  if (!a) return;
  while (a->conns) conn_close(a->conns);
  ev_io_stop(a->loop, &a->accept_w);
  ev_timer_stop(a->loop, &a->accept_pause);
  close(a->fd);
  free(a);
}

int sl_admin_port(const struct sl_admin *a) { return a->port; }

void sl_admin_set_timeout(struct sl_admin *a, double seconds) {
  if (seconds > 0) a->timeout = seconds;
}
