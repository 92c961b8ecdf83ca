/*
 * sluice — WebSocket helpers for tunnels (RFC 6455), pure functions.
 *
 * sluice never parses WebSocket payloads. To inject a close frame into the
 * upstream-to-client byte stream it only needs to know where frames begin:
 * sl_ws_tracker follows frame headers as bytes pass and skips payloads by
 * their declared length.
 */
#ifndef SLUICE_PROXY_WS_H
#define SLUICE_PROXY_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Tracks frame boundaries in one direction of a WebSocket stream. */
struct sl_ws_tracker {
  uint64_t payload_left; /* payload bytes still to skip */
  uint8_t hdr[14];       /* a frame header being collected */
  uint8_t hdr_len;       /* bytes of it seen so far */
  bool broken;           /* an impossible header: stop tracking */
};

/* Feeds |n| bytes that passed in this direction. */
void sl_ws_track(struct sl_ws_tracker *t, const uint8_t *p, size_t n);
/* True when the next byte would start a new frame. */
static inline bool sl_ws_at_boundary(const struct sl_ws_tracker *t) {
  return !t->broken && t->payload_left == 0 && t->hdr_len == 0;
}

/* Writes a close frame with |code| and |reason| (truncated to fit the
 * 125-byte control payload) to |out| (>= 131 bytes). |mask| non-NULL
 * masks it (client-to-server frames must be masked, RFC 6455 §5.3).
 * Returns the frame length. */
size_t sl_ws_close_frame(uint8_t *out, uint16_t code, const char *reason, const uint8_t *mask);

/* Sec-WebSocket-Accept for |key| (RFC 6455 §4.2.2): base64(SHA-1(key +
 * GUID)). |out| gets 28 characters and a NUL. */
void sl_ws_accept(const char *key, size_t key_len, char out[29]);

/* A fresh Sec-WebSocket-Key: base64 of 16 random bytes (24 chars + NUL).
 * Returns -1 if the random source fails. */
int sl_ws_new_key(char out[25]);

/* True if |key| is base64 of exactly 16 bytes (RFC 6455 §4.1). */
bool sl_ws_key_valid(const char *key, size_t len);

#endif
