/*
 * Unit tests for proxy/front/h2.c through a real connection and no
 * listener (front_world.h): an h2 session fed frame by frame by a client
 * written here (frames built by hand, header blocks by nghttp2's HPACK
 * deflater), and what sluice answers read back frame by frame.
 */
#define FUZZ_NAME "test_h2"
#include "front_world.h"

#include <nghttp2/nghttp2.h>

static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/* ---- the client's frames ------------------------------------------- */

static void put_frame(struct tclient *t, uint8_t type, uint8_t flags, uint32_t sid,
                      const void *payload, size_t len) {
  uint8_t hd[9] = {(uint8_t)(len >> 16), (uint8_t)(len >> 8), (uint8_t)len, type, flags,
                   (uint8_t)(sid >> 24), (uint8_t)(sid >> 16), (uint8_t)(sid >> 8),
                   (uint8_t)sid};
  tc_write(t, hd, sizeof(hd));
  if (len) tc_write(t, payload, len);
}

static nghttp2_hd_deflater *deflater;

/* The HPACK block of a request head (:method, :path, :scheme http,
 * :authority a, then |extra| name/value pairs). */
static size_t header_block(uint8_t *out, size_t cap, const char *method, const char *path,
                           const char *const *extra, size_t n_extra) {
  nghttp2_nv nv[16];
  const char *pairs[32] = {":method", method, ":path", path, ":scheme", "http", ":authority",
                           "a"};
  size_t n = 4;
  for (size_t i = 0; i < n_extra; i++) {
    pairs[2 * n] = extra[2 * i];
    pairs[2 * n + 1] = extra[2 * i + 1];
    n++;
  }
  for (size_t i = 0; i < n; i++) {
    nv[i].name = (uint8_t *)pairs[2 * i];
    nv[i].namelen = strlen(pairs[2 * i]);
    nv[i].value = (uint8_t *)pairs[2 * i + 1];
    nv[i].valuelen = strlen(pairs[2 * i + 1]);
    nv[i].flags = NGHTTP2_NV_FLAG_NONE;
  }
  ssize_t rv = nghttp2_hd_deflate_hd(deflater, out, cap, nv, n);
  assert_true(rv > 0);
  return (size_t)rv;
}

static void put_headers(struct tclient *t, uint32_t sid, bool end_stream, const char *method,
                        const char *path, const char *const *extra, size_t n_extra) {
  uint8_t block[1024];
  size_t n = header_block(block, sizeof(block), method, path, extra, n_extra);
  put_frame(t, NGHTTP2_HEADERS,
            NGHTTP2_FLAG_END_HEADERS | (end_stream ? NGHTTP2_FLAG_END_STREAM : 0), sid, block,
            n);
}

/* ---- what sluice sends, frame by frame ----------------------------- */

#define MAX_SID 64

struct h2reader {
  size_t off; /* bytes of t->buf taken so far */
  nghttp2_hd_inflater *inflater;
  uint8_t block[4096]; /* header block being assembled (CONTINUATION) */
  size_t block_len;
  int status[MAX_SID];
  char body[MAX_SID][256];
  size_t body_len[MAX_SID];
  bool ended[MAX_SID];
  int rst[MAX_SID]; /* error code + 1; 0: none */
  uint32_t settings, settings_acks, pings_acked, window_updates;
  uint32_t max_concurrent, connect_protocol; /* from sluice's SETTINGS */
  bool goaway;
  uint32_t goaway_code;
};

static uint32_t be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void inflate_block(struct h2reader *r, uint32_t sid) {
  uint8_t *in = r->block;
  size_t left = r->block_len;
  for (;;) {
    nghttp2_nv nv;
    int flags = 0;
    ssize_t used = nghttp2_hd_inflate_hd2(r->inflater, &nv, &flags, in, left, 1);
    assert_true(used >= 0);
    in += used;
    left -= (size_t)used;
    if ((flags & NGHTTP2_HD_INFLATE_EMIT) && nv.namelen == 7 && !memcmp(nv.name, ":status", 7))
      r->status[sid] = atoi((const char *)nv.value);
    if (flags & NGHTTP2_HD_INFLATE_FINAL) {
      nghttp2_hd_inflate_end_headers(r->inflater);
      break;
    }
    if (left == 0 && !(flags & NGHTTP2_HD_INFLATE_EMIT)) break;
  }
  r->block_len = 0;
}

/* Takes every complete frame received since the last call. */
static void h2_read(struct tclient *t, struct h2reader *r) {
  while (t->len - r->off >= 9) {
    const uint8_t *hd = (const uint8_t *)t->buf + r->off;
    size_t len = (size_t)hd[0] << 16 | (size_t)hd[1] << 8 | hd[2];
    if (t->len - r->off < 9 + len) return;
    uint8_t type = hd[3], flags = hd[4];
    uint32_t sid = be32(hd + 5) & 0x7fffffff;
    const uint8_t *p = hd + 9;
    assert_true(sid < MAX_SID);
    r->off += 9 + len;
    switch (type) {
    case NGHTTP2_SETTINGS:
      if (flags & NGHTTP2_FLAG_ACK) {
        r->settings_acks++;
        break;
      }
      r->settings++;
      for (size_t i = 0; i + 6 <= len; i += 6) {
        uint16_t id = (uint16_t)(p[i] << 8 | p[i + 1]);
        if (id == NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS) r->max_concurrent = be32(p + i + 2);
        if (id == NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL) r->connect_protocol = be32(p + i + 2);
      }
      break;
    case NGHTTP2_HEADERS:
    case NGHTTP2_CONTINUATION:
      assert_true(r->block_len + len <= sizeof(r->block));
      memcpy(r->block + r->block_len, p, len);
      r->block_len += len;
      if (flags & NGHTTP2_FLAG_END_HEADERS) inflate_block(r, sid);
      if (flags & NGHTTP2_FLAG_END_STREAM) r->ended[sid] = true;
      break;
    case NGHTTP2_DATA: {
      size_t take = sizeof(r->body[sid]) - r->body_len[sid];
      if (take > len) take = len;
      memcpy(r->body[sid] + r->body_len[sid], p, take);
      r->body_len[sid] += take;
      if (flags & NGHTTP2_FLAG_END_STREAM) r->ended[sid] = true;
      break;
    }
    case NGHTTP2_RST_STREAM:
      r->rst[sid] = (int)be32(p) + 1;
      break;
    case NGHTTP2_PING:
      if (flags & NGHTTP2_FLAG_ACK) r->pings_acked++;
      break;
    case NGHTTP2_WINDOW_UPDATE:
      r->window_updates++;
      break;
    case NGHTTP2_GOAWAY:
      r->goaway = true;
      r->goaway_code = be32(p + 4);
      break;
    default:
      break;
    }
  }
}

static struct h2reader reader;

struct want {
  uint32_t sid; /* stream ended (or reset), or 0: */
  bool goaway;  /* a GOAWAY */
  bool settings;
};

static bool done_want(struct tclient *t, const void *arg) {
  const struct want *wt = arg;
  h2_read(t, &reader);
  if (wt->sid && !(reader.ended[wt->sid] || reader.rst[wt->sid])) return false;
  if (wt->goaway && !reader.goaway) return false;
  if (wt->settings && !(reader.settings && reader.settings_acks)) return false;
  return true;
}

/* A connection that has sent the preface and an empty SETTINGS, and seen
 * sluice's SETTINGS and its ACK of ours. */
static struct tclient *h2_open(void) {
  memset(&reader, 0, sizeof(reader));
  assert_int_equal(nghttp2_hd_inflate_new(&reader.inflater), 0);
  if (deflater) nghttp2_hd_deflate_del(deflater);
  assert_int_equal(nghttp2_hd_deflate_new(&deflater, 4096), 0);
  struct tclient *t = tc_open(false);
  tc_write(t, preface, sizeof(preface) - 1);
  put_frame(t, NGHTTP2_SETTINGS, 0, 0, NULL, 0);
  struct want wt = {.settings = true};
  assert_true(tc_until(t, done_want, &wt, 2000));
  put_frame(t, NGHTTP2_SETTINGS, NGHTTP2_FLAG_ACK, 0, NULL, 0);
  return t;
}

static void h2_close(struct tclient *t) {
  nghttp2_hd_inflate_del(reader.inflater);
  reader.inflater = NULL;
  tc_close(t);
}

static void wait_stream(struct tclient *t, uint32_t sid) {
  struct want wt = {.sid = sid};
  assert_true(tc_until(t, done_want, &wt, 2000));
}

static void expect_ok(uint32_t sid) {
  assert_int_equal(reader.status[sid], 200);
  assert_int_equal(reader.body_len[sid], 2);
  assert_memory_equal(reader.body[sid], "ok", 2);
  assert_true(reader.ended[sid]);
  assert_int_equal(reader.rst[sid], 0);
}

/* ---- tests ---------------------------------------------------------- */

/* The preface written one byte at a time is recognised (conn.c picks h2
 * by it); sluice's SETTINGS carry the listener's stream limit and RFC
 * 8441's extended CONNECT. */
static void test_preface_and_settings(void **state) {
  (void)state;
  memset(&reader, 0, sizeof(reader));
  assert_int_equal(nghttp2_hd_inflate_new(&reader.inflater), 0);
  struct tclient *t = tc_open(false);
  for (size_t i = 0; i < sizeof(preface) - 1; i++) {
    tc_write(t, preface + i, 1);
    tc_spin(t, 1);
    if (i + 1 < sizeof(preface) - 1) assert_int_equal(t->len, 0); /* not decided yet */
  }
  put_frame(t, NGHTTP2_SETTINGS, 0, 0, NULL, 0);
  struct want wt = {.settings = true};
  assert_true(tc_until(t, done_want, &wt, 2000));
  assert_int_equal(reader.settings, 1);
  assert_int_equal(reader.settings_acks, 1);
  assert_int_equal(reader.max_concurrent, 16);
  assert_int_equal(reader.connect_protocol, 1);
  assert_false(reader.goaway);
  h2_close(t);
}

/* A header block in three pieces (HEADERS, CONTINUATION, CONTINUATION),
 * each frame written on its own, the first one split mid-frame. */
static void test_headers_with_continuation(void **state) {
  (void)state;
  struct tclient *t = h2_open();
  static const char *const extra[] = {"user-agent", "test-h2", "x-a", "1", "x-b", "2"};
  uint8_t block[1024];
  size_t n = header_block(block, sizeof(block), "GET", "/up/c", extra, 3);
  assert_true(n >= 6);
  size_t a = n / 3, b = 2 * n / 3;
  uint8_t hd[9] = {0, 0, (uint8_t)a, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_STREAM, 0, 0, 0, 1};
  tc_write(t, hd, 5);
  tc_spin(t, 2);
  tc_write(t, hd + 5, 4);
  tc_write(t, block, a / 2);
  tc_spin(t, 2);
  tc_write(t, block + a / 2, a - a / 2);
  tc_spin(t, 2);
  put_frame(t, NGHTTP2_CONTINUATION, 0, 1, block + a, b - a);
  tc_spin(t, 2);
  h2_read(t, &reader); /* what sluice sent so far */
  assert_int_equal(reader.status[1], 0); /* the block is not whole yet */
  put_frame(t, NGHTTP2_CONTINUATION, NGHTTP2_FLAG_END_HEADERS, 1, block + b, n - b);
  wait_stream(t, 1);
  expect_ok(1);
  h2_close(t);
}

/* A request body larger than the stream's window (65535): sluice opens
 * the window again (WINDOW_UPDATE) once the first bytes went upstream,
 * and the rest is accepted. */
static void test_data_flow_control(void **state) {
  (void)state;
  struct tclient *t = h2_open();
  enum { TOTAL = 100000, WINDOW = 65535, FRAME = 16384 };
  static const char *const extra[] = {"content-length", "100000"};
  put_headers(t, 1, false, "POST", "/up/body", extra, 1);
  static char payload[FRAME];
  memset(payload, 'b', sizeof(payload));
  size_t sent = 0;
  while (sent < WINDOW) {
    size_t n = WINDOW - sent < FRAME ? WINDOW - sent : FRAME;
    put_frame(t, NGHTTP2_DATA, 0, 1, payload, n);
    sent += n;
    tc_spin(t, 1);
  }
  double end = tc_now() + 2;
  while (reader.window_updates == 0 && tc_now() < end) {
    tc_pump(t);
    h2_read(t, &reader);
  }
  assert_true(reader.window_updates > 0);
  assert_int_equal(reader.status[1], 0); /* the upstream answers once the body is whole */
  while (sent < TOTAL) {
    size_t n = TOTAL - sent < FRAME ? TOTAL - sent : FRAME;
    sent += n;
    put_frame(t, NGHTTP2_DATA, sent == TOTAL ? NGHTTP2_FLAG_END_STREAM : 0, 1, payload, n);
    tc_spin(t, 2);
  }
  wait_stream(t, 1);
  expect_ok(1);
  assert_false(reader.goaway);
  h2_close(t);
}

/* The client resets a stream whose body is still coming: no answer on
 * it, and the session goes on serving the next one. */
static void test_rst_stream(void **state) {
  (void)state;
  struct tclient *t = h2_open();
  static const char *const extra[] = {"content-length", "10"};
  put_headers(t, 1, false, "POST", "/up/r", extra, 1);
  put_frame(t, NGHTTP2_DATA, 0, 1, "hello", 5);
  tc_spin(t, 8);
  static const uint8_t cancel[4] = {0, 0, 0, NGHTTP2_CANCEL};
  put_frame(t, NGHTTP2_RST_STREAM, 0, 1, cancel, sizeof(cancel));
  tc_spin(t, 8);
  put_headers(t, 3, true, "GET", "/up/next", NULL, 0);
  wait_stream(t, 3);
  expect_ok(3);
  h2_read(t, &reader);
  assert_int_equal(reader.status[1], 0);
  assert_false(reader.ended[1]);
  assert_false(reader.goaway);
  h2_close(t);
}

/* PINGs past the misbehaviour budget: GOAWAY ENHANCE_YOUR_CALM, and the
 * connection closes. The bucket (proxy/front/h2.c: H2_GLITCH_BURST = 1000
 * tokens, H2_GLITCH_RATE = 33 a second, refilled per whole second of the
 * loop's clock) grants at most 1000 + 33 x (whole seconds the flood spans)
 * frames; the opening SETTINGS took one of them. The flood goes on until
 * the GOAWAY, so a slow machine (the bucket refilling while it floods)
 * makes the test longer, not wrong. */
static void test_ping_flood_calms(void **state) {
  (void)state;
  struct tclient *t = h2_open();
  uint64_t first_s = (uint64_t)ev_now(w.loop);
  static const uint8_t opaque[8] = "pingping";
  int sent = 0;
  while (!reader.goaway && sent < 20000) {
    for (int i = 0; i < 64; i++) put_frame(t, NGHTTP2_PING, 0, 0, opaque, sizeof(opaque));
    sent += 64;
    tc_spin(t, 1);
    h2_read(t, &reader);
  }
  struct want wt = {.goaway = true};
  assert_true(tc_until(t, done_want, &wt, 2000));
  uint64_t spanned_s = (uint64_t)ev_now(w.loop) - first_s;
  assert_int_equal(reader.goaway_code, NGHTTP2_ENHANCE_YOUR_CALM);
  assert_true(reader.pings_acked >= 1);
  assert_true(reader.pings_acked <= 1000 - 1 + 33 * spanned_s);
  assert_true(tc_until(t, tc_done_eof, NULL, 2000));
  h2_close(t);
}

/* Within the budget, PINGs are answered and nothing is cut. */
static void test_pings_within_budget(void **state) {
  (void)state;
  struct tclient *t = h2_open();
  static const uint8_t opaque[8] = "pingping";
  for (int i = 0; i < 100; i++) put_frame(t, NGHTTP2_PING, 0, 0, opaque, sizeof(opaque));
  put_headers(t, 1, true, "GET", "/up/after", NULL, 0);
  wait_stream(t, 1);
  expect_ok(1);
  assert_int_equal(reader.pings_acked, 100);
  assert_false(reader.goaway);
  h2_close(t);
}

int main(void) {
  world_setup();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_preface_and_settings),
      cmocka_unit_test(test_headers_with_continuation),
      cmocka_unit_test(test_data_flow_control),
      cmocka_unit_test(test_rst_stream),
      cmocka_unit_test(test_ping_flood_calms),
      cmocka_unit_test(test_pings_within_budget),
  };
  int rv = cmocka_run_group_tests(tests, NULL, NULL);
  if (deflater) nghttp2_hd_deflate_del(deflater);
  return rv;
}
