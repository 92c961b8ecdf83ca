/*
 * sluice — TLS contexts of listeners (proxy/tls.c).
 */
#ifndef SLUICE_FRONT_TLS_H
#define SLUICE_FRONT_TLS_H

#include <stddef.h>
#include <openssl/ssl.h>

SSL_CTX *sl_tls_ctx_new(const char *cert, const char *key, char *err, size_t errlen);

#endif
