/*
 * sluice — WebSocket helpers. See ws.h.
 */
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <string.h>

#include "front/ws.h"

/* Frame header length once its first two bytes are known (RFC 6455
 * §5.2): 2, plus 2 or 8 extended length bytes, plus 4 mask bytes. */
static uint8_t header_len(const uint8_t *h) {
  uint8_t len7 = h[1] & 0x7f;
  uint8_t n = 2;
  if (len7 == 126) n += 2;
  else if (len7 == 127) n += 8;
  if (h[1] & 0x80) n += 4;
  return n;
}

static uint64_t payload_len(const uint8_t *h) {
  uint8_t len7 = h[1] & 0x7f;
  if (len7 < 126) return len7;
  if (len7 == 126) return ((uint64_t)h[2] << 8) | h[3];
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v = (v << 8) | h[2 + i];
  return v;
}

void sl_ws_track(struct sl_ws_tracker *t, const uint8_t *p, size_t n) {
  while (n > 0 && !t->broken) {
    if (t->payload_left > 0) {
      uint64_t skip = t->payload_left < n ? t->payload_left : n;
      t->payload_left -= skip;
      p += skip;
      n -= (size_t)skip;
      continue;
    }
    t->hdr[t->hdr_len++] = *p++;
    n--;
    if (t->hdr_len < 2) continue;
    uint8_t need = header_len(t->hdr);
    if (t->hdr_len < need) continue;
    uint64_t len = payload_len(t->hdr);
    /* The most significant bit of a 64-bit length must be 0 (§5.2). */
    if ((t->hdr[1] & 0x7f) == 127 && (t->hdr[2] & 0x80)) {
      t->broken = true;
      return;
    }
    t->payload_left = len;
    t->hdr_len = 0;
  }
}

size_t sl_ws_close_frame(uint8_t *out, uint16_t code, const char *reason, const uint8_t *mask) {
  size_t rlen = reason ? strlen(reason) : 0;
  if (rlen > 123) {
    /* Control frames carry at most 125 bytes, and the reason must stay
     * valid UTF-8 (RFC 6455 §5.5, §5.5.1): cut before the character that
     * straddles byte 123, never inside it. */
    rlen = 123;
    while (rlen > 0 && ((unsigned char)reason[rlen] & 0xc0) == 0x80) rlen--;
  }
  size_t plen = 2 + rlen;
  size_t i = 0;
  out[i++] = 0x88; /* FIN + opcode close */
  out[i++] = (uint8_t)((mask ? 0x80 : 0) | plen);
  uint8_t *payload;
  if (mask) {
    memcpy(out + i, mask, 4);
    i += 4;
  }
  payload = out + i;
  payload[0] = (uint8_t)(code >> 8);
  payload[1] = (uint8_t)(code & 0xff);
  if (rlen) memcpy(payload + 2, reason, rlen);
  if (mask)
    for (size_t k = 0; k < plen; k++) payload[k] ^= mask[k & 3];
  return i + plen;
}

void sl_ws_accept(const char *key, size_t key_len, char out[29]) {
  static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  unsigned char digest[SHA_DIGEST_LENGTH];
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  unsigned int dlen = 0;
  if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) != 1 ||
      EVP_DigestUpdate(ctx, key, key_len) != 1 ||
      EVP_DigestUpdate(ctx, guid, sizeof(guid) - 1) != 1 ||
      EVP_DigestFinal_ex(ctx, digest, &dlen) != 1) {
    out[0] = '\0';
    EVP_MD_CTX_free(ctx);
    return;
  }
  EVP_MD_CTX_free(ctx);
  EVP_EncodeBlock((unsigned char *)out, digest, SHA_DIGEST_LENGTH);
}

int sl_ws_new_key(char out[25]) {
  unsigned char raw[16];
  if (RAND_bytes(raw, sizeof(raw)) != 1) return -1;
  EVP_EncodeBlock((unsigned char *)out, raw, sizeof(raw));
  return 0;
}

bool sl_ws_key_valid(const char *key, size_t len) {
  if (len != 24 || key[22] != '=' || key[23] != '=') return false;
  for (size_t i = 0; i < 22; i++) {
    char c = key[i];
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
          c == '+' || c == '/'))
      return false;
  }
  return true;
}
