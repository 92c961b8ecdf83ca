/*
 * sluice — the protocol-neutral exchange: routing, local answers and the
 * hand-off between a frontend and the upstream side. See core/stream-t.h.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <time.h>

#include "sluice/json.h"
#include "sluice/admission.h"
#include "sluice/blocklist.h"
#include "sluice/fmt.h"
#include "sluice/identify.h"
#include "sluice/log.h"
#include "sluice/metrics.h"
#include "sluice/path.h"
#include "sluice/retry.h"
#include "sluice/route.h"
#include "core/clock.h"
#include "core/conn.h"
#include "core/held.h"
#include "core/container.h"
#include "core/gen.h"
#include "core/pace.h"
#include "core/listener-t.h"
#include "core/access_log.h"
#include "core/rand.h"
#include "core/stream.h"
#include "global/client.h"
#include "core/worker-t.h"
#include "upstream/upstream.h"
#include "core/freelist.h"
#include "sluice/breaker.h"
#include "core/stats.h"

/* Recycled streams, per worker thread: a stream and the first chunk of its
 * arena are reused, so a request costs no malloc in steady state. Bounded
 * so a burst does not pin memory afterwards. */
#define STREAM_CACHE_MAX 1024 /* 640 streams in flight per worker (64 h2 connections x 10) fit */
/* A stream's arena chunk: a request head and its answer's fit in one. */
#define STREAM_ARENA_CHUNK 2048
/* A compacted tunnel's arena grows by this much (its close reason, at
 * most 123 bytes, sl_ws_close_frame). */
#define TUNNEL_ARENA_CHUNK 128

static void stream_free(void *obj) {
  struct sl_stream *s = obj;
  sl_arena_free(&s->arena);
  free(s);
}

static struct sl_freelist_class stream_class = {
    .name = "stream", .max_cached = STREAM_CACHE_MAX, .destroy = stream_free};
static __thread struct sl_freelist stream_cache = SL_FREELIST_INIT(&stream_class);

void sl_stream_cache_drain(void) { sl_freelist_drain(&stream_cache); }

struct sl_stream *sl_stream_new(struct sl_conn *c, const struct sl_frontend_ops *fe,
                                enum sl_proto proto) {
  struct sl_stream *s = sl_freelist_get(&stream_cache);
  if (s) {
    struct sl_arena keep = s->arena;
    memset(s, 0, sizeof(*s));
    s->arena = keep;
  } else {
    s = calloc(1, sizeof(*s));
    if (!s) return NULL;
    sl_arena_init(&s->arena, STREAM_ARENA_CHUNK);
  }
  s->conn = c;
  s->fe = fe;
  s->ex = &sl_stream_exchange_ops;
  s->proto = proto;
  s->req.content_length = -1;
  s->resp.content_length = -1;
  sl_pipe_init(&s->req_body, SL_BODY_PIPE_CAP);
  sl_pipe_init(&s->resp_body, SL_BODY_PIPE_CAP);
  s->gen = sl_gen_ref(c->w->gen);
  s->started = ev_now(c->w->loop);
  return s;
}

void sl_stream_outcome(struct sl_stream *s, bool failure) {
  if (!s->admitted || s->adm.finished || !s->adm.breaker) return;
  uint64_t now = sl_now_ns();
  uint64_t started = (uint64_t)(s->upstream_started * 1e9);
  uint64_t wall_now = (uint64_t)(ev_now(s->conn->w->loop) * 1e9);
  uint64_t latency = wall_now > started ? wall_now - started : 0;
  /* Only the breaker learns here; the concurrency slot is held until the
   * exchange ends (a streaming response is still in flight). */
  sl_breaker_report(s->adm.breaker, &s->adm.breaker_verdict,
                    failure ? SL_OUTCOME_FAILURE : SL_OUTCOME_SUCCESS, latency, now);
  s->adm.breaker = NULL;
}

static void tunnel_unlink(struct sl_stream *s) {
  struct sl_worker *w = s->conn->w;
  sl_held_tunnel_unlink(s);
  w->n_tunnels--;
  if (s->m_tunnels) sl_metric_gauge_add(s->m_tunnels, -1);
  sl_stats_tunnel_closed(s->route->name, ev_now(w->loop) - s->tunnel_started,
                         s->tunnel_bytes_up, s->tunnel_bytes_down);
}

void sl_stream_del(struct sl_stream *s) {
  if (s->tunnel) tunnel_unlink(s);
  if (s->pace) sl_pace_stop(s);
  if (s->admitted) {
    ev_timer_stop(s->conn->w->loop, &s->delay_timer);
    /* A breaker ticket never reported means the client left first. */
    sl_admission_finish(&s->adm, SL_OUTCOME_CANCELLED, 0, sl_now_ns());
  }
  sl_upstream_detach(s);
  sl_pipe_clear(&s->req_body);
  sl_pipe_clear(&s->resp_body);
  sl_gen_unref(s->gen);
  if (s->arena.chunk_size != STREAM_ARENA_CHUNK) {
    /* A compacted tunnel's block is too small to serve the next request:
     * the recycled stream takes a fresh chunk on its first head. */
    sl_arena_free(&s->arena);
    sl_arena_init(&s->arena, STREAM_ARENA_CHUNK);
  }
  sl_arena_reset(&s->arena);
  sl_freelist_put(&stream_cache, s); /* links through s->conn; frees past the bound */
}

static int header_append(struct sl_arena *a, struct sl_header **arr, uint32_t *n, uint32_t *cap,
                         const char *name, size_t nlen, const char *value, size_t vlen) {
  if (*n == *cap) {
    uint32_t ncap = *cap ? *cap * 2 : 16;
    struct sl_header *na = sl_arena_alloc(a, ncap * sizeof(*na));
    if (!na) return -1;
    if (*n) memcpy(na, *arr, *n * sizeof(*na));
    *arr = na;
    *cap = ncap;
  }
  char *nm = sl_arena_alloc(a, nlen + 1);
  char *val = sl_arena_strndup(a, value, vlen);
  if (!nm || !val) return -1;
  for (size_t i = 0; i < nlen; i++) nm[i] = (char)tolower((unsigned char)name[i]);
  nm[nlen] = '\0';
  struct sl_header *h = &(*arr)[(*n)++];
  h->name = nm;
  h->name_len = (uint32_t)nlen;
  h->value = val;
  h->value_len = (uint32_t)vlen;
  return 0;
}

int sl_stream_add_header(struct sl_stream *s, const char *name, size_t nlen, const char *value,
                         size_t vlen) {
  return header_append(&s->arena, &s->req.headers, &s->req.n_headers, &s->req.cap_headers, name,
                       nlen, value, vlen);
}

int sl_response_add_header(struct sl_stream *s, const char *name, size_t nlen, const char *value,
                           size_t vlen) {
  return header_append(&s->arena, &s->resp.headers, &s->resp.n_headers, &s->resp.cap_headers,
                       name, nlen, value, vlen);
}

static const char *facts_header(const void *ctx, const char *name) {
  const struct sl_header *h = sl_request_header(ctx, name);
  return h ? h->value : NULL;
}

static bool cfg_body_json(const struct sl_stream *s) { return s->gen->cfg->reject.body_json; }

/* A refusal, with what its policy adds (|extra|: body fields, headers). */
static void respond_refusal(struct sl_stream *s, int status, const char *error,
                            const char *policy, uint32_t retry_after,
                            const struct sl_reject_extra *extra) {
  if (s->resp_head_sent) {
    s->fe->abort(s);
    return;
  }
  sl_upstream_detach(s);
  s->local_response = true;
  /* Forget anything a failed upstream exchange left behind. */
  s->resp.n_headers = 0;
  sl_pipe_clear(&s->resp_body);

  char body[512];
  int bl;
  bool json = cfg_body_json(s);
  if (json) {
    bl = sl_reject_body_json_extra(body, sizeof(body), error, policy, retry_after,
                                   extra ? extra->body : NULL);
  } else {
    /* reject.body: text, for clients that cannot parse JSON (postmortem
     * 002: an unparseable error body crashed the caller). */
    bl = snprintf(body, sizeof(body), "%s (policy %s); retry after %u s\n", error,
                  policy ? policy : "-", retry_after);
    if (bl >= (int)sizeof(body)) bl = (int)sizeof(body) - 1;
  }
  size_t blen = bl > 0 ? (size_t)bl : 0;
  s->resp.status = status;
  s->resp.content_length = (int64_t)blen;
  s->resp.no_body = s->req.is_head;
  const char *ct = json ? "application/json" : "text/plain; charset=utf-8";
  sl_response_add_header(s, "content-type", 12, ct, strlen(ct));
  if (s->err_header_name)
    sl_response_add_header(s, s->err_header_name, strlen(s->err_header_name),
                           s->err_header_value, strlen(s->err_header_value));
  if (retry_after > 0) {
    char ra[24];
    size_t n = sl_fmt_u64(ra, retry_after);
    sl_response_add_header(s, "retry-after", 11, ra, n);
  }
  for (size_t i = 0; extra && i < extra->n_headers; i++)
    sl_response_add_header(s, extra->headers[i].name, strlen(extra->headers[i].name),
                           extra->headers[i].value, strlen(extra->headers[i].value));
  s->local_body = NULL;
  s->local_body_len = 0;
  if (!s->resp.no_body && blen) {
    char *copy = sl_arena_strndup(&s->arena, body, blen);
    if (!copy) {
      s->fe->abort(s);
      return;
    }
    s->local_body = copy;
    s->local_body_len = blen;
  }
  s->resp_head_done = true;
  s->resp_done = true;
  s->fe->response_head(s);
  s->fe->response_body(s);
}

void sl_stream_respond_error(struct sl_stream *s, int status, const char *error,
                             const char *policy, uint32_t retry_after) {
  respond_refusal(s, status, error, policy, retry_after, NULL);
}

void sl_stream_upstream_failed(struct sl_stream *s, int status, const char *error) {
  if (s->resp_head_sent) {
    s->fe->abort(s);
    return;
  }
  const struct sl_config *cfg = s->gen->cfg;
  uint32_t ra = (uint32_t)((cfg->reject.retry_after_min_ms + 999) / 1000);
  char policy[128];
  snprintf(policy, sizeof(policy), "upstream/%s", s->route ? s->route->upstream->name : "-");
  sl_stream_respond_error(s, status, error, policy, ra);
}

static void stream_go_upstream(struct sl_stream *s) {
  s->pool = sl_pool_for(s->conn->w, s->route->upstream);
  if (!s->pool) {
    sl_stream_respond_error(s, 503, "out_of_memory", "upstream", 1);
    return;
  }
  sl_upstream_start(s);
}

static void delay_timer_cb(struct ev_loop *loop, ev_timer *t, int revents) {
  struct sl_stream *s = SL_CONTAINER_OF(t, struct sl_stream, delay_timer);
  (void)loop;
  (void)revents;
  stream_go_upstream(s);
  sl_conn_schedule_flush(s->conn);
}

/* Remembers the device facts of the connection's latest request, for the
 * emergency close of blocked devices' idle connections after a reload.
 * Per request: two bounded copies, the address, and one SipHash of the
 * device id when there is one (the id itself is not kept: idle
 * connections' memory matters). */
static void remember_device(struct sl_conn *c, const struct sl_identity *id) {
  struct sl_dev_facts *d = &c->last;
  size_t n = 0;
  if (id->device_class) {
    n = id->device_class_len < sizeof(d->cls) - 1 ? id->device_class_len : sizeof(d->cls) - 1;
    memcpy(d->cls, id->device_class, n);
  }
  d->cls[n] = '\0';
  n = 0;
  if (id->firmware) {
    n = id->firmware_len < sizeof(d->firmware) - 1 ? id->firmware_len : sizeof(d->firmware) - 1;
    memcpy(d->firmware, id->firmware, n);
  }
  d->firmware[n] = '\0';
  d->family = id->family;
  memcpy(d->addr, id->addr, sizeof(d->addr));
  d->has_id = id->device_id && id->device_id_len;
  d->id_hash = d->has_id ? sl_blocklist_id_hash(id->device_id, id->device_id_len) : 0;
}

/* Replaces s->req.path with its normal form (sluice/path.h), so routes
 * match and the origin receives the same path. Most paths are plain and
 * stay where they are; the others are rewritten into the arena. Returns
 * true, or false once the stream is answered (400: no safe normal form;
 * 503: out of memory, as the raw path must not be routed). "*" (OPTIONS)
 * has no path. */
static bool stream_normalize_path(struct sl_stream *s) {
  const char *p = s->req.path;
  size_t len = strlen(p);
  if ((len == 1 && p[0] == '*') || sl_path_is_plain(p, len)) return true;
  char *out = sl_arena_alloc(&s->arena, len + 1);
  if (!out) {
    sl_stream_respond_error(s, 503, "out_of_memory", "http", 1);
    return false;
  }
  size_t out_len;
  enum sl_path_status st = sl_path_normalize(p, len, out, &out_len);
  if (st != SL_PATH_OK) {
    sl_stream_respond_error(s, 400, sl_path_status_name(st), "http", 0);
    return false;
  }
  s->req.path = out;
  return true;
}

void sl_stream_dispatch(struct sl_stream *s) {
  struct sl_gen *g = s->gen;
  const struct sl_config *cfg = g->cfg;
  struct sl_conn *c = s->conn;
  if (!stream_normalize_path(s)) return;
  struct sl_request_facts f = {
      .method = s->req.method,
      .path = s->req.path,
      .host = s->req.authority,
      .listener = c->lis->name,
      .websocket = s->req.upgrade_websocket,
      .header = facts_header,
      .header_ctx = &s->req,
  };
  s->route = sl_route_select(cfg, &f);
  if (!s->route) {
    sl_stream_respond_error(s, 404, "no_route", "routes", 0);
    return;
  }

  /* Identify: header slices in, facts out (no copies). */
  struct sl_hdr *hv = sl_arena_alloc(&s->arena, (s->req.n_headers + 1) * sizeof(*hv));
  if (!hv) {
    sl_stream_respond_error(s, 503, "out_of_memory", "identify", 1);
    return;
  }
  for (uint32_t i = 0; i < s->req.n_headers; i++) {
    hv[i].name = s->req.headers[i].name;
    hv[i].name_len = s->req.headers[i].name_len;
    hv[i].value = s->req.headers[i].value;
    hv[i].value_len = s->req.headers[i].value_len;
  }
  struct sl_identity id;
  if (sl_identify(&cfg->identify, (const struct sockaddr *)&c->peer, hv, s->req.n_headers, &id) !=
      SL_IDENTIFY_OK) {
    /* Two answers to "which device is this?": fail closed. */
    sl_stream_respond_error(s, 400, "ambiguous_identity", id.conflict ? id.conflict : "identify",
                            0);
    return;
  }
  s->xff_trusted = id.forwarded;
  /* The peer's text form exists already; only a forwarded address needs
   * formatting (inet_ntop was 6% of the instructions per request). */
  if (!id.forwarded || sl_identify_format_addr(&id, s->client_ip, sizeof(s->client_ip)) < 0)
    memcpy(s->client_ip, c->peer_ip, sizeof(s->client_ip));
  remember_device(c, &id);
  if (s->req.upgrade_websocket) s->dev = c->last;

  struct sl_admission_input in = {
      .cfg = cfg,
      .policies = g->policies,
      .route = s->route,
      .id = &id,
      .blocklist = g->blocklist,
      .facts = &f,
      .now_ns = sl_now_ns(),
      .now_unix = (int64_t)ev_now(c->w->loop),
      .rnd = sl_rand64(),
      .global = sl_global_client_port(c->w->global),
  };
  sl_admission_decide(&in, &s->adm);
  /* Exempt from the blocklist: an emergency close after a reload passes
   * this tunnel and this connection by (until a request that is not). */
  c->blocklist_exempt = s->blocklist_exempt = (s->adm.skip & SL_SKIP_BLOCKLIST) != 0;
  if (s->adm.allow) sl_stats_exemption(s->adm.allow->name, s->route->name);
  if (s->adm.firmware_unknown) sl_stats_firmware_unknown(s->route->name, id.firmware == NULL);
  const struct sl_stats_who who = {s->client_ip, id.firmware, id.firmware_len, id.device_class,
                                   id.device_class_len};
  for (unsigned i = 0; i < s->adm.n_shadow; i++)
    sl_stats_rejection(c->w, s->route->name, s->adm.shadow[i].policy, s->adm.shadow[i].reason,
                       true, &who);
  if (!s->adm.admit) {
    sl_stats_rejection(c->w, s->route->name, s->adm.policy, s->adm.reason, false, &who);
    if (s->req.upgrade_websocket) sl_stats_ws_upgrade(s->route->name, "rejected");
    respond_refusal(s, s->adm.status, s->adm.error, s->adm.policy, s->adm.retry_after_s,
                    s->adm.extra);
    return;
  }
  s->admitted = true;
  ev_init(&s->delay_timer, delay_timer_cb);
  if (s->adm.paced && sl_pace_start(s) != 0) {
    sl_stream_respond_error(s, 503, "out_of_memory", "shaping", 1);
    return;
  }
  if (s->adm.delay_ms) {
    s->delay_timer.repeat = 0;
    ev_timer_set(&s->delay_timer, (ev_tstamp)s->adm.delay_ms / 1000.0, 0);
    ev_timer_start(c->w->loop, &s->delay_timer);
    return;
  }
  stream_go_upstream(s);
}

void sl_stream_request_body(struct sl_stream *s) {
  if (s->up) sl_upstream_request_body(s);
}

void sl_stream_response_drained(struct sl_stream *s) {
  if (s->up) sl_upstream_resume(s);
}

/* access_log: on (every request) or sampled (one in 100, drawn at
 * random so periodic clients are not always or never logged). A line
 * costs a write(2), which is why it is off by default. */
static void access_log(struct sl_stream *s) {
  enum sl_access_log mode = s->gen->cfg->access_log;
  if (mode == SL_ACCESS_LOG_OFF || !SL_LOG_ENABLED(SL_LOG_INFO)) return;
  if (mode == SL_ACCESS_LOG_SAMPLED && sl_rand64() % 100 != 0) return;
  sl_access_log_write(s);
}

/* The exchange's duration is observed here, at the instant its access
 * line is written, except a tunnel's: that was its upgrade's, observed
 * when the tunnel opened (its life is sluice_websocket_tunnel_duration). */
void sl_stream_finish_metrics(struct sl_stream *s) {
  double seconds = -1;
  if (!s->tunnel) {
    seconds = ev_now(s->conn->w->loop) - s->started;
    if (seconds < 0) seconds = 0; /* the wall clock stepped back */
  }
  sl_stats_request_done(s->conn->w, s->route ? s->route->name : "-", s->proto, s->resp.status,
                        seconds);
  access_log(s);
}

/* ---- tunnels -------------------------------------------------------- */

void sl_stream_tunnel_open(struct sl_stream *s) {
  struct sl_worker *w = s->conn->w;
  s->tunnel = true;
  s->tunnel_started = ev_now(w->loop);
  w->n_tunnels++;
  s->m_tunnels = sl_stats_tunnel_series(s->route->name);
  if (s->m_tunnels) sl_metric_gauge_add(s->m_tunnels, 1);
  sl_stats_ws_upgrade(s->route->name, "success");
  sl_stats_request_duration(s->route->name, s->proto, s->tunnel_started - s->started);
  sl_held_tunnel_add(s); /* the frontend checks the cap (core/idle.h) */
}

/* The request headers a tunnel's access line reads (access_log.c,
 * request_id.c). */
static const char *const tunnel_kept_headers[] = {"user-agent", "traceparent", "x-request-id"};

static size_t arena_size(size_t n) { return (n + 15) & ~(size_t)15; }

static char *compact_str(struct sl_arena *a, const char *str) {
  return str ? sl_arena_strndup(a, str, strlen(str)) : NULL;
}

void sl_stream_tunnel_compact(struct sl_stream *s, void **extra, size_t extra_size) {
  if (s->pace || !s->arena.head || s->arena.chunk_size != STREAM_ARENA_CHUNK) return;
  const struct sl_header *kept[sizeof(tunnel_kept_headers) / sizeof(tunnel_kept_headers[0])];
  uint32_t n_kept = 0;
  size_t need = extra ? arena_size(extra_size) : 0;
  const char *strs[] = {s->req.method, s->req.path, s->req.authority, s->req.protocol,
                        s->ws_close_reason};
  for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
    if (strs[i]) need += arena_size(strlen(strs[i]) + 1);
  for (size_t i = 0; i < sizeof(kept) / sizeof(kept[0]); i++) {
    const struct sl_header *h = sl_request_header(&s->req, tunnel_kept_headers[i]);
    if (!h) continue;
    kept[n_kept++] = h;
    need += arena_size(h->name_len + 1) + arena_size(h->value_len + 1);
  }
  if (n_kept) need += arena_size(n_kept * sizeof(struct sl_header));
  /* The request id chosen from the client's header points into that
   * header's value: it moves with it. */
  bool rid_in_header = s->rid && s->rid != s->request_id;
  if (rid_in_header) need += arena_size((size_t)s->rid_len + 1);
  if (need == 0) return;

  /* One block of exactly |need| bytes: every allocation below fits. */
  struct sl_arena na;
  sl_arena_init(&na, need);
  if (!sl_arena_alloc(&na, need)) return;
  na.head->used = 0;
  void *nx = NULL;
  if (extra) {
    nx = sl_arena_alloc(&na, extra_size);
    memcpy(nx, *extra, extra_size);
  }
  struct sl_request *r = &s->req;
  r->method = compact_str(&na, r->method);
  r->path = compact_str(&na, r->path);
  r->authority = compact_str(&na, r->authority);
  r->protocol = compact_str(&na, r->protocol);
  s->ws_close_reason = compact_str(&na, s->ws_close_reason);
  struct sl_header *hs = n_kept ? sl_arena_alloc(&na, n_kept * sizeof(*hs)) : NULL;
  for (uint32_t i = 0; i < n_kept; i++) {
    hs[i] = *kept[i];
    hs[i].name = sl_arena_strndup(&na, kept[i]->name, kept[i]->name_len);
    hs[i].value = sl_arena_strndup(&na, kept[i]->value, kept[i]->value_len);
  }
  if (rid_in_header) s->rid = sl_arena_strndup(&na, s->rid, s->rid_len);
  r->headers = hs;
  r->n_headers = r->cap_headers = n_kept;
  /* The response head went out: nothing reads it again. */
  s->resp.headers = NULL;
  s->resp.n_headers = s->resp.cap_headers = 0;
  sl_arena_free(&s->arena);
  na.chunk_size = TUNNEL_ARENA_CHUNK;
  s->arena = na;
  if (extra) *extra = nx;
}

/* Appends the pending close frame and ends the tunnel's downstream half.
 * |end_upstream|: close the upstream connection now. The upstream side's
 * own read path passes false (sl_stream_tunnel_down): it still holds its
 * connection when this returns, so that connection closes with the stream
 * instead, and what the origin sends meanwhile is dropped. */
static void tunnel_inject_close(struct sl_stream *s, bool end_upstream) {
  uint8_t frame[140];
  s->ws_close_pending = false;
  if (!s->ws_down.broken) {
    size_t n = sl_ws_close_frame(frame, s->ws_close_code, s->ws_close_reason, NULL);
    if (sl_pipe_write(&s->resp_body, frame, n) != 0) {
      s->fe->abort(s);
      return;
    }
  }
  s->resp_done = true;
  if (end_upstream) sl_upstream_tunnel_end(s);
  s->fe->response_body(s);
}

void sl_stream_tunnel_down(struct sl_stream *s, const char *data, size_t n) {
  /* The close frame went in already: nothing may follow it (RFC 6455
   * §5.5.1). */
  if (s->resp_done) return;
  s->tunnel_bytes_down += n;
  sl_held_tunnel_touch(s);
  if (!s->ws_close_pending) {
    sl_ws_track(&s->ws_down, (const uint8_t *)data, n);
    if (sl_pipe_write(&s->resp_body, data, n) != 0) s->fe->abort(s);
    return;
  }
  /* A close is waiting for a frame boundary: pass bytes up to it (payloads
   * skipped by length, headers a byte at a time), drop the rest. */
  size_t i = 0;
  while (i < n && !sl_ws_at_boundary(&s->ws_down) && !s->ws_down.broken) {
    size_t step = 1;
    if (s->ws_down.payload_left)
      step = s->ws_down.payload_left < n - i ? (size_t)s->ws_down.payload_left : n - i;
    sl_ws_track(&s->ws_down, (const uint8_t *)data + i, step);
    i += step;
  }
  if (i && sl_pipe_write(&s->resp_body, data, i) != 0) {
    s->fe->abort(s);
    return;
  }
  if (sl_ws_at_boundary(&s->ws_down) || s->ws_down.broken) tunnel_inject_close(s, false);
}

void sl_stream_tunnel_close(struct sl_stream *s, uint16_t code, const char *reason) {
  if (!s->tunnel || s->resp_done) return;
  sl_held_tunnel_release(s); /* closing: not held for the device any more */
  /* A close already waiting for its frame boundary keeps the code and
   * reason it was decided with (a later reload or a drain does not
   * rewrite it). |reason| may belong to a configuration generation that a
   * reload frees before the boundary comes (an emergency block lifted
   * again): the stream keeps its own copy. */
  if (!s->ws_close_pending) {
    s->ws_close_code = code;
    /* On out-of-memory the close frame goes without a reason. */
    s->ws_close_reason = reason ? sl_arena_strndup(&s->arena, reason, strlen(reason)) : NULL;
    s->ws_close_pending = true;
  }
  /* Already between frames: close now; otherwise at the next boundary. */
  if (sl_ws_at_boundary(&s->ws_down) || s->ws_down.broken) tunnel_inject_close(s, true);
}

const struct sl_exchange_ops sl_stream_exchange_ops = {
    .outcome = sl_stream_outcome,
    .failed = sl_stream_upstream_failed,
    .respond_error = sl_stream_respond_error,
    .tunnel_open = sl_stream_tunnel_open,
    .tunnel_down = sl_stream_tunnel_down,
    .tunnel_close = sl_stream_tunnel_close,
};
