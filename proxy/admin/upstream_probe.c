/*
 * sluice — upstream reachability for readiness. See upstream_probe.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ev.h>

#include "sluice/config-t.h"
#include "sluice/log.h"
#include "admin/upstream_probe.h"
#include "core/gen.h"

/* One upstream's state, by name and address (a reload may move it). */
struct probe {
  char *name;
  struct sockaddr_storage ss;
  socklen_t len;
  bool up, checked;
  int fd;           /* a check in progress, or -1 */
  ev_io io;
  ev_tstamp deadline;
  bool seen;        /* in the current configuration (sweep) */
};

static struct {
  struct ev_loop *loop;
  ev_timer tick;
  struct probe *p;
  size_t n, cap;
} P;

static void finish(struct probe *p, bool up) {
  if (p->fd >= 0) {
    ev_io_stop(P.loop, &p->io);
    close(p->fd);
    p->fd = -1;
  }
  if (p->checked && up == p->up) return;
  if (p->checked || !up)
    sl_log(up ? SL_LOG_INFO : SL_LOG_WARN,
           up ? "upstream reachable" : "upstream unreachable: /readyz answers 503", "upstream",
           p->name, NULL);
  p->up = up;
  p->checked = true;
}

/* Drops a check in progress without a verdict (the entry is moving). */
static void abort_check(struct probe *p) {
  if (p->fd < 0) return;
  ev_io_stop(P.loop, &p->io);
  close(p->fd);
  p->fd = -1;
}

static void on_connected(struct ev_loop *loop, ev_io *w, int revents) {
  (void)loop;
  (void)revents;
  struct probe *p = w->data;
  int err = 0;
  socklen_t el = sizeof(err);
  if (getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0) err = errno;
  finish(p, err == 0);
}

static void check(struct probe *p) {
  if (p->fd >= 0) {
    if (ev_now(P.loop) >= p->deadline) finish(p, false); /* no answer in time */
    return;
  }
  int fd = socket(p->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return; /* out of descriptors: try again next second */
  if (connect(fd, (struct sockaddr *)&p->ss, p->len) == 0) {
    close(fd);
    finish(p, true);
    return;
  }
  if (errno != EINPROGRESS) {
    close(fd);
    finish(p, false);
    return;
  }
  p->fd = fd;
  p->deadline = ev_now(P.loop) + 1.0;
  ev_io_init(&p->io, on_connected, fd, EV_WRITE);
  p->io.data = p;
  ev_io_start(P.loop, &p->io);
}

static struct probe *find(const struct sl_upstream_cfg *u) {
  for (size_t i = 0; i < P.n; i++)
    if (!strcmp(P.p[i].name, u->name) && P.p[i].len == u->address.len &&
        !memcmp(&P.p[i].ss, &u->address.ss, u->address.len))
      return &P.p[i];
  return NULL;
}

/* The probes of |g|'s upstreams, made or kept; others dropped. Entries
 * move when the array grows, so a check in progress is not carried over
 * a resize (it is simply started again). */
static void sync_to(const struct sl_gen *g) {
  const struct sl_config *cfg = g->cfg;
  for (size_t i = 0; i < P.n; i++) P.p[i].seen = false;
  for (size_t i = 0; i < cfg->n_upstreams; i++) {
    struct probe *p = find(&cfg->upstreams[i]);
    if (p) {
      p->seen = true;
      continue;
    }
    if (P.n == P.cap) {
      for (size_t j = 0; j < P.n; j++) abort_check(&P.p[j]);
      size_t cap = P.cap ? 2 * P.cap : 8;
      struct probe *np = realloc(P.p, cap * sizeof(*np));
      if (!np) return;
      P.p = np;
      P.cap = cap;
    }
    /* The same upstream moved to a new address: until its first check
     * there, it keeps the old address's verdict (a routine reload must
     * not flip /readyz). */
    const struct probe *was = NULL;
    for (size_t j = 0; j < P.n; j++)
      if (!strcmp(P.p[j].name, cfg->upstreams[i].name)) was = &P.p[j];
    bool up = was && was->up, checked = was && was->checked;
    p = &P.p[P.n];
    memset(p, 0, sizeof(*p));
    p->up = up;
    p->checked = checked;
    p->name = strdup(cfg->upstreams[i].name);
    if (!p->name) return;
    memcpy(&p->ss, &cfg->upstreams[i].address.ss, cfg->upstreams[i].address.len);
    p->len = cfg->upstreams[i].address.len;
    p->fd = -1;
    p->seen = true;
    P.n++;
  }
  size_t k = 0;
  for (size_t i = 0; i < P.n; i++) {
    if (!P.p[i].seen) {
      abort_check(&P.p[i]);
      free(P.p[i].name);
      continue;
    }
    if (k != i) abort_check(&P.p[i]); /* it moves: its watcher would point at the old place */
    P.p[k++] = P.p[i];
  }
  P.n = k;
}

static void tick(void) {
  struct sl_gen *g = sl_gen_current_ref();
  if (g->cfg->admin_readiness == SL_READINESS_UPSTREAMS) {
    sync_to(g);
    for (size_t i = 0; i < P.n; i++) check(&P.p[i]);
  }
  sl_gen_unref(g);
}

static void tick_cb(struct ev_loop *loop, ev_timer *w, int revents) {
  (void)loop;
  (void)w;
  (void)revents;
  tick();
}

void sl_upstream_probe_reloaded(void) {
  if (P.loop) tick();
}

void sl_upstream_probe_start(struct ev_loop *loop) {
  P.loop = loop;
  ev_timer_init(&P.tick, tick_cb, 0.0, 1.0);
  ev_timer_start(loop, &P.tick);
}

void sl_upstream_probe_stop(void) {
  if (!P.loop) return;
  ev_timer_stop(P.loop, &P.tick);
  for (size_t i = 0; i < P.n; i++) {
    abort_check(&P.p[i]);
    free(P.p[i].name);
  }
  free(P.p);
  memset(&P, 0, sizeof(P));
}

bool sl_upstream_probe_all_up(const struct sl_gen *g) {
  const struct sl_config *cfg = g->cfg;
  for (size_t i = 0; i < cfg->n_upstreams; i++) {
    struct probe *p = find(&cfg->upstreams[i]);
    if (!p || !p->up) return false;
  }
  return true;
}
