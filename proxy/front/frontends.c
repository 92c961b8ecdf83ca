/*
 * sluice — the frontends a client connection may speak, and how one is
 * chosen: by ALPN on TLS, by the client's first bytes on cleartext (an
 * h2c prior-knowledge preface, else HTTP/1.1). conn.c asks here and then
 * calls only through the chosen struct sl_proto_ops.
 */
#include <pthread.h>
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

/* Built once: OpenSSL's selection points into this list, so it must
 * outlive every handshake. */
static unsigned char alpn_wire[64];
static size_t alpn_wire_len;
static pthread_once_t alpn_wire_once = PTHREAD_ONCE_INIT;

static void alpn_wire_build(void) {
  for (size_t i = 0; i < N_FRONTENDS; i++) {
    const char *id = frontends[i]->alpn;
    size_t len = id ? strlen(id) : 0;
    if (!len || len > 255 || alpn_wire_len + 1 + len > sizeof(alpn_wire)) continue;
    alpn_wire[alpn_wire_len++] = (unsigned char)len;
    memcpy(alpn_wire + alpn_wire_len, id, len);
    alpn_wire_len += len;
  }
}

const unsigned char *sl_frontend_alpn_wire(size_t *len) {
  pthread_once(&alpn_wire_once, alpn_wire_build);
  *len = alpn_wire_len;
  return alpn_wire;
}
