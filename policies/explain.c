/*
 * sluice — explain. See include/sluice/explain.h.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sluice/json.h"
#include "sluice/admission.h"
#include "sluice/allow.h"
#include "sluice/explain.h"
#include "sluice/identify.h"
#include "sluice/path.h"
#include "sluice/route.h"
#include "sluice/version.h"

static int explain_normalised(const struct sl_config *cfg, const struct sl_policy_set *ps,
                              const struct sl_blocklist *bl,
                              const struct sl_explain_request *r, const char *path,
                              const char *raw_path, enum sl_path_status pst,
                              const struct sockaddr_storage *ss, const char *ip, uint64_t now_ns,
                              int64_t now_unix, FILE *out);

struct explain_ctx {
  const struct sl_explain_request *r;
};

static const char *explain_header(const void *ctx, const char *name) {
  const struct sl_explain_request *r = ctx;
  for (int i = 0; i < r->n_headers; i++)
    if (strcasecmp(r->header_names[i], name) == 0) return r->header_values[i];
  return NULL;
}

/* JSON string (with quotes) of at most |n| bytes of |s|, or null. Request
 * paths and header values are bytes, not text: a byte that is not part of
 * well-formed UTF-8 becomes U+FFFD, so the document stays valid JSON. */
static void json_str(FILE *f, const char *s, size_t n) {
  if (!s) {
    fputs("null", f);
    return;
  }
  fputc('"', f);
  sl_json_escape_file(f, s, strnlen(s, n));
  fputc('"', f);
}

int sl_explain(const struct sl_config *cfg, const struct sl_policy_set *ps,
               const struct sl_blocklist *bl, const struct sl_explain_request *r, uint64_t now_ns, int64_t now_unix, FILE *out,
               char *err, size_t errlen) {
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof(ss));
  const char *ip = r->ip ? r->ip : "127.0.0.1";
  struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
  struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
  if (inet_pton(AF_INET, ip, &s4->sin_addr) == 1) {
    s4->sin_family = AF_INET;
  } else if (inet_pton(AF_INET6, ip, &s6->sin6_addr) == 1) {
    s6->sin6_family = AF_INET6;
  } else {
    snprintf(err, errlen, "'%s' is not an IP address", ip);
    return -1;
  }
  /* Routes match the normalised path, as the data plane does
   * (proxy/stream.c); the document shows that path, and the raw one when
   * normalising changed it. */
  const char *raw_path = r->path ? r->path : "/";
  size_t raw_len = strlen(raw_path);
  char *path = malloc(raw_len + 1);
  if (!path) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  size_t path_len = 0;
  enum sl_path_status pst = SL_PATH_OK;
  if (raw_len == 1 && raw_path[0] == '*')
    memcpy(path, raw_path, (path_len = raw_len) + 1);
  else
    pst = sl_path_normalize(raw_path, raw_len, path, &path_len);
  if (pst != SL_PATH_OK) memcpy(path, raw_path, (path_len = raw_len) + 1);
  int rv = explain_normalised(cfg, ps, bl, r, path, raw_path, pst, &ss, ip, now_ns, now_unix, out);
  free(path);
  return rv;
}

/* sl_explain once the path is normalised (|path|, or the raw path when
 * |pst| says it cannot be). */
static int explain_normalised(const struct sl_config *cfg, const struct sl_policy_set *ps,
                              const struct sl_blocklist *bl,
                              const struct sl_explain_request *r, const char *path,
                              const char *raw_path, enum sl_path_status pst,
                              const struct sockaddr_storage *ss, const char *ip, uint64_t now_ns,
                              int64_t now_unix, FILE *out) {
  const char *method = r->method ? r->method : "GET";
  const char *upg = explain_header(r, "upgrade");
  struct sl_request_facts facts = {
      .method = method,
      .path = path,
      .host = explain_header(r, "host"),
      .listener = r->listener,
      .websocket = upg && strcasecmp(upg, "websocket") == 0,
      .header = explain_header,
      .header_ctx = r,
  };
  fputs("{\"request\":{\"method\":", out);
  json_str(out, method, strlen(method));
  fputs(",\"path\":", out);
  json_str(out, path, strlen(path));
  if (strcmp(path, raw_path) != 0) {
    fputs(",\"raw_path\":", out);
    json_str(out, raw_path, strlen(raw_path));
  }
  fputs(",\"ip\":", out);
  json_str(out, ip, strlen(ip));
  fputs("},", out);
  if (pst != SL_PATH_OK) {
    fputs("\"route\":null,\"policies\":[],\"verdict\":{\"admit\":false,\"status\":400,"
          "\"error\":",
          out);
    json_str(out, sl_path_status_name(pst), strlen(sl_path_status_name(pst)));
    fputs(",\"policy\":\"http\",\"retry_after\":0}}\n", out);
    return 0;
  }

  const struct sl_route_cfg *route = sl_route_select(cfg, &facts);
  if (!route) {
    fputs("\"route\":null,\"policies\":[],\"verdict\":{\"admit\":false,\"status\":404,"
          "\"error\":\"no_route\",\"policy\":\"routes\",\"retry_after\":0}}\n",
          out);
    return 0;
  }
  fputs("\"route\":", out);
  json_str(out, route->name, strlen(route->name));
  fputs(",\"upstream\":", out);
  json_str(out, route->upstream->name, strlen(route->upstream->name));

  struct sl_hdr hv[64];
  int n = r->n_headers < 64 ? r->n_headers : 64;
  char lower[64][64];
  for (int i = 0; i < n; i++) {
    size_t k = 0;
    for (; r->header_names[i][k] && k < sizeof(lower[i]) - 1; k++) {
      char c = r->header_names[i][k];
      lower[i][k] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
    }
    lower[i][k] = '\0';
    hv[i] = (struct sl_hdr){lower[i], k, r->header_values[i], strlen(r->header_values[i])};
  }
  struct sl_identity id;
  if (sl_identify(&cfg->identify, (const struct sockaddr *)ss, hv, (size_t)n, &id) != SL_IDENTIFY_OK) {
    fputs(",\"policies\":[],\"verdict\":{\"admit\":false,\"status\":400,"
          "\"error\":\"ambiguous_identity\",\"policy\":",
          out);
    json_str(out, id.conflict ? id.conflict : "identify", strlen(id.conflict ? id.conflict : "identify"));
    fputs(",\"retry_after\":0}}\n", out);
    return 0;
  }
  char addr[64] = "";
  sl_identify_format_addr(&id, addr, sizeof(addr));
  fputs(",\"identity\":{\"client_ip\":", out);
  json_str(out, addr, strlen(addr));
  fputs(",\"device_class\":", out);
  json_str(out, id.device_class, id.device_class_len);
  fputs(",\"device_id\":", out);
  json_str(out, id.device_id, id.device_id_len);
  fputs(",\"firmware\":", out);
  json_str(out, id.firmware, id.firmware_len);
  fputs(",\"firmware_parsed\":", out);
  if (id.firmware_valid) {
    char v[64];
    sl_version_format(&id.firmware_version, v, sizeof(v));
    json_str(out, v, strlen(v));
  } else {
    fputs("null", out);
  }
  fputs("},\"policies\":[", out);
  struct sl_admission a;
  struct sl_admission_input in = {
      .cfg = cfg, .policies = ps, .route = route, .id = &id, .blocklist = bl, .facts = &facts,
      .now_ns = now_ns, .now_unix = now_unix, .rnd = 0, .trace = out};
  sl_admission_decide(&in, &a);
  fputs("],\"verdict\":{", out);
  if (a.admit) {
    fprintf(out, "\"admit\":true,\"shadow_rejections\":%u", a.n_shadow);
    if (a.delay_ms) fprintf(out, ",\"delay_ms\":%llu", (unsigned long long)a.delay_ms);
    if (a.paced) { /* the bytes per second that would pace the exchange (0: unpaced) */
      fputs(",\"bandwidth\":{\"policy\":", out);
      json_str(out, a.paced->label, strlen(a.paced->label));
      fprintf(out, ",\"down_bytes_per_s\":%llu,\"up_bytes_per_s\":%llu}",
              (unsigned long long)a.paced->bw_down.bytes_per_s,
              (unsigned long long)a.paced->bw_up.bytes_per_s);
    }
  } else {
    fprintf(out, "\"admit\":false,\"status\":%u,\"error\":", a.status);
    json_str(out, a.error, strlen(a.error));
    fputs(",\"policy\":", out);
    json_str(out, a.policy, strlen(a.policy));
    fprintf(out, ",\"retry_after\":%u", a.retry_after_s);
  }
  if (a.allow) { /* the exemption, whatever the verdict */
    char skip[256];
    sl_allow_describe_skip(a.skip, skip, sizeof(skip));
    fputs(",\"allow\":{\"rule\":", out);
    json_str(out, a.allow->name, strlen(a.allow->name));
    fputs(",\"skip\":", out);
    json_str(out, skip, strlen(skip));
    fputc('}', out);
  }
  fputs("}}\n", out);
  return 0;
}
