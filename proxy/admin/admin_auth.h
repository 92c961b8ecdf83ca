/*
 * sluice — who may use the admin API's guarded endpoints (/config,
 * /reload, /explain): they reload, reveal the configuration and explain
 * the policies, so beyond loopback they want a bearer token.
 *
 *   token configured (admin.token_file)   "Authorization: Bearer <token>"
 *                                         or 401, wherever the address is
 *   no token, loopback address            served (the pod's own shell)
 *   no token, any other address           403 token_required
 *
 * The token is compared in constant time (digests compared with
 * CRYPTO_memcmp: neither its bytes nor its length leak). Pure: no I/O.
 */
#ifndef SLUICE_ADMIN_AUTH_H
#define SLUICE_ADMIN_AUTH_H

#include <stdbool.h>
#include <stddef.h>

#include "sluice/config-t.h"

/* 127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104. */
bool sl_sockaddr_is_loopback(const struct sl_sockaddr *a);

/* 200, 401 or 403 (see above) for a request whose Authorization value is
 * |auth| (|len| bytes; NULL: none usable), |token| the configured token
 * (NULL: none), |loopback| whether the admin listener is bound to
 * loopback. */
int sl_admin_authorize(const char *token, bool loopback, const char *auth, size_t len);

#endif
