/*
 * sluice — bandwidth pacing of one exchange. See pace.h.
 */
#include <string.h>

#include "sluice/config-t.h"
#include "core/clock.h"
#include "core/conn.h"
#include "core/container.h"
#include "core/pace.h"
#include "core/stats.h"
#include "core/worker-t.h"

#define NS 1000000000ull

/* ---- the bucket ------------------------------------------------------ */

/* ceil(n * 1e9 / rate): the time |n| bytes cost. The 128-bit product
 * cannot overflow; the quotient saturates (a charge is at most a pipe's
 * worth, far below). */
static uint64_t cost_ns(uint64_t n, uint64_t rate) {
  unsigned __int128 p = ((unsigned __int128)n * NS + rate - 1) / rate;
  return p < (UINT64_C(1) << 62) ? (uint64_t)p : UINT64_C(1) << 62; /* ~146 years */
}

uint64_t sl_byte_bucket_burst(uint64_t rate) {
  uint64_t b = rate < SL_CHUNK_SIZE ? rate : SL_CHUNK_SIZE;
  if (rate / 50 > b) b = rate / 50;
  return b ? b : 1;
}

void sl_byte_bucket_init(struct sl_byte_bucket *b, uint64_t rate, uint64_t now) {
  b->rate = rate ? rate : 1;
  b->burst = sl_byte_bucket_burst(b->rate);
  b->fill_ns = cost_ns(b->burst, b->rate);
  b->empty_at = now > b->fill_ns ? now - b->fill_ns : 0;
}

uint64_t sl_byte_bucket_avail(const struct sl_byte_bucket *b, uint64_t now) {
  if (now <= b->empty_at) return 0;
  uint64_t el = now - b->empty_at;
  if (el >= b->fill_ns) return b->burst;
  uint64_t n = (uint64_t)((unsigned __int128)el * b->rate / NS);
  return n < b->burst ? n : b->burst;
}

void sl_byte_bucket_take(struct sl_byte_bucket *b, uint64_t now, uint64_t n) {
  /* A full bucket holds no more than |burst|: idle time is not saved up. */
  if (now > b->fill_ns && b->empty_at < now - b->fill_ns) b->empty_at = now - b->fill_ns;
  b->empty_at += cost_ns(n, b->rate);
}

uint64_t sl_byte_bucket_wait_ns(const struct sl_byte_bucket *b, uint64_t now, uint64_t n) {
  uint64_t e = b->empty_at;
  if (now > b->fill_ns && e < now - b->fill_ns) e = now - b->fill_ns; /* full */
  uint64_t at = e + cost_ns(n, b->rate);
  return at > now ? at - now : 0;
}

/* ---- the exchange's pacer -------------------------------------------- */

/* More tokens exist: wake the frontend the way the other side of its pipe
 * would (the consumer drained / more bytes arrived). */
static void pace_timer_cb(struct ev_loop *loop, ev_timer *t, int revents) {
  struct sl_pace_half *h = SL_CONTAINER_OF(t, struct sl_pace_half, timer);
  struct sl_stream *s = h->s;
  (void)loop;
  (void)revents;
  if (h->dir == SL_PACE_DOWN)
    s->fe->response_body(s);
  else
    s->fe->request_body_drained(s, 0);
  sl_conn_schedule_flush(s->conn);
}

int sl_pace_start(struct sl_stream *s) {
  const struct sl_shaping_rule *r = s->adm.paced;
  struct sl_pace *p = sl_arena_alloc(&s->arena, sizeof(*p));
  if (!p) return -1;
  memset(p, 0, sizeof(*p));
  p->rule = r;
  uint64_t now = sl_now_ns();
  const struct sl_bandwidth *bw[2] = {&r->bw_down, &r->bw_up};
  for (int d = 0; d < 2; d++) {
    struct sl_pace_half *h = &p->half[d];
    h->s = s;
    h->dir = (enum sl_pace_dir)d;
    h->on = bw[d]->bytes_per_s != 0;
    sl_byte_bucket_init(&h->bucket, bw[d]->bytes_per_s, now);
    ev_init(&h->timer, pace_timer_cb);
  }
  s->pace = p;
  return 0;
}

void sl_pace_stop(struct sl_stream *s) {
  struct sl_pace *p = s->pace;
  if (!p) return;
  struct ev_loop *loop = s->conn->w->loop;
  for (int d = 0; d < 2; d++) ev_timer_stop(loop, &p->half[d].timer);
  static const char *const names[2] = {"down", "up"};
  for (int d = 0; d < 2; d++)
    if (p->half[d].on)
      sl_stats_paced(s->route->name, p->rule->label, names[d], p->half[d].bytes, p->half[d].waits);
  s->pace = NULL;
}

static uint64_t quarter_burst(const struct sl_pace_half *h) {
  return h->bucket.burst / 4 ? h->bucket.burst / 4 : 1;
}

/* Arms |h|'s timer (unless it runs) for when |n| bytes exist. */
static void pace_wait(struct sl_pace_half *h, uint64_t now, uint64_t n) {
  if (ev_is_active(&h->timer)) return;
  uint64_t ns = sl_byte_bucket_wait_ns(&h->bucket, now, n);
  ev_timer_set(&h->timer, (ev_tstamp)ns / 1e9, 0.);
  ev_timer_start(h->s->conn->w->loop, &h->timer);
  h->waits++;
}

size_t sl_pace_quota_slow(struct sl_pace_half *h, size_t want) {
  if (!h->on) return want;
  uint64_t now = sl_now_ns();
  uint64_t avail = sl_byte_bucket_avail(&h->bucket, now);
  if (avail >= want) return want;
  /* Short: wake up when a useful amount more exists (a quarter of the
   * burst, fewer syscalls and frames than a byte at a time). The caller
   * takes |avail| now: the wait counts from there. */
  uint64_t more = quarter_burst(h);
  if (more > want - avail) more = want - avail;
  pace_wait(h, now, avail + more);
  return (size_t)avail;
}

bool sl_pace_hold_slow(struct sl_pace_half *h) {
  if (!h->on) return false;
  uint64_t now = sl_now_ns();
  uint64_t q = quarter_burst(h);
  if (sl_byte_bucket_avail(&h->bucket, now) >= q) return false;
  pace_wait(h, now, q);
  return true;
}

void sl_pace_charge_slow(struct sl_pace_half *h, size_t n) {
  if (!h->on) return;
  sl_byte_bucket_take(&h->bucket, sl_now_ns(), n);
  h->bytes += n;
}
