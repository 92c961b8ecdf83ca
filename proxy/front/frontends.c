/*
 * sluice — the frontends a client connection may speak, and how one is
 * chosen: by ALPN on TLS, by the client's first bytes on cleartext (an
 * h2c prior-knowledge preface, else HTTP/1.1). conn.c asks here and then
 * calls only through the chosen struct sl_proto_ops.
 */
#include <string.h>

#include "core/conn-t.h"
#include "front/front.h"

/* The fallback (no preface, no ALPN match) is the one with no preface. */
static const struct sl_proto_ops *const frontends[] = {&sl_h2_ops, &sl_h1_ops};
#define N_FRONTENDS (sizeof(frontends) / sizeof(frontends[0]))

static const struct sl_proto_ops *frontend_default(void) {
  for (size_t i = 0; i < N_FRONTENDS; i++)
    if (!frontends[i]->preface) return frontends[i];
  return frontends[N_FRONTENDS - 1];
}

const struct sl_proto_ops *sl_frontend_for_alpn(const unsigned char *alpn, size_t len) {
  for (size_t i = 0; alpn && i < N_FRONTENDS; i++) {
    const char *id = frontends[i]->alpn;
    if (id && strlen(id) == len && memcmp(id, alpn, len) == 0) return frontends[i];
  }
  return frontend_default();
}

const struct sl_proto_ops *sl_frontend_for_preface(const char *data, size_t len) {
  bool undecided = false;
  for (size_t i = 0; i < N_FRONTENDS; i++) {
    const struct sl_proto_ops *f = frontends[i];
    if (!f->preface) continue;
    size_t cmp = len < f->preface_len ? len : f->preface_len;
    if (memcmp(data, f->preface, cmp) != 0) continue;
    if (cmp == f->preface_len) return f;
    undecided = true; /* a prefix of this preface so far */
  }
  return undecided ? NULL : frontend_default();
}
