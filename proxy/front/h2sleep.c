/*
 * sluice — idle HTTP/2 sessions put to sleep. See h2sleep.h.
 */
#include <string.h>

#include "front/h2sleep.h"

#define H2_FRAME_HDLEN 9
#define H2_PREFACE "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#define H2_PREFACE_LEN (sizeof(H2_PREFACE) - 1)
#define H2_INITIAL_WINDOW 65535 /* RFC 9113 §6.9.2 */

void sl_h2_frames_init(struct sl_h2_frames *t) {
  t->skip = H2_PREFACE_LEN;
  t->hdr_have = 0;
}

void sl_h2_frames_feed(struct sl_h2_frames *t, const uint8_t *p, size_t len) {
  while (len > 0) {
    if (t->skip) {
      size_t n = len < t->skip ? len : t->skip;
      t->skip -= (uint32_t)n;
      p += n;
      len -= n;
      continue;
    }
    if (t->hdr_have < 3) t->len[t->hdr_have] = *p;
    p++;
    len--;
    if (++t->hdr_have == H2_FRAME_HDLEN) {
      t->skip = (uint32_t)t->len[0] << 16 | (uint32_t)t->len[1] << 8 | t->len[2];
      t->hdr_have = 0;
    }
  }
}

/* Settings ids nghttp2 knows (id 7 is unassigned: nghttp2 aborts on it). */
static bool setting_known(int id) { return id >= 1 && id <= SL_H2_SLEEP_SETTINGS && id != 7; }

bool sl_h2_sleep_possible(nghttp2_session *s) {
  return nghttp2_session_get_last_proc_stream_id(s) == 0 &&
         nghttp2_session_want_read(s) && !nghttp2_session_want_write(s) &&
         nghttp2_session_get_outbound_queue_size(s) == 0 &&
         nghttp2_session_get_hd_inflate_dynamic_table_size(s) == 0 &&
         nghttp2_session_get_hd_deflate_dynamic_table_size(s) == 0 &&
         nghttp2_session_get_effective_recv_data_length(s) == 0 &&
         nghttp2_session_get_remote_window_size(s) >= H2_INITIAL_WINDOW;
}

void sl_h2_sleep_save(nghttp2_session *s, struct sl_h2_sleep *z) {
  memset(z, 0, sizeof(*z));
  for (int id = 1; id <= SL_H2_SLEEP_SETTINGS; id++)
    if (setting_known(id))
      z->remote[id - 1] = nghttp2_session_get_remote_settings(s, (nghttp2_settings_id)id);
  z->remote_window = nghttp2_session_get_remote_window_size(s);
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

/* Sends |s|'s queued frames nowhere. */
static int discard_output(nghttp2_session *s) {
  const uint8_t *data;
  ssize_t n;
  while ((n = nghttp2_session_mem_send(s, &data)) > 0) {
  }
  return (int)n;
}

int sl_h2_sleep_wake(nghttp2_session *s, const struct sl_h2_sleep *z) {
  /* preface + SETTINGS (6 bytes per setting) + SETTINGS ACK + WINDOW_UPDATE */
  uint8_t in[H2_PREFACE_LEN + H2_FRAME_HDLEN + 6 * SL_H2_SLEEP_SETTINGS + H2_FRAME_HDLEN +
             H2_FRAME_HDLEN + 4];
  int rv = discard_output(s);
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
  ssize_t used = nghttp2_session_mem_recv(s, in, k);
  if (used < 0) return (int)used;
  if ((size_t)used != k) return NGHTTP2_ERR_PROTO;
  return discard_output(s);
}
