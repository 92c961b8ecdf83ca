/*
 * sluice — bandwidth pacing of one exchange (shaping `bandwidth`).
 *
 * A request or WebSocket upgrade admitted through a shaping rule with a
 * `bandwidth` gets a pacer (s->pace, in the stream's arena): one token
 * bucket in bytes per direction. Down paces what the frontend writes to the
 * client (h1: the response body or the tunnel's bytes moved to the output
 * pipe; h2: the stream's DATA), up what it takes from the client (h1: the
 * body bytes it parses or the bytes it tunnels; h2: the stream window it
 * gives back, so the client may be one initial window ahead).
 *
 * Back-pressure, not buffering: a frontend asks sl_pace_quota() how many
 * bytes may pass now and moves no more, or (h1 uploads) stops reading once
 * sl_pace_hold() says the bandwidth is spent. The rest stays where it
 * already waits (the response pipe, whose producer stops reading the
 * origin when it fills; the client's socket, with reading paused; the h2
 * stream window, left shut), and the direction's timer wakes the
 * frontend, through its ops, once more tokens exist: down calls
 * s->fe->response_body(), up s->fe->request_body_drained(s, 0).
 *
 * Streams without a pacer pay one NULL test per call (inline below).
 */
#ifndef SLUICE_CORE_PACE_H
#define SLUICE_CORE_PACE_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/stream-t.h"

/* ---- the bucket (pure) ----------------------------------------------
 *
 * Tokens are bytes: |rate| a second, at most |burst| held. The state is
 * the instant the bucket was (or will be, in debt) empty: it holds
 * (now - empty_at) * rate / 1e9 bytes, capped at |burst|. Integer
 * arithmetic (128-bit products), rounded against the client: charges
 * round up, refills down, so a paced transfer is never faster than the
 * rate. Times are a monotonic clock in nanoseconds. */
struct sl_byte_bucket {
  uint64_t rate;     /* bytes per second, 1 .. 2^40 */
  uint64_t burst;    /* bytes, >= 1 */
  uint64_t fill_ns;  /* time to fill from empty */
  uint64_t empty_at; /* ns */
};

/* The burst for |rate|: one pipe chunk (16 KiB, one read), or one second's
 * worth when that is less; above 800 KiB/s, 20 ms worth so one wake-up per
 * loop iteration keeps up. */
uint64_t sl_byte_bucket_burst(uint64_t rate);
/* Starts full at |now|. */
void sl_byte_bucket_init(struct sl_byte_bucket *b, uint64_t rate, uint64_t now);
/* Bytes that may pass at |now| (0 .. burst). */
uint64_t sl_byte_bucket_avail(const struct sl_byte_bucket *b, uint64_t now);
/* Charges |n| bytes at |now|; more than available leaves the bucket in
 * debt (later calls see nothing until it is paid). */
void sl_byte_bucket_take(struct sl_byte_bucket *b, uint64_t now, uint64_t n);
/* Nanoseconds from |now| until |n| (<= burst) bytes are available. */
uint64_t sl_byte_bucket_wait_ns(const struct sl_byte_bucket *b, uint64_t now, uint64_t n);

/* ---- the exchange's pacer --------------------------------------------- */

enum sl_pace_dir { SL_PACE_DOWN = 0, SL_PACE_UP = 1 };

struct sl_pace_half {
  struct sl_byte_bucket bucket;
  ev_timer timer; /* armed while the direction waits for tokens */
  struct sl_stream *s;
  enum sl_pace_dir dir;
  bool on;          /* this direction has a bandwidth */
  uint64_t bytes;   /* charged, for sluice_shaping_paced_bytes_total */
  uint64_t waits;   /* times it stopped for tokens (sluice_shaping_paced_waits_total) */
};

struct sl_pace {
  const struct sl_shaping_rule *rule; /* of s->gen's configuration */
  struct sl_pace_half half[2];
};

/* Gives |s| a pacer for s->adm.paced (admitted, not NULL). Returns 0, or -1
 * on out-of-memory (the exchange must fail). */
int sl_pace_start(struct sl_stream *s);
/* Stops the timers and counts the exchange's paced bytes and waits. */
void sl_pace_stop(struct sl_stream *s);

size_t sl_pace_quota_slow(struct sl_pace_half *h, size_t want);
void sl_pace_charge_slow(struct sl_pace_half *h, size_t n);

/* How many of |want| bytes may pass |dir| now. When fewer than |want|, the
 * direction's timer is armed to wake the frontend once more may (a quarter
 * of the burst, or what is left of |want|). */
static inline size_t sl_pace_quota(struct sl_stream *s, enum sl_pace_dir dir, size_t want) {
  if (__builtin_expect(!s->pace, 1) || !want) return want;
  return sl_pace_quota_slow(&s->pace->half[dir], want);
}
bool sl_pace_hold_slow(struct sl_pace_half *h);
/* For a reader that takes what it has read and charges it after the fact
 * (an h1 upload: the bytes are in memory already, and keeping them back
 * in the read buffer would put them behind a later EOF): true when |dir|
 * has spent its bandwidth, and the caller should stop reading; the timer
 * is then armed for when a quarter of the burst exists again. Up to one
 * read passes beyond the bucket this way. */
static inline bool sl_pace_hold(struct sl_stream *s, enum sl_pace_dir dir) {
  return __builtin_expect(s->pace != NULL, 0) && sl_pace_hold_slow(&s->pace->half[dir]);
}
/* |n| bytes passed |dir| (they may exceed the quota: the bucket goes into
 * debt, e.g. for body bytes that came in one read with the head). */
static inline void sl_pace_charge(struct sl_stream *s, enum sl_pace_dir dir, size_t n) {
  if (__builtin_expect(!s->pace, 1) || !n) return;
  sl_pace_charge_slow(&s->pace->half[dir], n);
}

#endif
