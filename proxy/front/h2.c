/*
 * sluice — HTTP/2 frontend (server side), on libnghttp2.
 *
 * nghttp2 is used as a pure protocol engine (mem_recv / mem_send): bytes
 * in from the connection's read buffer, frames out into its write pipe.
 * Its HTTP messaging checks are on, so malformed requests (uppercase
 * names, CR/LF/NUL in values, connection-specific fields, bad
 * pseudo-headers) are stream errors (RFC 9113 §8.2), and its flood guards
 * are switched on explicitly: rapid reset (CVE-2023-44487) and
 * CONTINUATION floods (CVE-2024-27316 family) end the connection.
 *
 * Flow control is manual (no automatic WINDOW_UPDATE): a request body's
 * bytes are acknowledged with nghttp2_session_consume() only once they
 * left for the upstream, so a slow upstream throttles the client instead
 * of growing a buffer.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <llhttp.h>
#include <nghttp2/nghttp2.h>

#include "sluice/fmt.h"
#include "sluice/log.h"
#include "core/conn.h"
#include "core/idle.h"
#include "core/pace.h"
#include "core/listener-t.h"
#include "core/stream.h"
#include "core/worker-t.h"
#include "front/front.h"
#include "upstream/upstream.h"
#include "front/h2mem.h"
#include "front/h2sleep.h"
#include "core/stats.h"
#include "core/slab.h"

/* The connection-level receive window: the sum of in-flight request body
 * bytes one client may have buffered in sluice at once. */
#define H2_CONN_WINDOW (1 << 20)

/* The client's misbehaviour budget, a token bucket per connection (the
 * numbers of nghttpx's rapid-reset guard): H2_GLITCH_BURST tokens, refilled
 * at H2_GLITCH_RATE per second. One token is charged for each frame that
 * costs sluice work without moving an exchange forward:
 *  - a RST_STREAM from the client (rapid reset, CVE-2023-44487);
 *  - a RST_STREAM sluice sends because of the client's protocol error
 *    (MadeYouReset, CVE-2025-8671: window overflow, content-length
 *    mismatch, malformed headers, a stream over the concurrency limit);
 *  - a DATA frame without data (padding only) nor END_STREAM, a PRIORITY frame, a PING or a
 *    SETTINGS frame (not ACKs).
 * An empty bucket ends the connection with GOAWAY ENHANCE_YOUR_CALM. */
#define H2_GLITCH_BURST 1000
#define H2_GLITCH_RATE 33

/* A session that never carried a stream is put to sleep (front/h2sleep.h)
 * once it has been quiet this long: long enough that a client which opens
 * a connection to use it at once never pays the sleep and the wake. */
#define H2_SLEEP_AFTER_MS 2000
/* An awake session's outbound frame buffer is given back this long after
 * its last byte went out (see h2_framebuf_due). */
#define H2_RELEASE_AFTER_MS 2000

struct h2_stream_extra;

struct sl_h2 {
  struct sl_conn *c;
  nghttp2_session *session; /* NULL while asleep (see |sleep|) */
  /* The connection's live streams (those with a sl_stream attached), so
   * teardown walks what exists, never a range of stream ids. */
  struct h2_stream_extra *live;
  uint32_t n_streams;
  uint32_t n_stalled; /* of n_streams: reset for want of write progress */
  uint32_t glitch_tokens;     /* see H2_GLITCH_BURST */
  uint64_t glitch_refill_s;   /* whole seconds of ev_now at the last refill */
  bool calm;                  /* budget spent: GOAWAY ENHANCE_YOUR_CALM queued */
  bool goaway_sent;
  bool settings_acked;        /* the client acknowledged our SETTINGS */
  bool waking;                /* sl_h2_sleep_wake is replaying the handshake */
  bool wake_failed;           /* a stream op could not wake it: close at the flush */
  uint32_t n_tunnels;         /* of n_streams: tunnels whose head went out */
  /* Asleep: connection window the client has not given back beyond the
   * tunnels' own, which the wake sends nowhere on streams that are gone;
   * while waking, what is left of it. */
  uint32_t dummy_conn;
  /* Tunnel heads submitted, not sent yet: on_frame_send looks a HEADERS
   * frame's stream up only while this is non-zero (the hot path skips it). */
  uint16_t tunnel_heads;
  ev_tstamp quiet_since;      /* when the last stream closed (or the session began) */
  ev_tstamp read_at;          /* when the client's bytes last came in */
  struct sl_h2_frames frames; /* frame boundaries of the input consumed */
  struct sl_h2_sleep sleep;   /* what a sleeping session keeps */
  struct sl_metric_series *m_active;
  /* nghttp2's outbound frame buffer (sl_h2mem_for; NULL while asleep),
   * whether it holds no frame (the last mem_send returned 0), whether its
   * pages may be resident, and when the last byte went out. */
  void *framebuf;
  bool framebuf_empty, framebuf_dirty;
  ev_tstamp wrote_at;
};

/* Per-stream frontend state lives in the sl_stream; these flags too. */
struct h2_stream_extra {
  struct sl_stream *s;
  struct h2_stream_extra *next, *prev; /* sl_h2.live */
  uint32_t head_bytes, n_headers;
  /* Write progress (see h2_stall_check): the last time response bytes of
   * this stream went out, or became ready to. */
  ev_tstamp progress_at;
  bool too_large;
  bool deferred; /* data_read waits for the upstream, not the client */
  bool end_sent; /* END_STREAM went out */
  bool stalled;  /* reset for want of write progress */
  bool tunnel_counted; /* a tunnel whose head went out, in sl_h2.n_tunnels */
  /* Asleep (h2_sleep): the stream's send window, and while waking the DATA
   * bytes still to send nowhere to bring the rebuilt one down to it. */
  int32_t sleep_window;
  uint32_t dummy_left;
  /* A paced upload (core/pace.h): bytes that went upstream but whose
   * window the bandwidth has not given back yet. */
  size_t pace_owed;
};

static const struct sl_frontend_ops h2_frontend;

/* Per-connection state in slabs (core/slab.h), so that a sleeping
 * session's survivor stays packed with the others. */
static __thread struct sl_slab h2_slab = SL_SLAB_INIT(sizeof(struct sl_h2));

void sl_h2_cache_drain(void) {
  sl_slab_drain(&h2_slab);
  sl_h2_frames_cache_drain();
}

static struct sl_h2 *h2_of(struct sl_conn *c) { return c->proto_data; }

static struct h2_stream_extra *xs(struct sl_stream *s) { return s->fe_data; }

static struct sl_stream *h2_stream_new(struct sl_h2 *h, int32_t id) {
  struct sl_stream *s = sl_stream_new(h->c, &h2_frontend, SL_PROTO_H2);
  if (!s) return NULL;
  /* The h2-only counters ride in the stream arena. */
  struct h2_stream_extra *x = sl_arena_alloc(&s->arena, sizeof(*x));
  if (!x) {
    sl_stream_del(s);
    return NULL;
  }
  memset(x, 0, sizeof(*x));
  x->s = s;
  if (h->n_streams == 0) sl_conn_idle_leave(h->c);
  x->next = h->live;
  if (h->live) h->live->prev = x;
  h->live = x;
  h->n_streams++;
  s->fe_data = x;
  s->h2_id = id;
  s->req.scheme = h->c->ssl ? "https" : "http";
  return s;
}

/* Unlinks |s| from the connection's live list and frees it (with its
 * metrics if a response went out). The caller detached it from nghttp2. */
static void h2_stream_del(struct sl_h2 *h, struct sl_stream *s) {
  struct h2_stream_extra *x = s->fe_data;
  if (x->prev) x->prev->next = x->next;
  else h->live = x->next;
  if (x->next) x->next->prev = x->prev;
  h->n_streams--;
  if (x->stalled) h->n_stalled--;
  if (x->tunnel_counted) h->n_tunnels--;
  if (s->resp_head_sent) sl_stream_finish_metrics(s);
  sl_stream_del(s);
}

/* ---- write progress ------------------------------------------------
 *
 * A stream whose response bytes wait for the client (its flow-control
 * window stays shut, or it stops reading the socket) is reset with
 * RST_STREAM CANCEL once it made no write progress for the listener's
 * idle timeout, and its upstream side is released at once (the reset
 * itself may never leave if the client reads nothing). Lazy: a stream
 * only stores a timestamp when it writes; the connection's one timer is
 * pulled in (a heap operation) only when it is later than a new stall
 * deadline, at most once per timeout, and the walk over live streams
 * happens when it fires. Waiting for the upstream is not a stall. */

static uint64_t h2_stall_ms(const struct sl_conn *c) { return c->lis->idle_timeout_ms; }

/* True while |s| has response frames to write and nghttp2 is not waiting
 * for the upstream: only the client can move it on. */
static bool h2_stream_waits_for_client(struct sl_stream *s) {
  struct h2_stream_extra *x = xs(s);
  return s->resp_head_sent && !x->end_sent && !x->deferred && !x->stalled;
}

/* |s| starts (or restarts) waiting for the client: its stall clock runs
 * from now, and the connection timer fires by its deadline. */
static void h2_stall_watch(struct sl_stream *s) {
  struct sl_conn *c = s->conn;
  uint64_t ms = h2_stall_ms(c);
  ev_tstamp now = ev_now(c->w->loop);
  xs(s)->progress_at = now;
  if (ms == 0) return;
  if (c->timeout_at == 0 || c->timeout_at > now + (ev_tstamp)ms / 1000.0)
    sl_conn_set_timeout(c, ms);
}

/* Resets |s| (CANCEL) for want of write progress and releases its
 * upstream side and buffered response now. It stays on the live list
 * until nghttp2 closes it, counted in n_stalled. */
static void h2_stall_reset(struct sl_h2 *h, struct sl_stream *s) {
  struct h2_stream_extra *x = xs(s);
  x->stalled = true;
  h->n_stalled++;
  if (SL_LOG_ENABLED(SL_LOG_INFO))
    sl_log(SL_LOG_INFO, "h2 stream reset: no write progress", "peer", h->c->peer_ip, NULL);
  nghttp2_submit_rst_stream(h->session, NGHTTP2_FLAG_NONE, s->h2_id, NGHTTP2_CANCEL);
  sl_upstream_detach(s);
  sl_pipe_clear(&s->resp_body);
  s->local_body_len = 0;
  sl_conn_schedule_flush(h->c);
}

/* Timer walk: resets the streams past their stall deadline. Returns the
 * earliest deadline still running (0: none). */
static ev_tstamp h2_stall_check(struct sl_h2 *h, ev_tstamp now) {
  uint64_t ms = h2_stall_ms(h->c);
  if (ms == 0) return 0;
  ev_tstamp limit = (ev_tstamp)ms / 1000.0, next = 0;
  for (struct h2_stream_extra *x = h->live; x; x = x->next) {
    if (!h2_stream_waits_for_client(x->s)) continue;
    ev_tstamp at = x->progress_at + limit;
    if (at <= now)
      h2_stall_reset(h, x->s);
    else if (next == 0 || at < next)
      next = at;
  }
  return next;
}

/* ---- the outbound frame buffer of an awake session -----------------
 *
 * nghttp2 packs every frame it sends into one 16 KiB buffer that lives as
 * long as the session. h2_produce copies each frame out at once, so once
 * mem_send has nothing more the buffer's bytes are dead, yet the pages
 * they touched stay resident: in a session that cannot sleep (it carried
 * a stream: a WebSocket tunnel's always does) that is the largest part of
 * its idle cost after the session's own structs. sl_h2mem hands nghttp2
 * the buffer page-aligned and tells us where it is; H2_RELEASE_AFTER_MS
 * after the last byte went out, its pages go back to the kernel (the next
 * frame faults in zeroed pages: one fault per page touched). Busy
 * connections never see it (each write pushes the deadline on); one
 * madvise per idle spell otherwise. */

/* Releases the frame buffer's pages if due at |now|; else returns when
 * to look again (0: nothing to release). A frame still half out (the
 * client is not reading) holds them until a later look. */
static ev_tstamp h2_framebuf_due(struct sl_h2 *h, ev_tstamp now) {
  if (!h->framebuf_dirty || !h->framebuf) return 0;
  ev_tstamp at = h->wrote_at + H2_RELEASE_AFTER_MS / 1000.0;
  if (now < at) return at;
  if (!h->framebuf_empty) return now + H2_RELEASE_AFTER_MS / 1000.0;
  sl_h2mem_release_pages(h->framebuf);
  h->framebuf_dirty = false;
  return 0;
}

/* The connection timer fires by |at| (an earlier deadline stays). */
static void h2_framebuf_arm(struct sl_h2 *h, ev_tstamp at) {
  ev_tstamp now = ev_now(h->c->w->loop);
  sl_conn_set_timeout_by(h->c, at > now ? (uint64_t)((at - now) * 1000.0) + 1 : 1);
}

/* Bytes went out now (the buffer's pages were touched). */
static void h2_framebuf_wrote(struct sl_h2 *h) {
  h->wrote_at = ev_now(h->c->w->loop);
  if (h->framebuf_dirty || !h->framebuf) return;
  h->framebuf_dirty = true;
  h2_framebuf_arm(h, h->wrote_at + H2_RELEASE_AFTER_MS / 1000.0);
}

/* No exchange in progress: no stream, or only stalled ones. */
static bool h2_quiet(const struct sl_h2 *h) { return h->n_streams == h->n_stalled; }

/* ---- sleep (front/h2sleep.h) ----------------------------------------
 *
 * The connection's one timer serves both: once quiet, a session that may
 * sleep gets its deadline at H2_SLEEP_AFTER_MS (h2_on_timeout sleeps it
 * and re-arms for the rest of the idle timeout); any other gets the idle
 * timeout as before. A connection whose streams are all WebSocket tunnels
 * (a device's standing connection) sleeps too, once no byte moved either
 * way for H2_SLEEP_AFTER_MS and every tunnel is idle (h2_tunnel_idle):
 * the wake rebuilds the tunnels' streams on top of the replayed header
 * blocks (h2_replay_streams). Asleep, its timer is off: the tunnels'
 * upstream timers watch them, and any stream op wakes it (h2_awake). */

/* The session could sleep now as far as nghttp2 can tell, or is asleep. */
static bool h2_may_sleep(const struct sl_h2 *h) {
  return !h->session || nghttp2_session_get_last_proc_stream_id(h->session) == 0 ||
         sl_h2_frames_replayable(&h->frames);
}

/* Every stream is a tunnel whose head went out, and the session could be
 * rebuilt: the connection may sleep with them once they are idle. */
static bool h2_tunnels_only(const struct sl_h2 *h) {
  return h->n_streams && h->n_streams == h->n_tunnels && !h->tunnel_heads &&
         sl_h2_frames_replayable(&h->frames);
}

/* Activity, or a change of streams, on a connection of idle tunnels: the
 * timer looks at it by H2_SLEEP_AFTER_MS from now (h2_on_timeout). */
static void h2_tunnel_sleep_arm(struct sl_h2 *h) {
  if (h2_tunnels_only(h)) sl_conn_set_timeout_by(h->c, H2_SLEEP_AFTER_MS + 1);
}

/* When the connection last moved a byte either way. */
static ev_tstamp h2_last_active(const struct sl_h2 *h) {
  return h->read_at > h->wrote_at ? h->read_at : h->wrote_at;
}

/* An open tunnel (its head out: h2_tunnels_only) the wake can rebuild:
 * nothing buffered either way,
 * nghttp2's data source waiting for the upstream, open both ways (neither
 * END_STREAM nor a close frame on its way), not paced (its pacer's timer
 * would find no session), its send window known (a window the client
 * pushed below zero by lowering SETTINGS_INITIAL_WINDOW_SIZE reads as 0
 * and could not be rebuilt). */
static bool h2_tunnel_idle(struct sl_h2 *h, struct sl_stream *s) {
  struct h2_stream_extra *x = xs(s);
  if (s->pace || s->ws_close_pending || s->resp_done || s->req_done ||
      !s->up || !x->deferred || x->stalled || x->end_sent || x->pace_owed ||
      !sl_pipe_empty(&s->req_body) || !sl_pipe_empty(&s->resp_body))
    return false;
  nghttp2_stream *st = nghttp2_session_find_stream(h->session, s->h2_id);
  return st && nghttp2_stream_get_state(st) == NGHTTP2_STREAM_STATE_OPEN &&
         nghttp2_session_get_stream_remote_window_size(h->session, s->h2_id) > 0;
}

/* No stream left: the idle clock starts now. */
static void h2_quiet_timer(struct sl_h2 *h) {
  struct sl_conn *c = h->c;
  uint64_t idle = c->lis->idle_timeout_ms;
  h->quiet_since = ev_now(c->w->loop);
  uint64_t ms = idle;
  if (h->session && h2_may_sleep(h) && (idle == 0 || idle > H2_SLEEP_AFTER_MS))
    ms = H2_SLEEP_AFTER_MS;
  /* and by the frame buffer's release (at most H2_RELEASE_AFTER_MS away) */
  if (h->framebuf_dirty && (ms == 0 || ms > H2_RELEASE_AFTER_MS)) ms = H2_RELEASE_AFTER_MS;
  sl_conn_set_timeout(c, ms);
  /* Not after GOAWAY: it closes once its streams have, and counting it
   * as held again would make evicting its tunnel evict another. */
  /* Held once it has carried a stream (core/idle.h); before that, only
   * once it sleeps (h2_on_timeout), so that a device between its preface
   * and its first request is never evicted for the cap. */
  if (h->n_streams == 0 && !h->goaway_sent && h->session &&
      nghttp2_session_get_last_proc_stream_id(h->session) > 0)
    sl_conn_idle_enter(c);
}

/* Frees the session if nothing ties it to its past (h2sleep.h), keeping
 * what sl_h2_sleep_wake and h2_replay_streams need to rebuild it: with no
 * stream, or with idle tunnels only. Returns true if it sleeps. Received
 * DATA the client has no WINDOW_UPDATE for yet gets one now, and the
 * session sleeps at a later look: the rebuilt one starts with none owed,
 * and would otherwise wait for bytes a client that is short of window
 * cannot send. */
static bool h2_sleep(struct sl_h2 *h) {
  struct sl_conn *c = h->c;
  if (!h->session || h->goaway_sent || h->calm || !h->settings_acked || h->tunnel_heads ||
      (h->n_streams && !h2_tunnels_only(h)) || !sl_h2_frames_at_boundary(&h->frames) ||
      !sl_pipe_empty(&c->in))
    return false;
  nghttp2_session *ss = h->session;
  for (struct h2_stream_extra *x = h->live; x; x = x->next)
    if (!h2_tunnel_idle(h, x->s)) return false;
  bool updates = false;
  int32_t owed_in = nghttp2_session_get_effective_recv_data_length(ss);
  if (owed_in > 0) updates |= nghttp2_submit_window_update(ss, 0, 0, owed_in) == 0;
  /* A stream window the client has not given back (DATA it has not
   * acknowledged) is taken back by sending that much nowhere on the
   * rebuilt stream, which costs the rebuilt connection window as much. */
  int64_t owed_out = 0;
  int32_t initial =
      (int32_t)nghttp2_session_get_remote_settings(ss, NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE);
  for (struct h2_stream_extra *x = h->live; x; x = x->next) {
    int32_t id = x->s->h2_id;
    int32_t e = nghttp2_session_get_stream_effective_recv_data_length(ss, id);
    if (e > 0) updates |= nghttp2_submit_window_update(ss, 0, id, e) == 0;
    x->sleep_window = nghttp2_session_get_stream_remote_window_size(ss, id);
    if (x->sleep_window < initial) owed_out += initial - x->sleep_window;
  }
  if (updates) {
    sl_conn_schedule_flush(c);
    return false;
  }
  /* The connection window may be shorter still (DATA of streams that are
   * gone, not acknowledged yet): that much goes nowhere on the replayed
   * streams that are gone, as far as their windows take it. */
  int64_t short_conn = 65535 - ((int64_t)nghttp2_session_get_remote_window_size(ss) + owed_out);
  h->dummy_conn = 0;
  if (short_conn > 0) {
    uint32_t gone = sl_h2_frames_blocks(&h->frames) - h->n_streams;
    if ((int64_t)gone * initial < short_conn) return false;
    h->dummy_conn = (uint32_t)short_conn;
    owed_out += short_conn;
  }
  if (!sl_h2_sleep_possible(ss, sl_h2_frames_replayable(&h->frames), owed_out)) return false;
  sl_h2_sleep_save(ss, &h->sleep, owed_out);
  sl_h2mem_session_release(ss, c->w->loop); /* clears h->framebuf */
  h->session = NULL;
  h->framebuf_dirty = false;
  if (c->lis->m_h2_asleep) sl_metric_gauge_add(c->lis->m_h2_asleep, 1);
  return true;
}

static int h2_session_open(struct sl_h2 *h, const struct sl_h2_sleep *z);
static ssize_t data_read(nghttp2_session *session, int32_t stream_id, uint8_t *buf,
                         size_t length, uint32_t *data_flags, nghttp2_data_source *source,
                         void *ud);

/* DATA a wake sends nowhere: up to |length| of the |*left| bytes still
 * owed, or DEFERRED once none is. */
static ssize_t h2_send_nowhere(uint8_t *buf, size_t length, uint32_t *left) {
  size_t n = *left < length ? *left : length;
  if (n == 0) return NGHTTP2_ERR_DEFERRED;
  memset(buf, 0, n);
  *left -= (uint32_t)n;
  return (ssize_t)n;
}

/* The data source of a stream that is gone, while waking (dummy_conn). */
static ssize_t dummy_read(nghttp2_session *session, int32_t stream_id, uint8_t *buf,
                          size_t length, uint32_t *data_flags, nghttp2_data_source *source,
                          void *ud) {
  (void)session;
  (void)stream_id;
  (void)data_flags;
  (void)ud;
  return h2_send_nowhere(buf, length, &((struct sl_h2 *)source->ptr)->dummy_conn);
}

/* Submits a 200 for stream |id| with data source |prd| and sends it, and
 * whatever DATA |prd| gives at once, nowhere. */
static int h2_respond_nowhere(nghttp2_session *ss, int32_t id, const nghttp2_data_provider *prd) {
  static const nghttp2_nv ok[] = {{(uint8_t *)":status", (uint8_t *)"200", 7, 3,
                                   NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE}};
  int rv = nghttp2_submit_response(ss, id, ok, 1, prd);
  return rv != 0 ? rv : sl_h2_discard_output(ss);
}

static struct sl_stream *h2_live_stream(const struct sl_h2 *h, int32_t id) {
  for (struct h2_stream_extra *x = h->live; x; x = x->next)
    if (x->s->h2_id == id) return x->s;
  return NULL;
}

/* The wake's second half: the client's header blocks again, in order.
 * A stream that is gone is reset after its block (sent nowhere, like
 * every frame of the wake); an open tunnel gets its 200 again, DATA sent
 * nowhere down to the send window it had (data_read, while waking), and
 * the client's extra window back. Each rebuilt window is checked against
 * the one saved: a wake that cannot put the session back exactly fails
 * (the connection closes) rather than risk a flow-control error. */
static int h2_replay_streams(struct sl_h2 *h) {
  nghttp2_session *ss = h->session;
  int32_t initial =
      (int32_t)nghttp2_session_get_remote_settings(ss, NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE);
  uint32_t rebuilt = 0;
  int64_t sent_nowhere = h->dummy_conn;
  size_t off = 0;
  int32_t id;
  int rv;
  while ((rv = sl_h2_replay_block(ss, &h->frames, &off, &id)) == 0 && id) {
    struct sl_stream *s = h2_live_stream(h, id);
    if (!s) {
      nghttp2_data_provider dummy = {.source.ptr = h, .read_callback = dummy_read};
      if (h->dummy_conn && (rv = h2_respond_nowhere(ss, id, &dummy)) != 0) return rv;
      if ((rv = nghttp2_submit_rst_stream(ss, NGHTTP2_FLAG_NONE, id, NGHTTP2_NO_ERROR)) != 0 ||
          (rv = sl_h2_discard_output(ss)) != 0)
        return rv;
      continue;
    }
    struct h2_stream_extra *x = xs(s);
    nghttp2_session_set_stream_user_data(ss, id, s);
    x->dummy_left = x->sleep_window < initial ? (uint32_t)(initial - x->sleep_window) : 0;
    sent_nowhere += x->dummy_left;
    nghttp2_data_provider prd = {.source.ptr = s, .read_callback = data_read};
    if ((rv = h2_respond_nowhere(ss, id, &prd)) != 0) return rv;
    if (x->sleep_window > initial &&
        (rv = sl_h2_replay_window_update(ss, id, (uint32_t)(x->sleep_window - initial))) != 0)
      return rv;
    if (x->dummy_left || !x->deferred ||
        nghttp2_session_get_stream_remote_window_size(ss, id) != x->sleep_window)
      return NGHTTP2_ERR_FLOW_CONTROL;
    rebuilt++;
  }
  if (rv != 0) return rv;
  if (rebuilt != h->n_streams || h->dummy_conn ||
      nghttp2_session_get_remote_window_size(ss) != h->sleep.remote_window - sent_nowhere)
    return NGHTTP2_ERR_FLOW_CONTROL;
  return 0;
}

/* Rebuilds a sleeping session before its client's next bytes, or before
 * a stream op on a tunnel. Returns 0, or -1 (OOM, or a replay that does
 * not match): the connection closes. */
static int h2_wake(struct sl_h2 *h) {
  if (h2_session_open(h, &h->sleep) != 0) return -1;
  h->waking = true;
  int rv = sl_h2_sleep_wake(h->session, &h->sleep);
  if (rv == 0) rv = h2_replay_streams(h);
  h->waking = false;
  if (rv != 0) {
    if (SL_LOG_ENABLED(SL_LOG_DEBUG))
      sl_log(SL_LOG_DEBUG, "h2 session could not be woken", "peer", h->c->peer_ip, "error",
             nghttp2_strerror(rv), NULL);
    nghttp2_session_del(h->session);
    h->session = NULL;
    return -1;
  }
  if (h->c->lis->m_h2_asleep) sl_metric_gauge_add(h->c->lis->m_h2_asleep, -1);
  h->framebuf_empty = true; /* the replay's answers were all taken and dropped */
  h2_framebuf_wrote(h);
  return 0;
}


/* Charges one token of |h|'s misbehaviour budget (see H2_GLITCH_BURST).
 * Returns 0, or -1 once the budget is spent: then the session is
 * terminated (GOAWAY ENHANCE_YOUR_CALM queued, further input ignored) and
 * the caller stops. Integer arithmetic on the loop's cached clock. */
static int h2_glitch(struct sl_h2 *h) {
  uint64_t now = (uint64_t)ev_now(h->c->w->loop);
  if (now > h->glitch_refill_s) {
    uint64_t add = (now - h->glitch_refill_s) * H2_GLITCH_RATE;
    h->glitch_tokens = add >= H2_GLITCH_BURST - h->glitch_tokens
                           ? H2_GLITCH_BURST
                           : h->glitch_tokens + (uint32_t)add;
    h->glitch_refill_s = now;
  }
  if (h->glitch_tokens > 0) {
    h->glitch_tokens--;
    return 0;
  }
  if (!h->calm) {
    h->calm = true;
    if (SL_LOG_ENABLED(SL_LOG_INFO))
      sl_log(SL_LOG_INFO, "h2 client over its reset and no-progress frame budget", "peer",
             h->c->peer_ip, NULL);
    nghttp2_session_terminate_session(h->session, NGHTTP2_ENHANCE_YOUR_CALM);
    sl_conn_close_after_flush(h->c);
  }
  return -1;
}

/* RST_STREAM codes nghttp2 (or sluice) sends because the client broke the
 * protocol on that stream (RFC 9113 §5.4.2, §8.1.1). CANCEL (sluice's
 * write timeout), INTERNAL_ERROR (sluice's or the origin's failure) and
 * NO_ERROR are not the client's doing. */
static bool h2_reset_is_clients_fault(uint32_t code) {
  switch (code) {
  case NGHTTP2_PROTOCOL_ERROR:
  case NGHTTP2_FLOW_CONTROL_ERROR:
  case NGHTTP2_STREAM_CLOSED:
  case NGHTTP2_FRAME_SIZE_ERROR:
  case NGHTTP2_REFUSED_STREAM:
  case NGHTTP2_COMPRESSION_ERROR:
    return true;
  default:
    return false;
  }
}

/* ---- nghttp2 callbacks -------------------------------------------- */

/* RFC 9113 §5.1.1: a client opens streams in increasing order, and the
 * first use of an id closes every idle stream below it, so a HEADERS frame
 * on a lower id that was never opened is a connection error
 * PROTOCOL_ERROR. nghttp2 only ignores it. A stream it still knows
 * (open, or closed recently and retained) may get trailers; idle ones
 * (created by PRIORITY) were never opened. */
static int on_begin_frame(nghttp2_session *session, const nghttp2_frame_hd *hd, void *ud) {
  (void)ud;
  if (hd->type != NGHTTP2_HEADERS || !(hd->stream_id & 1)) return 0;
  if (hd->stream_id > nghttp2_session_get_last_proc_stream_id(session)) return 0;
  nghttp2_stream *st = nghttp2_session_find_stream(session, hd->stream_id);
  if (st && nghttp2_stream_get_state(st) != NGHTTP2_STREAM_STATE_IDLE) return 0;
  nghttp2_session_terminate_session(session, NGHTTP2_PROTOCOL_ERROR);
  return NGHTTP2_ERR_CALLBACK_FAILURE;
}

static int on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame, void *ud) {
  struct sl_h2 *h = ud;
  if (h->waking) return 0; /* a replayed block: h2_replay_streams attaches the stream */
  if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
  if (h->calm) return NGHTTP2_ERR_CALLBACK_FAILURE;
  if (h->goaway_sent) {
    nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame->hd.stream_id,
                              NGHTTP2_REFUSED_STREAM);
    return 0;
  }
  struct sl_stream *s = h2_stream_new(h, frame->hd.stream_id);
  if (!s) {
    nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame->hd.stream_id,
                              NGHTTP2_INTERNAL_ERROR);
    return 0;
  }
  nghttp2_session_set_stream_user_data(session, frame->hd.stream_id, s);
  return 0;
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *ud) {
  struct sl_h2 *h = ud;
  (void)flags;
  if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
  struct sl_stream *s = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
  if (!s) return 0;
  struct h2_stream_extra *x = xs(s);
  x->head_bytes += (uint32_t)(namelen + valuelen + 32); /* RFC 9113 §6.5.2 accounting */
  if (++x->n_headers > h->c->lis->headers || x->head_bytes > h->c->lis->header_bytes) {
    x->too_large = true;
    return 0;
  }
  if (x->too_large) return 0;
  const char *n = (const char *)name, *v = (const char *)value;
  if (namelen > 0 && n[0] == ':') {
    char *copy = sl_arena_strndup(&s->arena, v, valuelen);
    if (!copy) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    if (namelen == 7 && memcmp(n, ":method", 7) == 0)
      s->req.method = copy;
    else if (namelen == 5 && memcmp(n, ":path", 5) == 0)
      s->req.path = copy;
    else if (namelen == 10 && memcmp(n, ":authority", 10) == 0)
      s->req.authority = copy;
    else if (namelen == 9 && memcmp(n, ":protocol", 9) == 0)
      s->req.protocol = copy;
    /* :scheme is the client's view; x-forwarded-proto reports the
     * connection's real scheme. */
    return 0;
  }
  if (sl_stream_add_header(s, n, namelen, v, valuelen) != 0)
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  return 0;
}

/* True if |m| is a method sluice can forward: one llhttp knows, as the h1
 * frontend accepts and HTTP/1.1 origins parse. nghttp2 only checks that
 * :method is a token (RFC 9110 §9.1), so "HEAo" would reach the origin,
 * which a strict parser refuses (found by fuzz_h2). */
static bool h2_method_known(const char *m) {
  static const char *const known[] = {
#define SL_H2_METHOD(num, name, string) #string,
      HTTP_METHOD_MAP(SL_H2_METHOD)
#undef SL_H2_METHOD
  };
  for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
    if (strcmp(m, known[i]) == 0) return true;
  return false;
}

/* HTTP/1.1 origins expect one Cookie field; h2 clients split it
 * (RFC 9113 §8.2.3): join with "; ". */
static void h2_join_cookies(struct sl_stream *s) {
  struct sl_request *r = &s->req;
  uint32_t first = UINT32_MAX, count = 0;
  size_t total = 0;
  for (uint32_t i = 0; i < r->n_headers; i++) {
    if (strcmp(r->headers[i].name, "cookie") != 0) continue;
    if (first == UINT32_MAX) first = i;
    count++;
    total += r->headers[i].value_len + 2;
  }
  if (count < 2) return;
  char *joined = sl_arena_alloc(&s->arena, total + 1);
  if (!joined) return;
  size_t len = 0;
  uint32_t out = 0;
  for (uint32_t i = 0; i < r->n_headers; i++) {
    struct sl_header *hd = &r->headers[i];
    if (strcmp(hd->name, "cookie") == 0) {
      if (len) {
        memcpy(joined + len, "; ", 2);
        len += 2;
      }
      memcpy(joined + len, hd->value, hd->value_len);
      len += hd->value_len;
      if (i != first) continue;
    }
    r->headers[out++] = *hd;
  }
  joined[len] = '\0';
  r->n_headers = out;
  for (uint32_t i = 0; i < r->n_headers; i++) {
    if (strcmp(r->headers[i].name, "cookie") == 0) {
      r->headers[i].value = joined;
      r->headers[i].value_len = (uint32_t)len;
    }
  }
}

static void h2_dispatch(struct sl_h2 *h, struct sl_stream *s, bool end_stream) {
  struct sl_request *r = &s->req;
  if (xs(s)->too_large) {
    s->req_done = end_stream;
    sl_stream_respond_error(s, 431, "header_too_large", "http", 0);
    return;
  }
  if (!r->method || !r->path) {
    /* nghttp2's messaging checks make this unreachable for requests;
     * CONNECT without :protocol has no :path. */
    nghttp2_submit_rst_stream(h->session, NGHTTP2_FLAG_NONE, s->h2_id, NGHTTP2_PROTOCOL_ERROR);
    return;
  }
  if (!h2_method_known(r->method)) {
    /* RFC 9110 §15.6.2: an unrecognised method is 501. */
    s->req_done = end_stream;
    sl_stream_respond_error(s, 501, "method_not_implemented", "http", 0);
    return;
  }
  if (!r->authority) {
    const struct sl_header *host = sl_request_header(r, "host");
    if (host) r->authority = host->value;
  }
  h2_join_cookies(s);
  r->is_head = strcmp(r->method, "HEAD") == 0;
  if (strcmp(r->method, "CONNECT") == 0) {
    /* Only RFC 8441 WebSocket bootstrapping; a classic CONNECT proxy is
     * not what sluice is. nghttp2 checked :protocol/:path/:scheme. */
    if (!r->protocol || strcmp(r->protocol, "websocket") != 0) {
      s->req_done = end_stream;
      sl_stream_respond_error(s, 501, "connect_not_supported", "http", 0);
      return;
    }
    const struct sl_header *ver = sl_request_header(r, "sec-websocket-version");
    if (ver && strcmp(ver->value, "13") != 0) {
      s->req_done = end_stream;
      s->err_header_name = "sec-websocket-version";
      s->err_header_value = "13";
      sl_stream_respond_error(s, 426, "websocket_version_unsupported", "http", 0);
      return;
    }
    if (sl_ws_new_key(s->ws_key) != 0) {
      sl_stream_respond_error(s, 503, "no_randomness", "http", 1);
      return;
    }
    s->ws_h2 = true;
    r->upgrade_websocket = true;
    r->has_body = !end_stream;
    s->req_done = end_stream;
    r->content_length = -1;
    sl_stream_dispatch(s);
    return;
  }
  const struct sl_header *cl = sl_request_header(r, "content-length");
  if (cl) {
    char *end;
    long long v = strtoll(cl->value, &end, 10);
    if (*end == '\0' && v >= 0) r->content_length = v;
  }
  r->has_body = !end_stream;
  if (end_stream) {
    s->req_done = true;
    if (r->content_length < 0) r->content_length = -1;
  }
  /* GET with no body: no framing header at all upstream. */
  if (!r->has_body && r->content_length == 0) r->content_length = -1;
  sl_stream_dispatch(s);
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *ud) {
  struct sl_h2 *h = ud;
  struct sl_stream *s;
  if (h->waking) return 0; /* the replayed handshake costs the client nothing */
  switch (frame->hd.type) {
  case NGHTTP2_HEADERS:
    if (frame->headers.cat != NGHTTP2_HCAT_REQUEST) {
      /* Trailers: sluice does not forward them; the END_STREAM counts. */
      s = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
      if (s && (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
        s->req_done = true;
        sl_stream_request_body(s);
      }
      return 0;
    }
    s = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
    if (s) h2_dispatch(h, s, frame->hd.flags & NGHTTP2_FLAG_END_STREAM);
    break;
  case NGHTTP2_DATA:
    /* No data (padding only counts as none: libnghttp2 gives its window
     * back by itself) and no END_STREAM: nothing moved. */
    if (frame->hd.length == frame->data.padlen && !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM) &&
        h2_glitch(h) != 0)
      return NGHTTP2_ERR_CALLBACK_FAILURE;
    s = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
    if (!s) break;
    if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) s->req_done = true;
    sl_stream_request_body(s);
    break;
  case NGHTTP2_RST_STREAM:
  case NGHTTP2_PRIORITY:
    if (h2_glitch(h) != 0) return NGHTTP2_ERR_CALLBACK_FAILURE;
    break;
  case NGHTTP2_SETTINGS:
    if (frame->hd.flags & NGHTTP2_FLAG_ACK) h->settings_acked = true;
    /* fall through */
  case NGHTTP2_PING:
    if (!(frame->hd.flags & NGHTTP2_FLAG_ACK) && h2_glitch(h) != 0)
      return NGHTTP2_ERR_CALLBACK_FAILURE;
    break;
  case NGHTTP2_GOAWAY:
    /* The client opens no stream after its GOAWAY (RFC 9113 section
     * 6.8), and once its last stream is answered nothing it could still
     * send matters to it: when the session ends, the close need not
     * linger if the socket is empty (conn_input_quiet). A storm's
     * refused device sends GOAWAY after its 429: this saves it the
     * shutdown, a loop turn, a watcher change and the EOF read. */
    h->c->input_done = true;
    break;
  default:
    break;
  }
  return 0;
}

static int on_data_chunk_recv(nghttp2_session *session, uint8_t flags, int32_t stream_id,
                              const uint8_t *data, size_t len, void *ud) {
  (void)flags;
  (void)ud;
  struct sl_stream *s = nghttp2_session_get_stream_user_data(session, stream_id);
  if (!s || s->local_response || (s->resp_done && !s->up) || xs(s)->stalled) {
    /* Nobody will forward these bytes: give the window back now. */
    nghttp2_session_consume(session, stream_id, len);
    return 0;
  }
  if (sl_pipe_write(&s->req_body, data, len) != 0) {
    nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, stream_id, NGHTTP2_INTERNAL_ERROR);
  } else {
    s->bytes_in += len;
  }
  return 0;
}

/* sl_stream_tunnel_compact moves the stream's extra (it lives in the
 * arena): the live list is relinked to the new block. */
static void h2_tunnel_compact(struct sl_h2 *h, struct sl_stream *s) {
  void *x = s->fe_data;
  sl_stream_tunnel_compact(s, &x, sizeof(struct h2_stream_extra));
  struct h2_stream_extra *nx = x;
  if (nx == s->fe_data) return;
  s->fe_data = nx;
  if (nx->prev)
    nx->prev->next = nx;
  else
    h->live = nx;
  if (nx->next) nx->next->prev = nx;
}

static int on_frame_send(nghttp2_session *session, const nghttp2_frame *frame, void *ud) {
  struct sl_h2 *h = ud;
  if (h->waking) return 0; /* sent nowhere */
  /* A reset the client caused costs it a token; once the budget is spent
   * the GOAWAY goes out in this same send pass. After the drain's GOAWAY,
   * streams are refused with REFUSED_STREAM on sluice's account. */
  if (frame->hd.type == NGHTTP2_RST_STREAM &&
      h2_reset_is_clients_fault(frame->rst_stream.error_code) &&
      !(frame->rst_stream.error_code == NGHTTP2_REFUSED_STREAM && h->goaway_sent)) {
    h2_glitch(h);
    return 0;
  }
  if (h->tunnel_heads && frame->hd.type == NGHTTP2_HEADERS &&
      !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
    struct sl_stream *s = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
    /* A tunnel's 200 went out (nghttp2 held its strings uncopied until
     * now): its heads shrink to what its access line needs. */
    if (s && s->tunnel) {
      h->tunnel_heads--;
      h2_tunnel_compact(h, s);
      xs(s)->tunnel_counted = true;
      h->n_tunnels++;
      h2_tunnel_sleep_arm(h); /* it may sleep with the connection once idle */
      sl_idle_tunnel_opened(s);
    }
  }
  if ((frame->hd.type == NGHTTP2_DATA || frame->hd.type == NGHTTP2_HEADERS) &&
      (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
    struct sl_stream *s = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
    if (s) xs(s)->end_sent = true;
    /* Response complete while the client still sends a body nobody
     * wants: end the stream with NO_ERROR (RFC 9113 §8.1). */
    if (s && !s->req_done)
      nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame->hd.stream_id,
                                NGHTTP2_NO_ERROR);
  }
  return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code,
                           void *ud) {
  struct sl_h2 *h = ud;
  (void)error_code;
  struct sl_stream *s = nghttp2_session_get_stream_user_data(session, stream_id);
  if (!s) return 0;
  nghttp2_session_set_stream_user_data(session, stream_id, NULL);
  /* Body bytes still buffered were never consumed: give their share of
   * the connection window back, or each stream reset mid-upload would
   * shrink it for good (nghttp2 does not on close). */
  sl_pace_charge(s, SL_PACE_UP, xs(s)->pace_owed); /* they went upstream: counted */
  size_t unconsumed = s->req_body.len + xs(s)->pace_owed;
  if (unconsumed) nghttp2_session_consume_connection(session, unconsumed);
  bool was_quiet = h2_quiet(h);
  h2_stream_del(h, s);
  if (h->n_streams == 0 || (!was_quiet && h2_quiet(h)))
    h2_quiet_timer(h);
  else
    h2_tunnel_sleep_arm(h);
  return 0;
}

static ssize_t data_read(nghttp2_session *session, int32_t stream_id, uint8_t *buf,
                         size_t length, uint32_t *data_flags, nghttp2_data_source *source,
                         void *ud) {
  (void)session;
  (void)stream_id;
  (void)ud;
  struct sl_stream *s = source->ptr;
  struct h2_stream_extra *x = xs(s);
  if (h2_of(s->conn)->waking) { /* a rebuilt tunnel (h2_replay_streams) */
    ssize_t n = h2_send_nowhere(buf, length, &x->dummy_left);
    if (n == NGHTTP2_ERR_DEFERRED) x->deferred = true;
    return n;
  }
  if (x->stalled) return NGHTTP2_ERR_DEFERRED; /* its RST_STREAM goes first */
  x->progress_at = ev_now(s->conn->w->loop);
  if (s->local_body_len) {
    size_t n = s->local_body_len < length ? s->local_body_len : length;
    memcpy(buf, s->local_body, n);
    s->local_body += n;
    s->local_body_len -= n;
    s->bytes_out += n;
    if (!s->local_body_len && s->resp_done && sl_pipe_empty(&s->resp_body))
      *data_flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
  }
  if (s->pace && !sl_pipe_empty(&s->resp_body)) {
    if (length > s->resp_body.len) length = s->resp_body.len;
    length = sl_pace_quota(s, SL_PACE_DOWN, length);
    if (!length) { /* the pacer's timer calls h2_response_body */
      x->deferred = true;
      return NGHTTP2_ERR_DEFERRED;
    }
  }
  size_t n = sl_pipe_read(&s->resp_body, buf, length);
  sl_pace_charge(s, SL_PACE_DOWN, n);
  s->bytes_out += n;
  if (n == 0 && !s->resp_done) {
    x->deferred = true;
    return NGHTTP2_ERR_DEFERRED;
  }
  if (s->resp_done && sl_pipe_empty(&s->resp_body)) *data_flags |= NGHTTP2_DATA_FLAG_EOF;
  if (n) sl_stream_response_drained(s);
  return (ssize_t)n;
}

/* ---- frontend ops ------------------------------------------------- */

/* A stream op on a sleeping session (a tunnel's upstream spoke, or ended)
 * wakes it first. A wake that fails leaves the op undone and closes the
 * connection at the flush, not here: the caller still holds the stream. */
static bool h2_awake(struct sl_h2 *h) {
  if (h->session) return true;
  if (!h->wake_failed && h2_wake(h) == 0) return true;
  h->wake_failed = true;
  sl_conn_schedule_flush(h->c);
  return false;
}

static void h2_response_head(struct sl_stream *s) {
  struct sl_h2 *h = h2_of(s->conn);
  struct sl_response *r = &s->resp;
  if (!h2_awake(h)) return;
  s->resp_head_sent = true;
  uint32_t n = r->n_headers + 2;
  nghttp2_nv *nva = sl_arena_alloc(&s->arena, n * sizeof(*nva));
  if (!nva) {
    nghttp2_submit_rst_stream(h->session, NGHTTP2_FLAG_NONE, s->h2_id, NGHTTP2_INTERNAL_ERROR);
    sl_conn_schedule_flush(s->conn);
    return;
  }
  char *status = sl_arena_alloc(&s->arena, 4);
  char *clen = sl_arena_alloc(&s->arena, 24);
  if (!status || !clen) return;
  int code = r->status >= 100 && r->status <= 999 ? r->status : 500;
  status[0] = (char)('0' + code / 100);
  status[1] = (char)('0' + code / 10 % 10);
  status[2] = (char)('0' + code % 10);
  status[3] = '\0';
  size_t k = 0;
  /* A tunnel answers the extended CONNECT with 200 (RFC 8441 §5); the
   * origin's Sec-WebSocket-Accept belongs to the hop sluice checked. */
  if (s->tunnel) memcpy(status, "200", 4);
  nva[k++] = (nghttp2_nv){(uint8_t *)":status", (uint8_t *)status, 7, 3,
                          NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE};
  for (uint32_t i = 0; i < r->n_headers; i++) {
    const struct sl_header *hd = &r->headers[i];
    if (s->tunnel && strcmp(hd->name, "sec-websocket-accept") == 0) continue;
    uint8_t flags = NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE;
    /* retry-after changes with every refusal: indexing it would churn the
     * HPACK table for nothing. */
    if (s->local_response && strcmp(hd->name, "retry-after") == 0)
      flags |= NGHTTP2_NV_FLAG_NO_INDEX;
    nva[k++] = (nghttp2_nv){(uint8_t *)hd->name, (uint8_t *)hd->value, hd->name_len,
                            hd->value_len, flags};
  }
  if (r->content_length >= 0 && r->status != 204) {
    size_t cl = sl_fmt_u64(clen, (uint64_t)r->content_length);
    nva[k++] = (nghttp2_nv){(uint8_t *)"content-length", (uint8_t *)clen, 14, (size_t)cl,
                            NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE};
  }
  nghttp2_data_provider prd = {.source.ptr = s, .read_callback = data_read};
  int rv = nghttp2_submit_response(h->session, s->h2_id, nva, k, r->no_body ? NULL : &prd);
  if (rv != 0) {
    nghttp2_submit_rst_stream(h->session, NGHTTP2_FLAG_NONE, s->h2_id, NGHTTP2_INTERNAL_ERROR);
  } else {
    if (s->tunnel) h->tunnel_heads++;
    h2_stall_watch(s);
  }
  sl_conn_schedule_flush(s->conn);
}

static void h2_response_body(struct sl_stream *s) {
  struct sl_h2 *h = h2_of(s->conn);
  if (!h2_awake(h)) return;
  if (xs(s)->deferred) {
    xs(s)->deferred = false;
    nghttp2_session_resume_data(h->session, s->h2_id);
    h2_stall_watch(s);
  }
  sl_conn_schedule_flush(s->conn);
}

static void h2_request_body_drained(struct sl_stream *s, size_t n) {
  struct sl_h2 *h = h2_of(s->conn);
  if (!h2_awake(h)) return;
  if (s->pace) {
    /* A paced upload: the window reopens as fast as the bandwidth allows;
     * the pacer's timer calls back with n = 0 for the rest. */
    struct h2_stream_extra *x = xs(s);
    x->pace_owed += n;
    n = sl_pace_quota(s, SL_PACE_UP, x->pace_owed);
    sl_pace_charge(s, SL_PACE_UP, n);
    x->pace_owed -= n;
  }
  nghttp2_session_consume(h->session, s->h2_id, n);
  sl_conn_schedule_flush(s->conn);
}

static void h2_abort(struct sl_stream *s) {
  struct sl_h2 *h = h2_of(s->conn);
  if (!h2_awake(h)) return;
  nghttp2_submit_rst_stream(h->session, NGHTTP2_FLAG_NONE, s->h2_id, NGHTTP2_INTERNAL_ERROR);
  sl_conn_schedule_flush(s->conn);
}

static const struct sl_frontend_ops h2_frontend = {
    .response_head = h2_response_head,
    .response_body = h2_response_body,
    .request_body_drained = h2_request_body_drained,
    .abort = h2_abort,
};

/* ---- connection ops ----------------------------------------------- */

static ssize_t h2_on_read(struct sl_conn *c, const char *data, size_t len) {
  struct sl_h2 *h = h2_of(c);
  if (!h->session && h2_wake(h) != 0) return -1;
  ssize_t rv = nghttp2_session_mem_recv(h->session, (const uint8_t *)data, len);
  if (rv < 0) {
    if (SL_LOG_ENABLED(SL_LOG_DEBUG))
      sl_log(SL_LOG_DEBUG, "h2 session error", "peer", c->peer_ip, "error",
             nghttp2_strerror((int)rv), NULL);
    /* Flood or protocol error: nghttp2 queued a GOAWAY when it could;
     * send it and close. */
    sl_conn_close_after_flush(c);
    return (ssize_t)len;
  }
  sl_h2_frames_feed(&h->frames, (const uint8_t *)data, (size_t)rv);
  h->read_at = ev_now(c->w->loop);
  if (h->n_streams == 0)
    h2_quiet_timer(h);
  else
    h2_tunnel_sleep_arm(h);
  return rv;
}

static void h2_produce(struct sl_conn *c) {
  struct sl_h2 *h = h2_of(c);
  if (h && h->wake_failed) {
    sl_conn_close(c);
    return;
  }
  if (!h || !h->session) return; /* asleep: nothing to send */
  bool wrote = false;
  h->framebuf_empty = false;
  while (!sl_pipe_full(&c->out)) {
    const uint8_t *data;
    ssize_t n = nghttp2_session_mem_send(h->session, &data);
    if (n < 0) {
      sl_conn_close(c);
      return;
    }
    if (n == 0) {
      h->framebuf_empty = true;
      break;
    }
    wrote = true;
    if (sl_pipe_write(&c->out, data, (size_t)n) != 0) {
      sl_conn_close(c);
      return;
    }
  }
  if (wrote) h2_framebuf_wrote(h);
  if (!nghttp2_session_want_read(h->session) && !nghttp2_session_want_write(h->session))
    sl_conn_close_after_flush(c);
}

static void h2_on_eof(struct sl_conn *c) {
  /* A client that half-closes cannot send more frames: nothing left to
   * answer on h2 (every response needs the peer reading). */
  sl_conn_close(c);
}

static void h2_destroy(struct sl_conn *c) {
  struct sl_h2 *h = h2_of(c);
  if (!h) return;
  /* nghttp2_session_del does not call on_stream_close: free the streams
   * that are still live from the connection's own list. */
  while (h->live) {
    struct sl_stream *s = h->live->s;
    if (h->session) nghttp2_session_set_stream_user_data(h->session, s->h2_id, NULL);
    h2_stream_del(h, s);
  }
  sl_h2_frames_free(&h->frames);
  if (h->session)
    nghttp2_session_del(h->session);
  else if (c->lis->m_h2_asleep)
    sl_metric_gauge_add(c->lis->m_h2_asleep, -1);
  if (h->m_active) sl_metric_gauge_add(h->m_active, -1);
  sl_slab_free(&h2_slab, h);
  c->proto_data = NULL;
}

/* Draining (the connection's turn in the worker's drain spread): GOAWAY,
 * streams in flight finish under it, tunnels get a close 1001. Until then
 * the connection serves new streams as usual. */
static void h2_drain(struct sl_conn *c, const char *tunnel_reason) {
  struct sl_h2 *h = h2_of(c);
  if (h->goaway_sent) return;
  if (!h->session && h2_wake(h) != 0) {
    sl_conn_close(c);
    return;
  }
  h->goaway_sent = true;
  for (struct h2_stream_extra *x = h->live, *n; x; x = n) {
    n = x->next;
    if (x->s->tunnel)
      sl_stream_tunnel_close(x->s, 1001, tunnel_reason ? tunnel_reason : SL_DRAIN_CLOSE_REASON);
  }
  nghttp2_submit_goaway(h->session, NGHTTP2_FLAG_NONE,
                        nghttp2_session_get_last_proc_stream_id(h->session), NGHTTP2_NO_ERROR,
                        NULL, 0);
  sl_conn_schedule_flush(c);
}

static bool h2_idle(struct sl_conn *c) { return h2_quiet(h2_of(c)); }

/* The connection timer: stall deadlines of streams waiting for the
 * client, else the idle timeout. Streams waiting for the upstream have the
 * upstream's timeouts. Only stalled streams left counts as idle: their
 * resets may never leave if the client reads nothing, so the connection
 * then closes at once instead of after a flush. */
static void h2_on_timeout(struct sl_conn *c) {
  struct sl_h2 *h = h2_of(c);
  ev_tstamp now = ev_now(c->w->loop);
  if (!h->session && h->n_streams) {
    /* Asleep with idle tunnels: their upstream side's timers watch them,
     * as they did awake; the first byte either way wakes it. */
    sl_conn_set_timeout(c, 0);
    return;
  }
  bool was_quiet = h2_quiet(h);
  if (!was_quiet) {
    ev_tstamp next = h2_stall_check(h, now);
    ev_tstamp release = h2_framebuf_due(h, now);
    if (release > 0 && (next == 0 || release < next)) next = release;
    if (h2_tunnels_only(h)) {
      /* Idle tunnels only: the session sleeps with them once nothing
       * moved for H2_SLEEP_AFTER_MS, else it looks again then. */
      ev_tstamp at = h2_last_active(h) + H2_SLEEP_AFTER_MS / 1000.0;
      if (now >= at) {
        if (h2_sleep(h)) {
          sl_conn_set_timeout(c, 0);
          return;
        }
        at = now + H2_SLEEP_AFTER_MS / 1000.0;
      }
      if (next == 0 || at < next) next = at;
    }
    if (h2_quiet(h)) {
      h2_quiet_timer(h);
    } else if (next > 0) {
      uint64_t ms = (uint64_t)((next - now) * 1000.0) + 1;
      sl_conn_set_timeout(c, ms);
    } else {
      sl_conn_set_timeout(c, c->lis->idle_timeout_ms);
    }
    return;
  }
  if (h->n_streams > 0) {
    sl_conn_close(c);
    return;
  }
  uint64_t idle = c->lis->idle_timeout_ms;
  ev_tstamp idle_at = h->quiet_since + (ev_tstamp)idle / 1000.0;
  if (h->session && (idle == 0 || now < idle_at)) {
    /* The sleep or release deadline, not the idle one. */
    bool slept = h2_sleep(h);
    ev_tstamp release = h2_framebuf_due(h, now);
    sl_conn_set_timeout(c, idle == 0 ? 0 : (uint64_t)((idle_at - now) * 1000.0) + 1);
    if (release > 0) h2_framebuf_arm(h, release);
    if (slept) sl_conn_idle_enter(c); /* held from now on, if not already (h2_quiet_timer) */
    return;
  }
  h2_drain(c, NULL);
  sl_conn_close_after_flush(c);
}

static int h2_start(struct sl_conn *c);

static const char h2_preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

const struct sl_proto_ops sl_h2_ops = {
    .alpn = "h2",
    .preface = h2_preface,
    .preface_len = sizeof(h2_preface) - 1,
    .start = h2_start,
    .on_timeout = h2_on_timeout,
    .on_read = h2_on_read,
    .produce = h2_produce,
    .on_eof = h2_on_eof,
    .destroy = h2_destroy,
    .drain = h2_drain,
    .idle = h2_idle,
    .drain_spread = true,
};

static nghttp2_session_callbacks *h2_callbacks;
static nghttp2_option *h2_options;

__attribute__((constructor)) static void h2_init_globals(void) {
  nghttp2_session_callbacks_new(&h2_callbacks);
  nghttp2_session_callbacks_set_on_begin_frame_callback(h2_callbacks, on_begin_frame);
  nghttp2_session_callbacks_set_on_begin_headers_callback(h2_callbacks, on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(h2_callbacks, on_header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(h2_callbacks, on_frame_recv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(h2_callbacks, on_data_chunk_recv);
  nghttp2_session_callbacks_set_on_frame_send_callback(h2_callbacks, on_frame_send);
  nghttp2_session_callbacks_set_on_stream_close_callback(h2_callbacks, on_stream_close);
  nghttp2_option_new(&h2_options);
  nghttp2_option_set_no_auto_window_update(h2_options, 1);
  /* Flood guards, set explicitly rather than trusting defaults: rapid
   * reset is sluice's own budget (H2_GLITCH_BURST, which also counts the
   * resets the client provokes); nghttp2's limiter stays on at twice it
   * as a backstop that never fires first. At most 8 CONTINUATION frames
   * per header block, bounded SETTINGS and outbound ACK queues. */
  nghttp2_option_set_stream_reset_rate_limit(h2_options, 2 * H2_GLITCH_BURST, H2_GLITCH_RATE);
  nghttp2_option_set_max_continuations(h2_options, 8);
  nghttp2_option_set_max_settings(h2_options, 32);
  nghttp2_option_set_max_outbound_ack(h2_options, 1000);
  nghttp2_option_set_max_deflate_dynamic_table_size(h2_options, 4096);
}

__attribute__((destructor)) static void h2_free_globals(void) {
  nghttp2_session_callbacks_del(h2_callbacks);
  nghttp2_option_del(h2_options);
}

/* A new server session with our SETTINGS and connection window queued:
 * at the start (|z| NULL: the listener's limits), and when a sleeping one
 * wakes (|z|: the settings the client acknowledged; this first flight is
 * then discarded by sl_h2_sleep_wake). Returns 0, or -1 (OOM). */
static int h2_session_open(struct sl_h2 *h, const struct sl_h2_sleep *z) {
  struct sl_conn *c = h->c;
  nghttp2_mem mem = sl_h2mem_for(&h->framebuf); /* copied by nghttp2 */
  if (nghttp2_session_server_new3(&h->session, h2_callbacks, h, h2_options, &mem) != 0) {
    h->session = NULL;
    return -1;
  }
  nghttp2_settings_entry iv[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, z ? z->local_streams : c->lis->h2_streams},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, z ? z->local_window : SL_BODY_PIPE_CAP - 1},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, z ? z->local_header_list : c->lis->header_bytes},
      {NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL, 1}, /* RFC 8441 WebSockets */
  };
  if (nghttp2_submit_settings(h->session, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0])) ||
      nghttp2_session_set_local_window_size(h->session, NGHTTP2_FLAG_NONE, 0, H2_CONN_WINDOW)) {
    nghttp2_session_del(h->session);
    h->session = NULL;
    return -1;
  }
  return 0;
}

static int h2_start(struct sl_conn *c) {
  struct sl_h2 *h = sl_slab_calloc(&h2_slab);
  if (!h) return -1;
  h->c = c;
  h->glitch_tokens = H2_GLITCH_BURST;
  h->glitch_refill_s = (uint64_t)ev_now(c->w->loop);
  sl_h2_frames_init(&h->frames);
  if (h2_session_open(h, NULL) != 0) {
    sl_slab_free(&h2_slab, h);
    return -1;
  }
  c->proto_data = h;
  h->m_active = c->lis->m_conn_h2;
  if (h->m_active) sl_metric_gauge_add(h->m_active, 1);
  h2_quiet_timer(h);
  sl_conn_schedule_flush(c);
  return 0;
}
