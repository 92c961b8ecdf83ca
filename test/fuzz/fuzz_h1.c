/*
 * libFuzzer driver for the HTTP/1.1 frontend (proxy/h1.c on llhttp, built
 * with LLHTTP_STRICT_MODE like the proxy), through a real connection.
 *
 * One worker (its libev loop, flushed by an ev_prepare as worker.c does),
 * one listener and one configuration generation are set up once. For each
 * input a socketpair is made and one end handed to sl_conn_accept(); the
 * input is written to the other end in pieces, the loop runs a bounded
 * number of EVRUN_NOWAIT iterations after each piece, and what sluice
 * answers is read and checked. So the bytes take the path they take in
 * production: conn.c's reads and protocol detection (an h2c preface
 * reaches h2.c), h1.c's callbacks, header validation and limits, routing,
 * identify and admission in stream.c, and the upstream side.
 *
 * Upstreams: "live" is a stub in this process, on the same loop, that
 * parses what sluice sends it and answers every request 200 (or 101 to a
 * WebSocket upgrade, then echoes the tunnel); "dead" is a loopback port
 * nothing listens on, so dispatch there fails fast with 502.
 *
 * Input: byte 0 is the write pattern (bits 0-5: piece size, 0 = all at
 * once; bit 6: 1 ms header and idle timeouts, which expire before the
 * last spin of the loop; bit 7: half-close after the last piece instead
 * of closing), the rest is what the client sends.
 *
 * Checks besides "no crash, no leak, no UB": what sluice sends the
 * upstream parses as HTTP/1.1 requests, and what it answers an h1 client
 * as HTTP/1.1 responses, one per request, none with content for HEAD
 * (llhttp, strict, both).
 */
#define FUZZ_NAME "fuzz_h1"
#include "fuzz_world.h"

static bool verbose; /* FUZZ_H1_VERBOSE=1: what sluice answers, on stderr */

static const char h2_preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/* ---- the client ---------------------------------------------------- */

/* The client side of the oracle: the requests the input begins (llhttp,
 * strict, as sluice parses them) give the method each answer is for, and
 * what sluice writes back must parse as a sequence of HTTP/1.1 responses,
 * one per request begun, in order: 1xx interim answers, no content in an
 * answer to HEAD (RFC 9110 §9.3.2), nothing after "connection: close". */
#define MAX_REQUESTS 256

struct client {
  int fd;
  bool h2;             /* the input opened with the h2 preface: not parsed */
  bool done;           /* upgraded (tunnel bytes follow) */
  int methods[MAX_REQUESTS]; /* llhttp_method_t of each request; -1 unknown */
  size_t n_requests, n_answers;
  llhttp_t resp;
  char seen[4096];     /* the first bytes sluice answered, for the report */
  size_t seen_len;
};

static llhttp_settings_t req_settings, resp_settings;

static int req_on_message_begin(llhttp_t *p) {
  struct client *cl = p->data;
  if (cl->n_requests < MAX_REQUESTS) cl->methods[cl->n_requests] = -1;
  cl->n_requests++;
  return 0;
}

static int req_on_method_complete(llhttp_t *p) {
  struct client *cl = p->data;
  if (cl->n_requests - 1 < MAX_REQUESTS) cl->methods[cl->n_requests - 1] = p->method;
  return 0;
}

static int resp_on_headers_complete(llhttp_t *p) {
  struct client *cl = p->data;
  if (p->status_code == 101) return 2; /* a tunnel follows */
  if (p->status_code < 200) return 0;  /* interim: the request waits on */
  size_t k = cl->n_answers++;
  bool head = k < MAX_REQUESTS && k < cl->n_requests && cl->methods[k] == HTTP_HEAD;
  return head ? 1 : 0;
}

static void client_begin(struct client *cl, const uint8_t *data, size_t size) {
  cl->h2 = size >= sizeof(h2_preface) - 1 && !memcmp(data, h2_preface, sizeof(h2_preface) - 1);
  llhttp_t req;
  llhttp_init(&req, HTTP_REQUEST, &req_settings);
  req.data = cl;
  (void)llhttp_execute(&req, (const char *)data, size);
  llhttp_init(&cl->resp, HTTP_RESPONSE, &resp_settings);
  cl->resp.data = cl;
}

static void client_feed(struct client *cl, const char *p, size_t n) {
  size_t take = sizeof(cl->seen) - cl->seen_len;
  if (take > n) take = n;
  memcpy(cl->seen + cl->seen_len, p, take);
  cl->seen_len += take;
  if (cl->h2 || cl->done) return;
  llhttp_errno_t err = llhttp_execute(&cl->resp, p, n);
  if (err == HPE_PAUSED_UPGRADE) {
    cl->done = true;
    return;
  }
  if (err != HPE_OK) {
    fprintf(stderr, "fuzz_h1: sluice answered bytes llhttp rejects (%s: %s) at offset %zu:\n",
            llhttp_errno_name(err), llhttp_get_error_reason(&cl->resp),
            (size_t)(llhttp_get_error_pos(&cl->resp) - p) + (cl->seen_len - take));
    fwrite(cl->seen, 1, cl->seen_len, stderr);
    fputc('\n', stderr);
    check(0, "what sluice answers an h1 client is well-formed HTTP/1.1");
  }
}

static void client_drain(struct client *cl) {
  char buf[16384];
  if (cl->fd < 0) return;
  for (;;) {
    ssize_t r = read(cl->fd, buf, sizeof(buf));
    if (r <= 0) return;
    if (verbose) fwrite(buf, 1, (size_t)r, stderr);
    client_feed(cl, buf, (size_t)r);
  }
}

/* ---- set-up ------------------------------------------------------- */

static void setup(void) {
  world_setup();
  verbose = getenv("FUZZ_H1_VERBOSE") != NULL;
  llhttp_settings_init(&req_settings);
  req_settings.on_message_begin = req_on_message_begin;
  req_settings.on_method_complete = req_on_method_complete;
  llhttp_settings_init(&resp_settings);
  resp_settings.on_headers_complete = resp_on_headers_complete;
}

/* ---- one input ---------------------------------------------------- */

/* Runs the loop until nothing moves for a few iterations (or a bound). */
static void spin(struct client *cl, int max_iter) {
  for (int i = 0; i < max_iter; i++) {
    ev_run(w.loop, EVRUN_NOWAIT);
    client_drain(cl);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!w.loop) setup();
  if (size < 1) return 0;
  size_t piece = data[0] & 0x3f;
  bool expire = data[0] & 0x40, half_close = data[0] & 0x80;
  data++;
  size--;
  if (piece == 0) piece = size ? size : 1;

  int fd = world_accept(expire);

  static struct client cl;
  memset(&cl, 0, sizeof(cl));
  cl.fd = fd;
  client_begin(&cl, data, size);
  size_t off = 0;
  while (off < size) {
    size_t n = size - off < piece ? size - off : piece;
    ssize_t r = write(cl.fd, data + off, n);
    if (r < 0 && errno != EAGAIN) break; /* sluice closed on us */
    if (r > 0) off += (size_t)r;
    spin(&cl, 4);
  }
  if (half_close) shutdown(cl.fd, SHUT_WR);
  spin(&cl, 16);
  if (expire) {
    usleep(2000); /* past every 1 ms deadline: the timers fire */
    spin(&cl, 8);
  }

  /* The client goes away; whatever sluice still holds is torn down. */
  close(cl.fd);
  cl.fd = -1;
  spin(&cl, 2);
  world_teardown();
  return 0;
}
