/*
 * sluice — idle HTTP/2 sessions put to sleep: their nghttp2 session freed
 * and rebuilt when the client speaks again.
 *
 * An idle nghttp2 server session holds about 25 KiB of heap (the session
 * struct, the stream map, both HPACK ring buffers and a 16 KiB outbound
 * frame buffer), about 14 KiB of it resident: the bulk of an idle h2
 * connection's cost, and of an idle WebSocket tunnel's over h2. HAProxy's
 * idle h2 connections hold no buffer at all.
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
 * A session that has carried streams is described by those numbers plus
 * the header blocks the client sent: replayed verbatim into the fresh
 * session, they rebuild its HPACK decoder's table byte for byte (the same
 * input, in the same order, under the same table size) and its stream
 * ids. The frame tracker keeps them (whole HEADERS and CONTINUATION
 * frames, at most SL_H2_CAPTURE_MAX bytes, in per-thread slabs; trailers
 * or more than that end
 * the capture, and such a session stays awake as before). The HPACK
 * encoder needs nothing: a fresh one only refers to entries it inserted
 * itself, which sit at the same indexes in the client's decoder (newest
 * first, the older ones behind them evicted first). Streams still open
 * (idle WebSocket tunnels, see h2.c) are rebuilt by the caller on top:
 * their response head submitted again and sent nowhere, their windows set
 * back to what they were (sl_h2_replay_window_update, and DATA sent
 * nowhere for a window the client had not given back yet).
 *
 * What is not described keeps a session awake: a frame half read, output
 * queued, our SETTINGS not acknowledged, a GOAWAY, a stream that is not an
 * idle tunnel.
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

/* The header frames kept for a replay, at most (one WebSocket CONNECT
 * takes 100 to 300 bytes; a client that keeps sending requests on the
 * connection passes it after a few, and its session stays awake). */
#define SL_H2_CAPTURE_MAX 1024

/* Frame boundaries of the client's byte stream: starts inside the 24-byte
 * client preface. And its header frames, kept for a replay. */
struct sl_h2_frames {
  uint32_t skip;    /* bytes of the preface or of a frame payload still to come */
  uint8_t hdr_have; /* bytes of the next frame header seen (0..8) */
  uint8_t hdr[9];   /* the frame header, as it arrives */
  bool capturing;   /* the payload passing now is kept */
  bool capture_off; /* the header blocks can no longer be replayed */
  uint16_t cap_len;
  int32_t cap_last_sid; /* stream id of the last request's HEADERS */
  uint8_t *cap;         /* whole HEADERS and CONTINUATION frames (malloc) */
};

void sl_h2_frames_init(struct sl_h2_frames *t);
/* Follows |len| more bytes the session consumed. */
void sl_h2_frames_feed(struct sl_h2_frames *t, const uint8_t *p, size_t len);
void sl_h2_frames_free(struct sl_h2_frames *t);
/* Frees the calling thread's blocks of kept header frames (worker exit,
 * after every connection was freed; tests). */
void sl_h2_frames_cache_drain(void);
/* The header blocks kept (one per request the client opened). */
uint32_t sl_h2_frames_blocks(const struct sl_h2_frames *t);
/* True when every header block the client sent is kept. */
static inline bool sl_h2_frames_replayable(const struct sl_h2_frames *t) {
  return !t->capture_off;
}

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

/* True when |s| may sleep: nothing queued, no GOAWAY either way, no DATA
 * received without a WINDOW_UPDATE for it, and a send window at least the
 * initial one once |window_owed| is added (a smaller one could not be
 * rebuilt). A session that carried streams needs |replayable| (its
 * header blocks kept, sl_h2_frames_replayable); one that never did, both
 * HPACK tables empty. The caller adds what only it knows: our SETTINGS
 * acknowledged, no frame half read, no byte waiting in its own buffers,
 * every open stream one it can rebuild. */
bool sl_h2_sleep_possible(nghttp2_session *s, bool replayable, int64_t window_owed);
/* Records what |z| must keep of |s| (call only if sl_h2_sleep_possible),
 * with |window_owed| more connection window for the replay to take back
 * (DATA sent nowhere on rebuilt streams). */
void sl_h2_sleep_save(nghttp2_session *s, struct sl_h2_sleep *z, int64_t window_owed);
/* |s| is a fresh server session with our SETTINGS and receive window
 * submitted: discards its first flight, feeds it the client's side of
 * the handshake recorded in |z|, and discards its answers. The caller's
 * callbacks see these frames and must ignore them (a flag it sets around
 * the call). Returns 0, or a nghttp2 error code. */
int sl_h2_sleep_wake(nghttp2_session *s, const struct sl_h2_sleep *z);
/* Then, one at a time, the header blocks kept in |t| (a HEADERS frame and
 * its CONTINUATIONs): feeds the one at *|off| (0 for the first) and moves
 * *|off| past it; *|sid| is its stream id, 0 once none is left. The
 * caller resets the streams it does not rebuild after each, so that the
 * replay never holds more open streams than the client has. Returns 0, or
 * a nghttp2 error code. */
int sl_h2_replay_block(nghttp2_session *s, const struct sl_h2_frames *t, size_t *off,
                       int32_t *sid);
/* Feeds |s| a WINDOW_UPDATE from the client for stream |sid| (0: the
 * connection) of |inc| (1..2^31-1). Returns 0, or a nghttp2 error code. */
int sl_h2_replay_window_update(nghttp2_session *s, int32_t sid, uint32_t inc);
/* Sends |s|'s queued frames nowhere. Returns 0, or a nghttp2 error code. */
int sl_h2_discard_output(nghttp2_session *s);

#endif
