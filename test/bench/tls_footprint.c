/*
 * tls_footprint — where an idle TLS connection's memory sits in OpenSSL
 * (a measurement tool for README "Idle connections"; it asserts nothing).
 *
 *   tls_footprint --cert CRT --key KEY [-n 200] [--alpn http/1.1|h2] [--top 25]
 *
 * Builds the server context exactly as a sluice listener does
 * (sl_tls_ctx_new: SSL_MODE_RELEASE_BUFFERS, one ticket, the suite order)
 * and a client context with OpenSSL's defaults, then runs N TLS
 * connections over in-memory BIO pairs: the handshake, one request and one
 * response, and a read that finds nothing more, as an idle device leaves
 * its connection. Every allocation OpenSSL makes goes through counting
 * hooks (CRYPTO_set_mem_functions) that note the side making it, so the
 * server's live blocks at the end, grouped by OpenSSL's source file and
 * line, are what one idle connection costs sluice in libssl and libcrypto.
 * The BIO pairs and the contexts are left out (the pairs stand in for a
 * socket; the contexts are per listener, not per connection). Heap
 * overhead per block (8 to 16 bytes in glibc) comes on top.
 */
#include <getopt.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/config-t.h"
#include "front/tls.h"

enum side { SIDE_OTHER, SIDE_SERVER, SIDE_CLIENT };
static enum side cur_side;

/* Live blocks: open addressing on the pointer, deletion by re-inserting
 * the rest of the run. */
#define TAB_BITS 20
#define TAB_SIZE (1u << TAB_BITS)
struct block {
  void *p;
  size_t n;
  const char *file;
  int line;
  enum side side;
};
static struct block *tab;

static size_t slot_of(const void *p) {
  return (size_t)(((uintptr_t)p >> 4) * 0x9e3779b97f4a7c15ull >> (64 - TAB_BITS));
}

static void tab_put(void *p, size_t n, const char *file, int line) {
  size_t i = slot_of(p);
  while (tab[i].p) i = (i + 1) & (TAB_SIZE - 1);
  tab[i] = (struct block){p, n, file, line, cur_side};
}

/* Takes |p|'s record off the table; *|was| (if not NULL) gets it. */
static void tab_del(void *p, struct block *was) {
  if (!p) return;
  size_t i = slot_of(p);
  while (tab[i].p && tab[i].p != p) i = (i + 1) & (TAB_SIZE - 1);
  if (!tab[i].p) return;
  if (was) *was = tab[i];
  tab[i].p = NULL;
  for (size_t j = (i + 1) & (TAB_SIZE - 1); tab[j].p; j = (j + 1) & (TAB_SIZE - 1)) {
    struct block b = tab[j];
    tab[j].p = NULL;
    size_t k = slot_of(b.p);
    while (tab[k].p) k = (k + 1) & (TAB_SIZE - 1);
    tab[k] = b;
  }
}

static void *hook_malloc(size_t n, const char *file, int line) {
  void *p = malloc(n);
  if (p) tab_put(p, n, file, line);
  return p;
}

static void *hook_realloc(void *old, size_t n, const char *file, int line) {
  struct block was = {0};
  tab_del(old, &was);
  void *p = realloc(old, n);
  if (p) {
    tab_put(p, n, file, line);
  } else if (was.p && n != 0) { /* failed: |old| is still live */
    enum side now = cur_side;
    cur_side = was.side;
    tab_put(was.p, was.n, was.file, was.line);
    cur_side = now;
  }
  return p;
}

static void hook_free(void *p, const char *file, int line) {
  (void)file;
  (void)line;
  tab_del(p, NULL);
  free(p);
}

/* Drives both handshakes to the end over the pair. */
static int handshake(SSL *srv, SSL *cli) {
  for (int i = 0; i < 64; i++) {
    cur_side = SIDE_CLIENT;
    int rc = SSL_do_handshake(cli);
    cur_side = SIDE_SERVER;
    int rs = SSL_do_handshake(srv);
    cur_side = SIDE_OTHER;
    if (rc == 1 && rs == 1) return 0;
  }
  return -1;
}

/* One request and its response, then a read of nothing on each side. */
static int exchange(SSL *srv, SSL *cli) {
  static const char req[] = "GET /poll HTTP/1.1\r\nhost: identity\r\n\r\n";
  static const char resp[] = "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
  char buf[4096];
  cur_side = SIDE_CLIENT;
  int ok = SSL_write(cli, req, sizeof(req) - 1) == (int)sizeof(req) - 1;
  cur_side = SIDE_SERVER;
  ok &= SSL_read(srv, buf, sizeof(buf)) == (int)sizeof(req) - 1;
  ok &= SSL_write(srv, resp, sizeof(resp) - 1) == (int)sizeof(resp) - 1;
  ok &= SSL_read(srv, buf, sizeof(buf)) <= 0; /* nothing more: buffers released */
  cur_side = SIDE_CLIENT;
  ok &= SSL_read(cli, buf, sizeof(buf)) > 0; /* the ticket, then the response */
  SSL_read(cli, buf, sizeof(buf));
  cur_side = SIDE_OTHER;
  return ok ? 0 : -1;
}

struct site {
  const char *file;
  int line;
  size_t bytes, blocks;
};

static int by_bytes(const void *a, const void *b) {
  const struct site *x = a, *y = b;
  return x->bytes < y->bytes ? 1 : x->bytes > y->bytes ? -1 : 0;
}

int main(int argc, char **argv) {
  if (!CRYPTO_set_mem_functions(hook_malloc, hook_realloc, hook_free)) {
    fprintf(stderr, "tls_footprint: OpenSSL already allocated: cannot hook its allocator\n");
    return 1;
  }
  tab = calloc(TAB_SIZE, sizeof(*tab));
  const char *cert = NULL, *key = NULL, *alpn = "http/1.1";
  long n = 200, top = 25;
  static const struct option opts[] = {{"cert", required_argument, NULL, 'c'},
                                       {"key", required_argument, NULL, 'k'},
                                       {"alpn", required_argument, NULL, 'a'},
                                       {"top", required_argument, NULL, 't'},
                                       {NULL, 0, NULL, 0}};
  int o;
  while ((o = getopt_long(argc, argv, "n:", opts, NULL)) != -1) {
    switch (o) {
    case 'c': cert = optarg; break;
    case 'k': key = optarg; break;
    case 'a': alpn = optarg; break;
    case 't': top = atol(optarg); break;
    case 'n': n = atol(optarg); break;
    default: return 2;
    }
  }
  size_t alpn_len = strlen(alpn);
  if (!tab || !cert || !key || n < 1 || n > 100000 || alpn_len == 0 || alpn_len > 255) {
    fprintf(stderr, "usage: tls_footprint --cert CRT --key KEY [-n 1..100000] "
                    "[--alpn http/1.1|h2] [--top K]\n");
    return 2;
  }
  struct sl_listener_cfg lc;
  memset(&lc, 0, sizeof(lc));
  lc.tls_certificate = cert;
  lc.tls_private_key = key;
  char err[512];
  SSL_CTX *sctx = sl_tls_ctx_new(&lc, err, sizeof(err));
  if (!sctx) {
    fprintf(stderr, "tls_footprint: %s\n", err);
    return 1;
  }
  SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
  unsigned char wire[256];
  wire[0] = (unsigned char)alpn_len;
  memcpy(wire + 1, alpn, alpn_len);
  SSL_CTX_set_alpn_protos(cctx, wire, (unsigned)alpn_len + 1);
  SSL **srv = calloc((size_t)n, sizeof(*srv));
  if (!srv) return 1;
  for (long i = 0; i < n; i++) {
    BIO *bs, *bc;
    if (!BIO_new_bio_pair(&bs, 0, &bc, 0)) return 1;
    cur_side = SIDE_SERVER;
    srv[i] = SSL_new(sctx);
    cur_side = SIDE_CLIENT;
    SSL *cli = SSL_new(cctx);
    cur_side = SIDE_OTHER;
    SSL_set_accept_state(srv[i]);
    SSL_set_bio(srv[i], bs, bs);
    SSL_set_connect_state(cli);
    SSL_set_bio(cli, bc, bc);
    if (handshake(srv[i], cli) != 0 || exchange(srv[i], cli) != 0) {
      fprintf(stderr, "tls_footprint: connection %ld failed\n", i);
      ERR_print_errors_fp(stderr);
      return 1;
    }
    /* The client half stays: freeing it would not change the server's. */
  }
  static struct site sites[8192];
  size_t n_sites = 0, bytes = 0, blocks = 0;
  for (size_t i = 0; i < TAB_SIZE; i++) {
    const struct block *b = &tab[i];
    if (!b->p || b->side != SIDE_SERVER) continue;
    bytes += b->n;
    blocks++;
    size_t j = 0;
    while (j < n_sites && !(sites[j].line == b->line && strcmp(sites[j].file, b->file) == 0)) j++;
    if (j == n_sites) {
      if (n_sites == sizeof(sites) / sizeof(sites[0])) continue;
      sites[n_sites++] = (struct site){b->file, b->line, 0, 0};
    }
    sites[j].bytes += b->n;
    sites[j].blocks++;
  }
  qsort(sites, n_sites, sizeof(sites[0]), by_bytes);
  printf("%s, ALPN %s, %s: %.0f bytes in %.1f blocks live per idle server connection "
         "(N = %ld)\n",
         OpenSSL_version(OPENSSL_VERSION), alpn, SSL_get_version(srv[0]), (double)bytes / n,
         (double)blocks / n, n);
  printf("%10s %8s  %s\n", "bytes", "blocks", "allocated at");
  for (size_t j = 0; j < n_sites && (long)j < top; j++)
    printf("%10.1f %8.2f  %s:%d\n", (double)sites[j].bytes / n, (double)sites[j].blocks / n,
           sites[j].file, sites[j].line);
  return 0;
}
