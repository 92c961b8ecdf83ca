/*
 * libFuzzer driver for the HTTP/2 frontend (proxy/h2.c on libnghttp2),
 * through a real connection, as fuzz_h1.c does for HTTP/1.1.
 *
 * The world (fuzz_world.h: one worker, listener and configuration, a stub
 * upstream that answers over HTTP/1.1) is set up once. For each input a
 * socketpair is made and one end handed to sl_conn_accept(); the client
 * connection preface is written to the other end, then the input in
 * pieces, the loop runs a bounded number of EVRUN_NOWAIT iterations after
 * each piece, and what sluice answers is read and checked. So the frames
 * take the path they take in production: conn.c's reads and h2c preface
 * detection, nghttp2's session with sluice's callbacks (headers, limits,
 * the misbehaviour budget, flow control, write-progress timeouts), then
 * routing, admission and the upstream side in stream.c and upstream.c.
 *
 * Input: byte 0 is the write pattern (bits 0-5: piece size, 0 = all at
 * once; bit 6: 1 ms idle timeout, which is also the write-progress
 * timeout, expiring before the last spin of the loop; bit 7: half-close
 * after the last piece instead of closing), the rest are the frames the
 * client sends after its preface.
 *
 * Checks besides "no crash, no leak, no UB" (and the stub's check that
 * what reaches the upstream is well-formed HTTP/1.1): what sluice answers
 * is a well-formed HTTP/2 frame sequence (RFC 9113 §3.4, §4.1): it opens
 * with SETTINGS, no frame is longer than the default SETTINGS_MAX_FRAME_SIZE,
 * only known frame types, no server push (no frame on an even stream),
 * and every header block decodes with HPACK (RFC 7541) and starts with a
 * 3-digit :status.
 */
#define FUZZ_NAME "fuzz_h2"
#include "fuzz_world.h"

#include <nghttp2/nghttp2.h>

static bool verbose; /* FUZZ_H2_VERBOSE=1: frame headers sluice sends, on stderr */

static const char h2_preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/* ---- the client: what sluice answers ------------------------------- */

#define FRAME_MAX 16384 /* SETTINGS_MAX_FRAME_SIZE's initial value */

struct client {
  int fd;
  uint8_t buf[9 + FRAME_MAX]; /* one incomplete frame at most */
  size_t len;
  size_t n_frames;
  bool in_block;          /* a header block continues (no END_HEADERS yet) */
  int32_t block_sid;
  bool want_status;       /* the block's first field is still to come */
  nghttp2_hd_inflater *inflater;
};

/* Decodes |n| bytes of a header block; |final| on END_HEADERS. */
static void client_inflate(struct client *cl, const uint8_t *p, size_t n, bool final) {
  for (;;) {
    nghttp2_nv nv;
    int flags = 0;
    ssize_t r = nghttp2_hd_inflate_hd2(cl->inflater, &nv, &flags, p, n, final);
    check(r >= 0, "sluice's header blocks decode with HPACK");
    p += r;
    n -= (size_t)r;
    if (flags & NGHTTP2_HD_INFLATE_EMIT) {
      if (cl->want_status) {
        check(nv.namelen == 7 && !memcmp(nv.name, ":status", 7) && nv.valuelen == 3 &&
                  nv.value[0] >= '1' && nv.value[0] <= '9',
              "a response header block starts with a 3-digit :status");
        cl->want_status = false;
      }
    }
    if (flags & NGHTTP2_HD_INFLATE_FINAL) {
      nghttp2_hd_inflate_end_headers(cl->inflater);
      break;
    }
    if (r == 0 && !(flags & NGHTTP2_HD_INFLATE_EMIT)) break;
  }
}

static void client_frame(struct client *cl, uint8_t type, uint8_t flags, int32_t sid,
                         const uint8_t *p, size_t n) {
  if (verbose) fprintf(stderr, "fuzz_h2: frame type %u flags 0x%02x stream %d length %zu\n",
                       type, flags, sid, n);
  check(cl->n_frames++ > 0 || (type == NGHTTP2_SETTINGS && !(flags & NGHTTP2_FLAG_ACK)),
        "sluice's connection preface is a SETTINGS frame");
  check(type <= NGHTTP2_CONTINUATION, "sluice sends only frame types of RFC 9113");
  check(type != NGHTTP2_PUSH_PROMISE && (sid == 0 || (sid & 1)), "sluice never pushes");
  check(!cl->in_block || (type == NGHTTP2_CONTINUATION && sid == cl->block_sid),
        "a header block is continued at once, on its stream");
  switch (type) {
  case NGHTTP2_HEADERS: {
    check(sid != 0, "HEADERS on a stream");
    size_t skip = 0, pad = 0;
    if (flags & NGHTTP2_FLAG_PADDED) {
      check(n >= 1, "padded HEADERS has its pad length");
      pad = p[0];
      skip = 1;
    }
    if (flags & NGHTTP2_FLAG_PRIORITY) skip += 5;
    check(skip + pad <= n, "HEADERS padding and priority fit the frame");
    cl->want_status = true;
    cl->block_sid = sid;
    cl->in_block = !(flags & NGHTTP2_FLAG_END_HEADERS);
    client_inflate(cl, p + skip, n - skip - pad, !cl->in_block);
    break;
  }
  case NGHTTP2_CONTINUATION:
    check(cl->in_block, "CONTINUATION only inside a header block");
    cl->in_block = !(flags & NGHTTP2_FLAG_END_HEADERS);
    client_inflate(cl, p, n, !cl->in_block);
    break;
  case NGHTTP2_DATA:
  case NGHTTP2_RST_STREAM:
    check(sid != 0, "DATA and RST_STREAM on a stream");
    check(type != NGHTTP2_RST_STREAM || n == 4, "RST_STREAM is 4 bytes");
    break;
  case NGHTTP2_SETTINGS:
  case NGHTTP2_PING:
  case NGHTTP2_GOAWAY:
    check(sid == 0, "SETTINGS, PING and GOAWAY on stream 0");
    check(type != NGHTTP2_SETTINGS || n % 6 == 0, "SETTINGS is a list of 6-byte entries");
    check(type != NGHTTP2_PING || n == 8, "PING is 8 bytes");
    check(type != NGHTTP2_GOAWAY || n >= 8, "GOAWAY has a last stream id and a code");
    break;
  case NGHTTP2_WINDOW_UPDATE:
    check(n == 4, "WINDOW_UPDATE is 4 bytes");
    break;
  default:
    break;
  }
}

static void client_feed(struct client *cl, const uint8_t *p, size_t n) {
  while (n > 0) {
    size_t take = sizeof(cl->buf) - cl->len;
    if (take > n) take = n;
    memcpy(cl->buf + cl->len, p, take);
    cl->len += take;
    p += take;
    n -= take;
    size_t off = 0;
    while (cl->len - off >= 9) {
      const uint8_t *h = cl->buf + off;
      size_t flen = (size_t)h[0] << 16 | (size_t)h[1] << 8 | h[2];
      check(flen <= FRAME_MAX, "sluice's frames fit the default SETTINGS_MAX_FRAME_SIZE");
      if (cl->len - off < 9 + flen) break;
      int32_t sid = (int32_t)(((uint32_t)h[5] << 24 | (uint32_t)h[6] << 16 |
                               (uint32_t)h[7] << 8 | h[8]) & 0x7fffffffu);
      client_frame(cl, h[3], h[4], sid, h + 9, flen);
      off += 9 + flen;
    }
    memmove(cl->buf, cl->buf + off, cl->len - off);
    cl->len -= off;
  }
}

static void client_drain(struct client *cl) {
  uint8_t buf[16384];
  if (cl->fd < 0) return;
  for (;;) {
    ssize_t r = read(cl->fd, buf, sizeof(buf));
    if (r <= 0) return;
    client_feed(cl, buf, (size_t)r);
  }
}

/* ---- one input ---------------------------------------------------- */

static void spin(struct client *cl, int max_iter) {
  for (int i = 0; i < max_iter; i++) {
    ev_run(w.loop, EVRUN_NOWAIT);
    client_drain(cl);
  }
}

/* Writes |n| bytes in pieces of |piece|, spinning after each; stops early
 * if sluice closed the connection. */
static void client_write(struct client *cl, const uint8_t *p, size_t n, size_t piece) {
  size_t off = 0;
  while (off < n) {
    size_t k = n - off < piece ? n - off : piece;
    ssize_t r = write(cl->fd, p + off, k);
    if (r < 0 && errno != EAGAIN) return; /* sluice closed on us */
    if (r > 0) off += (size_t)r;
    spin(cl, 4);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!w.loop) {
    world_setup();
    verbose = getenv("FUZZ_H2_VERBOSE") != NULL;
  }
  if (size < 1) return 0;
  size_t piece = data[0] & 0x3f;
  bool expire = data[0] & 0x40, half_close = data[0] & 0x80;
  data++;
  size--;
  if (piece == 0) piece = size ? size : 1;

  static struct client cl;
  memset(&cl, 0, sizeof(cl));
  if (nghttp2_hd_inflate_new(&cl.inflater) != 0) abort();
  cl.fd = world_accept(expire);
  client_write(&cl, (const uint8_t *)h2_preface, sizeof(h2_preface) - 1,
               sizeof(h2_preface) - 1);
  client_write(&cl, data, size, piece);
  if (half_close) shutdown(cl.fd, SHUT_WR);
  spin(&cl, 16);
  if (expire) {
    usleep(2000); /* past every 1 ms deadline: the timers fire */
    spin(&cl, 8);
    usleep(2000); /* stalled streams reset, then the idle timeout */
    spin(&cl, 8);
  }

  close(cl.fd);
  cl.fd = -1;
  spin(&cl, 2);
  world_teardown();
  nghttp2_hd_inflate_del(cl.inflater);
  return 0;
}
