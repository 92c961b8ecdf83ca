/*
 * sluice — idle HTTP/2 sessions put to sleep: their nghttp2 session freed
 * and rebuilt when the client speaks again.
 *
 * An idle nghttp2 server session holds about 25 KiB of heap (the session
 * struct, the stream map, both HPACK ring buffers and a 16 KiB outbound
 * frame buffer), about 14 KiB of it resident: the bulk of an idle h2
 * connection's cost. HAProxy's idle h2 connections hold no buffer at all.
 * A session that has carried no stream yet and has nothing queued is
 * fully described by a few numbers: the client's SETTINGS and its
 * connection-level send window (our own SETTINGS and receive window are
 * the listener's). Sleeping keeps those (struct sl_h2_sleep) and frees the
 * session; waking builds a fresh one, lets it send its first flight into
 * nothing, and feeds it the client's preface, SETTINGS, the ACK of ours
 * and a WINDOW_UPDATE for the extra window, then drops its answers: the
 * new session is in the state the old one was in, and the client cannot
 * tell.
 *
 * What is not described by those numbers keeps a session awake: a stream
 * ever opened (HPACK tables, stream ids, closed-stream frames), a frame
 * half read, output queued, our SETTINGS not acknowledged, a GOAWAY.
 *
 * The frame tracker (sl_h2_frames) follows frame boundaries of what
 * nghttp2 consumed, so that a session is never put to sleep with half a
 * frame inside it.
 */
#ifndef SLUICE_FRONT_H2SLEEP_H
#define SLUICE_FRONT_H2SLEEP_H

#include <nghttp2/nghttp2.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Frame boundaries of the client's byte stream: starts inside the 24-byte
 * client preface. */
struct sl_h2_frames {
  uint32_t skip;    /* bytes of the preface or of a frame payload still to come */
  uint8_t hdr_have; /* bytes of the next frame header seen (0..8) */
  uint8_t len[3];   /* its 24-bit length, as it arrives */
};

void sl_h2_frames_init(struct sl_h2_frames *t);
/* Follows |len| more bytes the session consumed. */
void sl_h2_frames_feed(struct sl_h2_frames *t, const uint8_t *p, size_t len);
static inline bool sl_h2_frames_at_boundary(const struct sl_h2_frames *t) {
  return t->skip == 0 && t->hdr_have == 0;
}

/* Settings ids 1..9 (RFC 9113 §6.5.2, RFC 8441 §3, RFC 9218 §2.1). */
#define SL_H2_SLEEP_SETTINGS 9

/* What a sleeping session keeps. */
struct sl_h2_sleep {
  uint32_t remote[SL_H2_SLEEP_SETTINGS]; /* the client's settings, by id - 1 */
  /* Ours, as the client acknowledged them (a reload may have changed the
   * listener's since): the few sluice sets, see h2.c h2_session_open. */
  uint32_t local_streams, local_window, local_header_list;
  int32_t remote_window;                 /* our connection-level send window */
};

/* True when |s| may sleep: no stream ever opened, nothing queued, no
 * GOAWAY either way, both HPACK tables empty, no unacknowledged DATA, and
 * a send window at least the initial one (a smaller one could not be
 * rebuilt). The caller adds what only it knows: our SETTINGS acknowledged,
 * no frame half read, no byte waiting in its own buffers. */
bool sl_h2_sleep_possible(nghttp2_session *s);
/* Records what |z| must keep of |s| (call only if sl_h2_sleep_possible). */
void sl_h2_sleep_save(nghttp2_session *s, struct sl_h2_sleep *z);
/* |s| is a fresh server session with our SETTINGS and receive window
 * submitted: discards its first flight, feeds it the client's side of
 * the handshake recorded in |z|, and discards its answers. The caller's
 * callbacks see these frames and must ignore them (a flag it sets around
 * the call). Returns 0, or a nghttp2 error code. */
int sl_h2_sleep_wake(nghttp2_session *s, const struct sl_h2_sleep *z);

#endif
