/*
 * sluice — TLS contexts of listeners (front/tls.c).
 */
#ifndef SLUICE_FRONT_TLS_H
#define SLUICE_FRONT_TLS_H

#include <stddef.h>
#include <sys/types.h>
#include <openssl/ssl.h>

/* A server context for |cert| and |key| (PEM paths), with the session
 * ticket keys of the file |ticket_keys| (NULL: the process's own key). */
SSL_CTX *sl_tls_ctx_new(const char *cert, const char *key, const char *ticket_keys, char *err,
                        size_t errlen);
/* SSL_read / SSL_write in the transport convention (core/io.h). */
ssize_t sl_tls_read(SSL *ssl, void *buf, size_t len);
ssize_t sl_tls_write(SSL *ssl, const void *buf, size_t len);

#endif
