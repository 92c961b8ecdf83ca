/*
 * sluice — the frontends: HTTP/1.1 (h1.c) and HTTP/2 (h2.c) client
 * protocols, each an sl_proto_ops table a connection runs.
 */
#ifndef SLUICE_FRONT_FRONT_H
#define SLUICE_FRONT_FRONT_H

#include "core/conn-t.h"

extern const struct sl_proto_ops sl_h1_ops;
extern const struct sl_proto_ops sl_h2_ops;
int sl_h1_start(struct sl_conn *c);
/* |tls|: started after ALPN (no client preface detection needed). */
int sl_h2_start(struct sl_conn *c);
/* h1/h2 timer expiry (the connection's one timer). */
void sl_h1_on_timeout(struct sl_conn *c);
void sl_h2_on_timeout(struct sl_conn *c);

#endif
