/*
 * sluice — TLS session ticket keys of listeners (front/tls_tickets.c): one
 * process-wide random key, or the keys of `tls.ticket_keys_file`.
 */
#ifndef SLUICE_FRONT_TLS_TICKETS_H
#define SLUICE_FRONT_TLS_TICKETS_H

#include <stdbool.h>
#include <stddef.h>
#include <openssl/ssl.h>

#define SL_TICKET_KEYS_MAX 8

struct sl_ticket_keys;

/* Reads a key file (see tls_tickets.c for the format). NULL with
 * "PATH:LINE: what is wrong" in |err| when it cannot be used. */
struct sl_ticket_keys *sl_ticket_keys_load(const char *path, char *err, size_t errlen);
/* Wipes and frees |k| (NULL: nothing). */
void sl_ticket_keys_free(struct sl_ticket_keys *k);
size_t sl_ticket_keys_count(const struct sl_ticket_keys *k);

/* Makes |ctx| issue and accept tickets under |k| (owned by |ctx| from
 * here, freed with it, also on failure), or under the process's own
 * random key when |k| is NULL. false: OpenSSL could not set it up. */
bool sl_ticket_keys_install(SSL_CTX *ctx, struct sl_ticket_keys *k);

#endif
