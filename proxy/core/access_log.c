/*
 * sluice — access log lines. See access_log.h.
 */
#include <stdbool.h>
#include <string.h>

#include "sluice/json.h"
#include "sluice/log.h"
#include "core/access_log.h"
#include "core/conn-t.h"
#include "core/gen.h"
#include "core/request_id.h"
#include "core/stream.h"
#include "core/stream-t.h"
#include "core/worker-t.h"

size_t sl_access_log_redact(const char *path, char *out, size_t cap) {
  size_t n = 0;
  if (cap == 0) return 0;
  const char *q = strchr(path, '?');
  size_t head = q ? (size_t)(q - path) + 1 : strlen(path);
  for (size_t i = 0; i < head && n + 1 < cap; i++) out[n++] = path[i];
  /* Each item: its name and "=*", or "*" alone for an item without '='
   * (a bare item may be the token itself: "?3f9a0c..."). */
  for (const char *p = q ? q + 1 : path + head; q && *p;) {
    const char *amp = strchr(p, '&');
    size_t len = amp ? (size_t)(amp - p) : strlen(p);
    const char *eq = memchr(p, '=', len);
    size_t keep = eq ? (size_t)(eq - p) + 1 : 0;
    for (size_t i = 0; i < keep && n + 1 < cap; i++) out[n++] = p[i];
    if (len && n + 1 < cap) out[n++] = '*';
    if (!amp) break;
    if (n + 1 < cap) out[n++] = '&';
    p = amp + 1;
  }
  out[n] = '\0';
  return n;
}

static bool is_hex(const char *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f'))) return false;
  return true;
}

static bool all_zero(const char *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (p[i] != '0') return false;
  return true;
}

const char *sl_traceparent_trace_id(const char *v, size_t len) {
  /* 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 */
  if (len < 55 || (len > 55 && v[55] != '-')) return NULL;
  if (!is_hex(v, 2) || (v[0] == 'f' && v[1] == 'f') || (len > 55 && v[0] == '0' && v[1] == '0'))
    return NULL;
  if (v[2] != '-' || v[35] != '-' || v[52] != '-') return NULL;
  if (!is_hex(v + 3, 32) || !is_hex(v + 36, 16) || !is_hex(v + 53, 2)) return NULL;
  if (all_zero(v + 3, 32) || all_zero(v + 36, 16)) return NULL;
  return v + 3;
}

/* |h|'s value JSON-escaped into |out| (at most |max| bytes of it), or "". */
static void header_json(const struct sl_stream *s, const char *name, char *out, size_t cap,
                        size_t max) {
  const struct sl_header *h = sl_request_header(&s->req, name);
  size_t n = 0;
  if (h) sl_json_escape_n(out, cap, &n, h->value, h->value_len < max ? h->value_len : max);
  out[n] = '\0';
}

void sl_access_log_write(struct sl_stream *s) {
  char path[512], raw[512], method[32], ua[384], rid[2 * SL_REQUEST_ID_MAX + 8];
  size_t pl = 0, ml = 0, rl = 0;
  const char *p = s->req.path ? s->req.path : "";
  if (s->gen->cfg->access_log_query == SL_ACCESS_QUERY_REDACT && strchr(p, '?')) {
    sl_access_log_redact(p, raw, sizeof(raw));
    p = raw;
  }
  sl_json_escape(path, sizeof(path), &pl, p);
  path[pl] = '\0';
  sl_json_escape(method, sizeof(method), &ml, s->req.method ? s->req.method : "");
  method[ml] = '\0';
  size_t id_len;
  const char *id = sl_request_id(s, &id_len);
  sl_json_escape_n(rid, sizeof(rid), &rl, id, id_len);
  rid[rl] = '\0';
  header_json(s, "user-agent", ua, sizeof(ua), 256);
  const struct sl_header *tp = sl_request_header(&s->req, "traceparent");
  const char *trace = tp ? sl_traceparent_trace_id(tp->value, tp->value_len) : NULL;
  double ms = (ev_now(s->conn->w->loop) - s->started) * 1000.0;
  sl_log_json(SL_LOG_INFO, "access",
              "\"method\":\"%s\",\"path\":\"%s\",\"status\":%d,\"route\":\"%s\","
              "\"protocol\":\"%s\",\"client_ip\":\"%s\",\"duration_ms\":%.3f,"
              "\"local\":%s,\"request_id\":\"%s\",\"user_agent\":\"%s\",\"trace_id\":\"%.*s\","
              "\"bytes_in\":%llu,\"bytes_out\":%llu",
              method, path, s->resp.status, s->route ? s->route->name : "-",
              s->proto == SL_PROTO_H2 ? "h2" : "h1",
              s->client_ip[0] ? s->client_ip : s->conn->peer_ip, ms,
              s->local_response ? "true" : "false", rid, ua, trace ? 32 : 0, trace ? trace : "",
              (unsigned long long)s->bytes_in, (unsigned long long)s->bytes_out);
}
