/*
 * sluice — idle HTTP/2 sessions put to sleep. See h2sleep.h.
 */
#include <string.h>

#include "core/slab.h"
#include "front/h2sleep.h"

#define H2_FRAME_HDLEN 9
#define H2_PREFACE "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#define H2_PREFACE_LEN (sizeof(H2_PREFACE) - 1)
#define H2_INITIAL_WINDOW 65535 /* RFC 9113 §6.9.2 */

void sl_h2_frames_init(struct sl_h2_frames *t) {
  memset(t, 0, sizeof(*t));
  t->skip = H2_PREFACE_LEN;
}

/* The kept header frames outlive the session, as the sleeping
 * connection's own state does: from per-thread slabs of four sizes (the
 * smallest that holds cap_len), for the reason core/slab.h gives. A
 * malloc'd block would sit among the session's freed ones and keep their
 * pages resident (measured: 0.5 KiB more per sleeping connection). */
static __thread struct sl_slab cap_slabs[4] = {SL_SLAB_INIT(128), SL_SLAB_INIT(256),
                                               SL_SLAB_INIT(512), SL_SLAB_INIT(1024)};

static int cap_class(size_t n) { return n <= 128 ? 0 : n <= 256 ? 1 : n <= 512 ? 2 : 3; }

void sl_h2_frames_cache_drain(void) {
  for (int i = 0; i < 4; i++) sl_slab_drain(&cap_slabs[i]);
}

void sl_h2_frames_free(struct sl_h2_frames *t) {
  if (t->cap) sl_slab_free(&cap_slabs[cap_class(t->cap_len)], t->cap);
  t->cap = NULL;
  t->cap_len = 0;
}

static void capture_stop(struct sl_h2_frames *t) {
  sl_h2_frames_free(t);
  t->capture_off = true;
  t->capturing = false;
}

static size_t frame_len(const uint8_t *hd) {
  return (size_t)hd[0] << 16 | (size_t)hd[1] << 8 | hd[2];
}

static uint32_t frame_sid(const uint8_t *hd) {
  return ((uint32_t)hd[5] << 24 | (uint32_t)hd[6] << 16 | (uint32_t)hd[7] << 8 | hd[8]) &
         0x7fffffffu;
}

/* A frame header is complete: keep the frame if it belongs to a request's
 * header block. A HEADERS frame on a stream not above the last request's
 * is trailers, which the replay cannot put back on a stream it resets. */
static void capture_begin(struct sl_h2_frames *t, uint32_t len) {
  t->capturing = false;
  if (t->capture_off) return;
  uint8_t type = t->hdr[3];
  if (type == NGHTTP2_HEADERS) {
    int32_t sid = (int32_t)frame_sid(t->hdr);
    if (sid <= t->cap_last_sid) {
      capture_stop(t);
      return;
    }
    t->cap_last_sid = sid;
  } else if (type != NGHTTP2_CONTINUATION) {
    return;
  }
  size_t need = (size_t)t->cap_len + H2_FRAME_HDLEN + len;
  if (need > SL_H2_CAPTURE_MAX) {
    capture_stop(t);
    return;
  }
  int want = cap_class(need);
  if (!t->cap || want != cap_class(t->cap_len)) {
    uint8_t *nb = sl_slab_calloc(&cap_slabs[want]);
    if (!nb) {
      capture_stop(t);
      return;
    }
    if (t->cap) {
      memcpy(nb, t->cap, t->cap_len);
      sl_slab_free(&cap_slabs[cap_class(t->cap_len)], t->cap);
    }
    t->cap = nb;
  }
  memcpy(t->cap + t->cap_len, t->hdr, H2_FRAME_HDLEN);
  t->cap_len = (uint16_t)(t->cap_len + H2_FRAME_HDLEN);
  t->capturing = len > 0;
}

void sl_h2_frames_feed(struct sl_h2_frames *t, const uint8_t *p, size_t len) {
  while (len > 0) {
    if (t->skip) {
      size_t n = len < t->skip ? len : t->skip;
      if (t->capturing) { /* room was made for the whole frame */
        memcpy(t->cap + t->cap_len, p, n);
        t->cap_len = (uint16_t)(t->cap_len + n);
      }
      t->skip -= (uint32_t)n;
      p += n;
      len -= n;
      if (!t->skip) t->capturing = false;
      continue;
    }
    /* The frame header, or as much of it as this chunk holds. */
    size_t n = H2_FRAME_HDLEN - t->hdr_have;
    if (n > len) n = len;
    memcpy(t->hdr + t->hdr_have, p, n);
    t->hdr_have = (uint8_t)(t->hdr_have + n);
    p += n;
    len -= n;
    if (t->hdr_have == H2_FRAME_HDLEN) {
      t->skip = (uint32_t)frame_len(t->hdr);
      t->hdr_have = 0;
      capture_begin(t, t->skip);
    }
  }
}

/* Settings ids nghttp2 knows (id 7 is unassigned: nghttp2 aborts on it). */
static bool setting_known(int id) { return id >= 1 && id <= SL_H2_SLEEP_SETTINGS && id != 7; }

bool sl_h2_sleep_possible(nghttp2_session *s, bool replayable, int64_t window_owed) {
  bool fresh = nghttp2_session_get_last_proc_stream_id(s) == 0 &&
               nghttp2_session_get_hd_inflate_dynamic_table_size(s) == 0 &&
               nghttp2_session_get_hd_deflate_dynamic_table_size(s) == 0;
  return (fresh || replayable) && nghttp2_session_want_read(s) &&
         !nghttp2_session_want_write(s) && nghttp2_session_get_outbound_queue_size(s) == 0 &&
         nghttp2_session_get_effective_recv_data_length(s) == 0 &&
         nghttp2_session_get_remote_window_size(s) + window_owed >= H2_INITIAL_WINDOW &&
         nghttp2_session_get_remote_window_size(s) + window_owed <= INT32_MAX;
}

void sl_h2_sleep_save(nghttp2_session *s, struct sl_h2_sleep *z, int64_t window_owed) {
  memset(z, 0, sizeof(*z));
  for (int id = 1; id <= SL_H2_SLEEP_SETTINGS; id++)
    if (setting_known(id))
      z->remote[id - 1] = nghttp2_session_get_remote_settings(s, (nghttp2_settings_id)id);
  z->remote_window = (int32_t)(nghttp2_session_get_remote_window_size(s) + window_owed);
  z->local_streams = nghttp2_session_get_local_settings(s, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
  z->local_window = nghttp2_session_get_local_settings(s, NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE);
  z->local_header_list =
      nghttp2_session_get_local_settings(s, NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE);
}

static void put_frame_head(uint8_t *p, size_t len, uint8_t type, uint8_t flags) {
  p[0] = (uint8_t)(len >> 16);
  p[1] = (uint8_t)(len >> 8);
  p[2] = (uint8_t)len;
  p[3] = type;
  p[4] = flags;
  memset(p + 5, 0, 4); /* stream 0 */
}

static void put_u32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}

int sl_h2_discard_output(nghttp2_session *s) {
  const uint8_t *data;
  ssize_t n;
  while ((n = nghttp2_session_mem_send(s, &data)) > 0) {
  }
  return (int)n;
}

static int feed_all(nghttp2_session *s, const uint8_t *in, size_t k) {
  ssize_t used = nghttp2_session_mem_recv(s, in, k);
  if (used < 0) return (int)used;
  return (size_t)used == k ? 0 : NGHTTP2_ERR_PROTO;
}

int sl_h2_replay_window_update(nghttp2_session *s, int32_t sid, uint32_t inc) {
  uint8_t in[H2_FRAME_HDLEN + 4];
  put_frame_head(in, 4, NGHTTP2_WINDOW_UPDATE, 0);
  put_u32(in + 5, (uint32_t)sid);
  put_u32(in + H2_FRAME_HDLEN, inc);
  return feed_all(s, in, sizeof(in));
}

uint32_t sl_h2_frames_blocks(const struct sl_h2_frames *t) {
  uint32_t n = 0;
  for (size_t off = 0; off + H2_FRAME_HDLEN <= t->cap_len;) {
    const uint8_t *hd = t->cap + off;
    if (hd[3] == NGHTTP2_HEADERS) n++;
    off += H2_FRAME_HDLEN + frame_len(hd);
  }
  return n;
}

int sl_h2_replay_block(nghttp2_session *s, const struct sl_h2_frames *t, size_t *off,
                       int32_t *sid) {
  *sid = 0;
  if (*off + H2_FRAME_HDLEN > t->cap_len) return 0;
  const uint8_t *first = t->cap + *off;
  size_t end = *off;
  /* The HEADERS frame, then CONTINUATION frames up to END_HEADERS. */
  for (;;) {
    const uint8_t *hd = t->cap + end;
    if (end + H2_FRAME_HDLEN > t->cap_len || end + H2_FRAME_HDLEN + frame_len(hd) > t->cap_len)
      return NGHTTP2_ERR_PROTO;
    end += H2_FRAME_HDLEN + frame_len(hd);
    if (hd[4] & NGHTTP2_FLAG_END_HEADERS) break;
  }
  int rv = feed_all(s, first, end - *off);
  if (rv != 0) return rv;
  *off = end;
  *sid = (int32_t)frame_sid(first);
  return 0;
}

int sl_h2_sleep_wake(nghttp2_session *s, const struct sl_h2_sleep *z) {
  /* preface + SETTINGS (6 bytes per setting) + SETTINGS ACK + WINDOW_UPDATE */
  uint8_t in[H2_PREFACE_LEN + H2_FRAME_HDLEN + 6 * SL_H2_SLEEP_SETTINGS + H2_FRAME_HDLEN +
             H2_FRAME_HDLEN + 4];
  int rv = sl_h2_discard_output(s);
  if (rv < 0) return rv;
  size_t k = 0;
  memcpy(in, H2_PREFACE, H2_PREFACE_LEN);
  k = H2_PREFACE_LEN;
  uint8_t *settings = in + k;
  k += H2_FRAME_HDLEN;
  /* Only what differs from the fresh session's view of the client, so
   * that the new session applies exactly what the old one did (a
   * HEADER_TABLE_SIZE sent again would make the encoder signal a size
   * update it never owed). */
  for (int id = 1; id <= SL_H2_SLEEP_SETTINGS; id++) {
    if (!setting_known(id)) continue;
    uint32_t v = z->remote[id - 1];
    if (v == nghttp2_session_get_remote_settings(s, (nghttp2_settings_id)id)) continue;
    in[k] = 0;
    in[k + 1] = (uint8_t)id;
    put_u32(in + k + 2, v);
    k += 6;
  }
  put_frame_head(settings, (size_t)(in + k - settings) - H2_FRAME_HDLEN, NGHTTP2_SETTINGS, 0);
  put_frame_head(in + k, 0, NGHTTP2_SETTINGS, NGHTTP2_FLAG_ACK);
  k += H2_FRAME_HDLEN;
  if (z->remote_window > H2_INITIAL_WINDOW) {
    put_frame_head(in + k, 4, NGHTTP2_WINDOW_UPDATE, 0);
    put_u32(in + k + H2_FRAME_HDLEN, (uint32_t)(z->remote_window - H2_INITIAL_WINDOW));
    k += H2_FRAME_HDLEN + 4;
  }
  if ((rv = feed_all(s, in, k)) != 0) return rv;
  return sl_h2_discard_output(s);
}
