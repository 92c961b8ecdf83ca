/*
 * Unit tests for front/h2sleep.c: the frame-boundary tracker, fed at every
 * split; a server session put to sleep and woken against a real nghttp2
 * client session, which must not be able to tell.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "front/h2sleep.h"

/* ---- in-memory pair ------------------------------------------------ */

struct side {
  int headers_begun; /* server: request HEADERS seen */
  int data_bytes;    /* client: response DATA bytes received */
  char last_value[64]; /* server: the value of the last "x-device" header */
};

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *ud) {
  (void)s;
  (void)f;
  (void)flags;
  struct side *sd = ud;
  if (namelen == 8 && memcmp(name, "x-device", 8) == 0 && valuelen < sizeof(sd->last_value)) {
    memcpy(sd->last_value, value, valuelen);
    sd->last_value[valuelen] = '\0';
  }
  return 0;
}

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *ud) {
  (void)s;
  (void)f;
  ((struct side *)ud)->headers_begun++;
  return 0;
}

static int on_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *d, size_t len,
                   void *ud) {
  (void)s;
  (void)flags;
  (void)id;
  (void)d;
  ((struct side *)ud)->data_bytes += (int)len;
  return 0;
}

static nghttp2_session *server_new(struct side *sd) {
  nghttp2_session_callbacks *cb;
  nghttp2_session_callbacks_new(&cb);
  nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
  nghttp2_session *s;
  assert_int_equal(nghttp2_session_server_new(&s, cb, sd), 0);
  nghttp2_session_callbacks_del(cb);
  nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 7},
                                 {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 30000}};
  assert_int_equal(nghttp2_submit_settings(s, NGHTTP2_FLAG_NONE, iv, 2), 0);
  return s;
}

static nghttp2_session *client_new(struct side *sd) {
  nghttp2_session_callbacks *cb;
  nghttp2_session_callbacks_new(&cb);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data);
  nghttp2_session *s;
  assert_int_equal(nghttp2_session_client_new(&s, cb, sd), 0);
  nghttp2_session_callbacks_del(cb);
  return s;
}

/* Moves every queued byte of |from| into |to|; the bytes are also appended
 * to |log| (if not NULL, up to |cap|) for the tracker test. */
static size_t pump(nghttp2_session *from, nghttp2_session *to, uint8_t *log, size_t cap,
                   size_t have) {
  const uint8_t *d;
  ssize_t n;
  while ((n = nghttp2_session_mem_send(from, &d)) > 0) {
    assert_int_equal(nghttp2_session_mem_recv(to, d, (size_t)n), n);
    if (log && have + (size_t)n <= cap) memcpy(log + have, d, (size_t)n);
    have += (size_t)n;
  }
  assert_int_equal(n, 0);
  return have;
}

static void exchange(nghttp2_session *srv, nghttp2_session *cli, uint8_t *log, size_t cap,
                     size_t *have) {
  for (int i = 0; i < 4; i++) {
    *have = pump(cli, srv, log, cap, *have);
    pump(srv, cli, NULL, 0, 0);
  }
}

static void handshake(nghttp2_session *srv, nghttp2_session *cli, uint8_t *log, size_t cap,
                      size_t *have) {
  nghttp2_settings_entry civ[] = {{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1000},
                                  {NGHTTP2_SETTINGS_MAX_FRAME_SIZE, 20000},
                                  {NGHTTP2_SETTINGS_ENABLE_PUSH, 0}};
  assert_int_equal(nghttp2_submit_settings(cli, NGHTTP2_FLAG_NONE, civ, 3), 0);
  assert_int_equal(nghttp2_submit_window_update(cli, NGHTTP2_FLAG_NONE, 0, 100000), 0);
  exchange(srv, cli, log, cap, have);
}

/* ---- tests --------------------------------------------------------- */

static void test_frames_every_split(void **state) {
  (void)state;
  struct side ss = {0}, cs = {0};
  nghttp2_session *srv = server_new(&ss), *cli = client_new(&cs);
  uint8_t log[512];
  size_t have = 0;
  handshake(srv, cli, log, sizeof(log), &have);
  assert_true(have > 24 && have <= sizeof(log));
  /* Where the frames end: after the preface, then header + length each. */
  bool end[513] = {false};
  size_t off = 24;
  end[off] = true;
  while (off < have) {
    off += 9 + ((size_t)log[off] << 16 | (size_t)log[off + 1] << 8 | log[off + 2]);
    end[off] = true;
  }
  assert_int_equal(off, have);
  for (size_t cut = 0; cut <= have; cut++) {
    struct sl_h2_frames t;
    sl_h2_frames_init(&t);
    assert_false(sl_h2_frames_at_boundary(&t));
    sl_h2_frames_feed(&t, log, cut);
    assert_int_equal(sl_h2_frames_at_boundary(&t), end[cut]);
    for (size_t i = cut; i < have; i++) sl_h2_frames_feed(&t, log + i, 1); /* a byte at a time */
    assert_true(sl_h2_frames_at_boundary(&t));
    sl_h2_frames_free(&t);
  }
  nghttp2_session_del(srv);
  nghttp2_session_del(cli);
}

static void test_sleep_and_wake(void **state) {
  (void)state;
  struct side ss = {0}, cs = {0};
  nghttp2_session *srv = server_new(&ss), *cli = client_new(&cs);
  size_t have = 0;
  handshake(srv, cli, NULL, 0, &have);
  assert_true(sl_h2_sleep_possible(srv, false, 0));
  struct sl_h2_sleep z;
  sl_h2_sleep_save(srv, &z, 0);
  assert_int_equal(z.remote_window, 65535 + 100000);
  assert_int_equal(z.local_streams, 7);
  assert_int_equal(z.local_window, 30000);

  struct side ws = {0};
  nghttp2_session *woken = server_new(&ws);
  assert_int_equal(sl_h2_sleep_wake(woken, &z), 0);
  assert_false(nghttp2_session_want_write(woken)); /* its answers went nowhere */
  for (int id = 1; id <= SL_H2_SLEEP_SETTINGS; id++) {
    if (id == 7) continue;
    assert_int_equal(nghttp2_session_get_remote_settings(woken, (nghttp2_settings_id)id),
                     nghttp2_session_get_remote_settings(srv, (nghttp2_settings_id)id));
    assert_int_equal(nghttp2_session_get_local_settings(woken, (nghttp2_settings_id)id),
                     nghttp2_session_get_local_settings(srv, (nghttp2_settings_id)id));
  }
  assert_int_equal(nghttp2_session_get_remote_window_size(woken),
                   nghttp2_session_get_remote_window_size(srv));
  assert_int_equal(ws.headers_begun, 0);
  nghttp2_session_del(srv);

  /* The client goes on as if nothing happened: a request, answered on a
   * stream whose send window is the client's INITIAL_WINDOW_SIZE. */
  const nghttp2_nv nv[] = {
      {(uint8_t *)":method", (uint8_t *)"GET", 7, 3, 0},
      {(uint8_t *)":scheme", (uint8_t *)"http", 7, 4, 0},
      {(uint8_t *)":path", (uint8_t *)"/", 5, 1, 0},
      {(uint8_t *)":authority", (uint8_t *)"a", 10, 1, 0},
  };
  int32_t sid = nghttp2_submit_request(cli, NULL, nv, 4, NULL, NULL);
  assert_true(sid > 0);
  exchange(woken, cli, NULL, 0, &have);
  assert_int_equal(ws.headers_begun, 1);
  const nghttp2_nv rv[] = {{(uint8_t *)":status", (uint8_t *)"200", 7, 3, 0}};
  assert_int_equal(nghttp2_submit_headers(woken, NGHTTP2_FLAG_NONE, sid, NULL, rv, 1, NULL), 0);
  pump(woken, cli, NULL, 0, 0);
  assert_int_equal(nghttp2_session_get_stream_remote_window_size(woken, sid), 1000);
  /* A session that carried a stream sleeps again only with its header
   * blocks kept. */
  assert_false(sl_h2_sleep_possible(woken, false, 0));
  nghttp2_session_del(woken);
  nghttp2_session_del(cli);
}

static void test_not_with_output_queued(void **state) {
  (void)state;
  struct side ss = {0};
  nghttp2_session *srv = server_new(&ss);
  assert_false(sl_h2_sleep_possible(srv, true, 0)); /* its SETTINGS are queued */
  nghttp2_session_del(srv);
}

/* Sends a GET whose x-device header the client's encoder indexes; the
 * server answers it with a 200 and END_STREAM. */
static int32_t get(nghttp2_session *srv, nghttp2_session *cli, const char *dev, uint8_t *log,
                   size_t cap, size_t *have) {
  const nghttp2_nv nv[] = {
      {(uint8_t *)":method", (uint8_t *)"GET", 7, 3, 0},
      {(uint8_t *)":scheme", (uint8_t *)"http", 7, 4, 0},
      {(uint8_t *)":path", (uint8_t *)"/poll", 5, 5, 0},
      {(uint8_t *)":authority", (uint8_t *)"identity.example", 10, 16, 0},
      {(uint8_t *)"x-device", (uint8_t *)dev, 8, strlen(dev), 0},
  };
  int32_t sid = nghttp2_submit_request(cli, NULL, nv, 5, NULL, NULL);
  assert_true(sid > 0);
  exchange(srv, cli, log, cap, have);
  const nghttp2_nv rv[] = {{(uint8_t *)":status", (uint8_t *)"200", 7, 3, 0}};
  assert_int_equal(nghttp2_submit_response(srv, sid, rv, 1, NULL), 0);
  exchange(srv, cli, log, cap, have);
  return sid;
}

/* A session that carried requests: the tracker kept their header blocks,
 * and a fresh session fed them (after the handshake) decodes the
 * client's next request, whose header block refers to entries the first
 * ones indexed, and takes its stream id. */
static void test_replayed_header_blocks(void **state) {
  (void)state;
  struct side ss = {0}, cs = {0};
  nghttp2_session *srv = server_new(&ss), *cli = client_new(&cs);
  uint8_t log[4096];
  size_t have = 0;
  handshake(srv, cli, log, sizeof(log), &have);
  get(srv, cli, "dev-42", log, sizeof(log), &have);
  get(srv, cli, "dev-42", log, sizeof(log), &have);
  assert_true(have <= sizeof(log));
  struct sl_h2_frames t;
  sl_h2_frames_init(&t);
  sl_h2_frames_feed(&t, log, have);
  assert_true(sl_h2_frames_replayable(&t));
  assert_true(nghttp2_session_get_hd_inflate_dynamic_table_size(srv) > 0);
  assert_true(sl_h2_sleep_possible(srv, true, 0));
  struct sl_h2_sleep z;
  sl_h2_sleep_save(srv, &z, 0);

  struct side ws = {0};
  nghttp2_session *woken = server_new(&ws);
  assert_int_equal(sl_h2_sleep_wake(woken, &z), 0);
  size_t off = 0;
  int32_t sid, ids[4];
  int n = 0;
  while (sl_h2_replay_block(woken, &t, &off, &sid) == 0 && sid) {
    assert_true(n < 4);
    ids[n++] = sid;
    assert_int_equal(nghttp2_submit_rst_stream(woken, NGHTTP2_FLAG_NONE, sid, NGHTTP2_NO_ERROR),
                     0);
    assert_int_equal(sl_h2_discard_output(woken), 0);
  }
  assert_int_equal(n, 2);
  assert_int_equal(ids[0], 1);
  assert_int_equal(ids[1], 3);
  assert_int_equal(nghttp2_session_get_hd_inflate_dynamic_table_size(woken),
                   nghttp2_session_get_hd_inflate_dynamic_table_size(srv));
  assert_int_equal(nghttp2_session_get_last_proc_stream_id(woken), 3);
  nghttp2_session_del(srv);
  ws.last_value[0] = '\0';
  int32_t next = get(woken, cli, "dev-42", NULL, 0, &have);
  assert_int_equal(next, 5);
  assert_string_equal(ws.last_value, "dev-42");
  sl_h2_frames_free(&t);
  nghttp2_session_del(woken);
  nghttp2_session_del(cli);
}

/* Trailers (a second HEADERS frame on a stream) and header blocks past
 * SL_H2_CAPTURE_MAX end the capture: such a session is not replayable. */
static void test_capture_ends(void **state) {
  (void)state;
  static const uint8_t preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
  uint8_t hdr[9] = {0, 0, 3, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS, 0, 0, 0, 1};
  uint8_t payload[3] = {0x82, 0x86, 0x84};
  struct sl_h2_frames t;
  sl_h2_frames_init(&t);
  sl_h2_frames_feed(&t, preface, 24);
  sl_h2_frames_feed(&t, hdr, 9);
  sl_h2_frames_feed(&t, payload, 3);
  assert_true(sl_h2_frames_replayable(&t));
  assert_int_equal(t.cap_len, 12);
  assert_memory_equal(t.cap + 9, payload, 3);
  sl_h2_frames_feed(&t, hdr, 9); /* stream 1 again: trailers */
  sl_h2_frames_feed(&t, payload, 3);
  assert_false(sl_h2_frames_replayable(&t));
  assert_null(t.cap);
  sl_h2_frames_free(&t);

  sl_h2_frames_init(&t);
  sl_h2_frames_feed(&t, preface, 24);
  uint8_t big[600];
  memset(big, 0x82, sizeof(big));
  for (uint8_t sid = 1; sid <= 3; sid += 2) {
    uint8_t h[9] = {0, 0x02, 0x58, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS, 0, 0, 0, sid};
    sl_h2_frames_feed(&t, h, 9);
    sl_h2_frames_feed(&t, big, sizeof(big));
  }
  assert_false(sl_h2_frames_replayable(&t));
  assert_true(sl_h2_frames_at_boundary(&t));
  sl_h2_frames_free(&t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_replayed_header_blocks),
      cmocka_unit_test(test_capture_ends),
      cmocka_unit_test(test_frames_every_split),
      cmocka_unit_test(test_sleep_and_wake),
      cmocka_unit_test(test_not_with_output_queued),
  };
  int failed = cmocka_run_group_tests(tests, NULL, NULL);
  sl_h2_frames_cache_drain();
  return failed;
}
