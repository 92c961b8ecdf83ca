/*
 * sluice — TLS server contexts: TLS 1.2+, ALPN h2 then http/1.1, session
 * tickets on (keys: front/tls_tickets.c), ECDSA or RSA certificates.
 */
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <string.h>

#include "front/front.h"
#include "front/tls.h"
#include "front/tls_tickets.h"
#include "core/io.h"

/* ALPN (RFC 7301): the frontends' ids in the order of their table (h2,
 * then http/1.1); a client offering none of them gets no ALPN and speaks
 * the default frontend's protocol (HTTP/1.1). */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg) {
  (void)ssl;
  (void)arg;
  size_t n;
  const unsigned char *ours = sl_frontend_alpn_wire(&n);
  unsigned char *sel = NULL;
  if (SSL_select_next_proto(&sel, outlen, ours, (unsigned)n, in, inlen) !=
      OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_NOACK;
  *out = sel;
  return SSL_TLSEXT_ERR_OK;
}

static void tls_err(char *err, size_t errlen, const char *what, const char *path) {
  char ossl[256] = "";
  unsigned long e = ERR_get_error();
  if (e) ERR_error_string_n(e, ossl, sizeof(ossl));
  snprintf(err, errlen, "%s %s: %s", what, path, ossl[0] ? ossl : "failed");
  ERR_clear_error();
}

SSL_CTX *sl_tls_ctx_new(const struct sl_listener_cfg *o, char *err, size_t errlen) {
  const char *cert = o->tls_certificate, *key = o->tls_private_key;
  const char *ticket_keys = o->tls_ticket_keys;
  struct sl_ticket_keys *tk = NULL;
  if (ticket_keys && !(tk = sl_ticket_keys_load(ticket_keys, err, errlen))) return NULL;
  SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
  if (!ctx) {
    sl_ticket_keys_free(tk);
    tls_err(err, errlen, "cannot create TLS context", "");
    return NULL;
  }
  /* Tickets under keys every worker (and, with a key file, every replica)
   * shares; a reload or certificate rotation keeps them valid. */
  if (!sl_ticket_keys_install(ctx, tk)) {
    tls_err(err, errlen, "cannot set up session ticket keys", ticket_keys ? ticket_keys : "");
    goto fail;
  }
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                               SSL_OP_NO_COMPRESSION);
  /* Idle connections give their TLS buffers back (memory per idle
   * tunnel); writes may complete partially and resume from the same
   * chunk. */
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                            SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  /* RFC 9113 §9.2.2 forbids the TLS 1.2 cipher suites on its blocklist
   * for h2: offer AEAD suites with forward secrecy only. */
  SSL_CTX_set_cipher_list(ctx, "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL:!SHA1:!SHA256:!SHA384");
  /* TLS 1.3 suites in our order, not the client's: AES-128-GCM-SHA256
   * first, because its transcript hash and key schedule run on SHA-256,
   * which this class of CPU does in hardware (SHA-NI), where SHA-384 is
   * software: 3.5% fewer instructions per full handshake than OpenSSL's
   * default order, AES-256-GCM-SHA384 first (callgrind, ECDSA P-256). */
  const char *suites = o->tls_ciphersuites ? o->tls_ciphersuites : SL_TLS_DEFAULT_CIPHERSUITES;
  if (SSL_CTX_set_ciphersuites(ctx, suites) != 1) {
    tls_err(err, errlen, "bad tls.ciphersuites", suites);
    goto fail;
  }
  if (o->tls_groups && SSL_CTX_set1_groups_list(ctx, o->tls_groups) != 1) {
    tls_err(err, errlen, "bad tls.groups", o->tls_groups);
    goto fail;
  }
  /* One TLS 1.3 ticket per full handshake, not OpenSSL's two: a device
   * resumes with one, and each ticket is a session serialised, encrypted
   * and written (3.9% of a handshake's CPU in a perf profile). */
  SSL_CTX_set_num_tickets(ctx, 1);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
  SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"sluice", 6);
  if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
    tls_err(err, errlen, "cannot load certificate", cert);
    goto fail;
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
    tls_err(err, errlen, "cannot load private key", key);
    goto fail;
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    tls_err(err, errlen, "private key does not match certificate", key);
    goto fail;
  }
  SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
  return ctx;
fail:
  SSL_CTX_free(ctx);
  return NULL;
}

/* SSL_get_error in the transport convention: the library wants the
 * socket readable or writable (a renegotiation-free TLS 1.3 key update
 * may want either way), the peer's close_notify, or a fatal failure. */
static ssize_t tls_result(SSL *ssl, int rv) {
  switch (SSL_get_error(ssl, rv)) {
  case SSL_ERROR_WANT_READ:
  case SSL_ERROR_WANT_WRITE:
    return SL_IO_AGAIN;
  case SSL_ERROR_ZERO_RETURN:
    return SL_IO_EOF;
  default:
    return SL_IO_ERROR;
  }
}

ssize_t sl_tls_read(SSL *ssl, void *buf, size_t len) {
  ERR_clear_error();
  int n = SSL_read(ssl, buf, (int)len);
  return n > 0 ? n : tls_result(ssl, n);
}

ssize_t sl_tls_write(SSL *ssl, const void *buf, size_t len) {
  ERR_clear_error();
  int n = SSL_write(ssl, buf, (int)len);
  return n > 0 ? n : tls_result(ssl, n);
}
