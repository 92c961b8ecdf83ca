/*
 * sluice — the frontends: HTTP/1.1 (h1.c) and HTTP/2 (h2.c) client
 * protocols, each an sl_proto_ops table a connection runs, chosen by
 * front/frontends.c.
 */
#ifndef SLUICE_FRONT_FRONT_H
#define SLUICE_FRONT_FRONT_H

#include "core/conn-t.h"

/* front/h1.c, front/h2.c, front/frontends.c */
extern const struct sl_proto_ops sl_h1_ops;
extern const struct sl_proto_ops sl_h2_ops;
/* Frees the calling thread's slab of h2 connection state (worker exit,
 * after every connection closed). */
void sl_h2_cache_drain(void);
/* The frontend ALPN selected (|alpn| NULL or unmatched: the default). */
const struct sl_proto_ops *sl_frontend_for_alpn(const unsigned char *alpn, size_t len);
/* The frontend the first |len| cleartext bytes select, or NULL when more
 * bytes are needed to decide. */
const struct sl_proto_ops *sl_frontend_for_preface(const char *data, size_t len);
/* The frontends' ALPN ids in the table's order of preference, in ALPN wire
 * format (a length byte before each id); static, built at first use. */
const unsigned char *sl_frontend_alpn_wire(size_t *len);

#endif
