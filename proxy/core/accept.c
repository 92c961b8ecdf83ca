/*
 * sluice — admission of new client connections. See accept.h.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "sluice/config-t.h"
#include "sluice/identify.h"
#include "sluice/log.h"
#include "sluice/metrics.h"
#include "sluice/policy_state.h"
#include "sluice/ratelimit.h"
#include "core/accept.h"
#include "core/clock.h"
#include "core/gen.h"
#include "core/stats.h"
#include "core/worker-t.h"

const struct sl_listener_cfg *sl_accept_cfg(const struct sl_worker *w, const struct sl_listener *lis) {
  const struct sl_gen *g = w->gen;
  for (int i = 0; i < g->n_listeners && (size_t)i < g->cfg->n_listeners; i++)
    if (g->listeners[i] == lis) return &g->cfg->listeners[i];
  return NULL;
}

bool sl_accept_connect_rate(struct sl_worker *w, const struct sl_listener_cfg *lc,
                            const struct sockaddr_storage *peer) {
  const struct sl_config *cfg = w->gen->cfg;
  struct sl_ratelimit_table *t =
      lc ? sl_policy_state_ratelimit(sl_policy_set_connect_rate(w->gen->policies, lc)) : NULL;
  if (!t) return true;
  struct sl_identity id;
  sl_identify_peer(&cfg->identify, (const struct sockaddr *)peer, &id);
  struct sl_rl_verdict v;
  if (sl_ratelimit_admit(t, id.key, sizeof(id.key), lc->connect_rate.per_ip.period_ns,
                         lc->connect_rate.burst, sl_now_ns(), &v))
    return true;
  char policy[SL_POLICY_NAME_MAX], ip[64] = "";
  snprintf(policy, sizeof(policy), "%s/connect_rate", lc->name);
  sl_identify_format_addr(&id, ip, sizeof(ip));
  bool shadow = lc->connect_rate.mode == SL_MODE_SHADOW ||
                (lc->connect_rate.mode == SL_MODE_INHERIT && cfg->mode == SL_MODE_SHADOW);
  sl_stats_rejection(w, "-", policy, SL_REASON_CONNECT_RATE, shadow,
                     &(struct sl_stats_who){.client_ip = ip});
  return shadow;
}

bool sl_accept_proxy_trusted(const struct sl_listener_cfg *lc, const struct sockaddr_storage *peer) {
  if (peer->ss_family == AF_INET) {
    const struct sockaddr_in *s4 = (const struct sockaddr_in *)peer;
    return sl_cidr_match(lc->proxy_protocol.trusted, lc->proxy_protocol.n_trusted, AF_INET,
                         (const uint8_t *)&s4->sin_addr.s_addr);
  }
  if (peer->ss_family != AF_INET6) return false;
  const struct in6_addr *a = &((const struct sockaddr_in6 *)peer)->sin6_addr;
  if (IN6_IS_ADDR_V4MAPPED(a))
    return sl_cidr_match(lc->proxy_protocol.trusted, lc->proxy_protocol.n_trusted, AF_INET,
                         &a->s6_addr[12]);
  return sl_cidr_match(lc->proxy_protocol.trusted, lc->proxy_protocol.n_trusted, AF_INET6,
                       a->s6_addr);
}

void sl_accept_format_peer(const struct sockaddr_storage *peer, char *buf, size_t len) {
  buf[0] = '\0';
  if (peer->ss_family == AF_INET6) {
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)peer;
    if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr))
      inet_ntop(AF_INET, &s6->sin6_addr.s6_addr[12], buf, (socklen_t)len);
    else
      inet_ntop(AF_INET6, &s6->sin6_addr, buf, (socklen_t)len);
  } else if (peer->ss_family == AF_INET) {
    inet_ntop(AF_INET, &((const struct sockaddr_in *)peer)->sin_addr, buf, (socklen_t)len);
  }
}

void sl_accept_proxy_error(struct sl_worker *w, const char *listener, const char *reason,
                           const char *peer_ip, const char *detail) {
  /* A rare event (the registry's mutex is fine); label values are the
   * listener's name and a fixed reason. */
  const char *values[2] = {listener, reason};
  struct sl_metric_series *m = sl_metrics_series(sl_stats.proxy_protocol_errors, values);
  if (m) sl_metric_inc(m);
  if (strcmp(reason, "closed") == 0) return;
  static __thread double last_line;
  static __thread unsigned left_out;
  double now = ev_now(w->loop);
  if (last_line && now - last_line < 1.0) {
    left_out++;
    return;
  }
  last_line = now;
  char n[16];
  snprintf(n, sizeof(n), "%u", left_out);
  left_out = 0;
  sl_log(SL_LOG_WARN, "PROXY protocol: connection closed", "listener", listener, "reason", reason,
         "peer", peer_ip, "error", detail ? detail : reason, "left_out", n, NULL);
}
