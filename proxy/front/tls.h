/*
 * sluice — TLS contexts of listeners (front/tls.c).
 */
#ifndef SLUICE_FRONT_TLS_H
#define SLUICE_FRONT_TLS_H

#include <stddef.h>
#include <sys/types.h>
#include <openssl/ssl.h>

#include "sluice/config-t.h"

/* TLS 1.3 suites when a listener sets no tls.ciphersuites (see tls.c). */
#define SL_TLS_DEFAULT_CIPHERSUITES \
  "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384"

/* A server context for listener |o|'s tls: certificate and key (PEM
 * paths), session ticket keys (tls.ticket_keys_file; NULL: the process's
 * own key), TLS 1.3 suites and groups. NULL with the reason in |err|. */
SSL_CTX *sl_tls_ctx_new(const struct sl_listener_cfg *o, char *err, size_t errlen);
/* SSL_read / SSL_write in the transport convention (core/io.h). */
ssize_t sl_tls_read(SSL *ssl, void *buf, size_t len);
ssize_t sl_tls_write(SSL *ssl, const void *buf, size_t len);

#endif
